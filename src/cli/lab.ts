// `offlink lab run|up|down`: the report's experiment on this machine, in network namespaces (docs/lab.md).
import { type Command, InvalidArgumentError, Option } from 'commander';
import type { BackendChoice } from '../dataplane/probe.ts';
import { DEFAULT_STATE_DIR, LAB_COMMAND_TIMEOUT_MS, LabError, labDown } from '../lab/netns.ts';
import { GUEST_KINDS, type GuestKind, LAB_FAMILIES, type LabFamily, type Procedure } from '../lab/report.ts';
import { labRun, labUp } from '../lab/run.ts';
import { ExecRunner } from '../system/runner.ts';
import { procedureOption } from './agent.ts';

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('a whole number ≥ 1');
  return n;
}

function positiveNumber(v: string): number {
  const n = Number(v);
  if (!(n > 0)) throw new InvalidArgumentError('a number > 0');
  return n;
}

const print = (line: string) => process.stdout.write(`${line}\n`);

/** Abort on the first SIGINT/SIGTERM so the run tears the lab down; a second one exits at once. */
function abortOnSignals(): { signal: AbortSignal; dispose: () => void } {
  const ac = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    if (ac.signal.aborted) process.exit(130);
    print(`lab: ${sig}: stopping and tearing down (again to exit at once)`);
    ac.abort(new LabError('ERR_LAB_INTERRUPTED', `interrupted by ${sig}; the lab was torn down`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: ac.signal,
    dispose: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

const topologyOption = () =>
  new Option('--topology <t>', 'off-link (NEMO) or on-link (one L2 segment, the baseline)')
    .choices(['off-link', 'on-link'])
    .default('off-link');
const dataplaneOption = () =>
  new Option('--dataplane <backend>', 'data plane of the home agent and the agents (auto: probe the kernel)')
    .choices(['auto', 'bpf', 'seg6'])
    .default('auto');
export const familyOption = () =>
  new Option(
    '--family <f>',
    "the guests' address families: dual (IPv6 and IPv4: an IPv4 prefix beside the IPv6 one, probes over both) or ipv6; the seg6 data plane is IPv6 only, so with --dataplane seg6 the default falls back to ipv6",
  )
    .choices(LAB_FAMILIES)
    .default('dual');

/** The family as the user gave it; undefined when it is the default (labRun resolves it per guest kind). */
export function familyGiven(cmd: Command): LabFamily | undefined {
  return cmd.getOptionValueSource('family') === 'default'
    ? undefined
    : (cmd.getOptionValue('family') as LabFamily);
}

const homeAgentsOption = () =>
  new Option(
    '--home-agents <n>',
    'off-link: 2 runs two home agents (bindings in a 3-member etcd cluster, the HA address by BGP anycast from BIRD; needs etcd-server and bird2)',
  )
    .choices(['1', '2'])
    .default('1');

const guestOption = () =>
  new Option(
    '--guest <g>',
    'guests as network namespaces, QEMU VMs (off-link: booted and migrated by the agents; on-link: plain QEMU live migration, `lab run` only) or libvirt domains (one libvirtd per host; off-link: migrated by the agents through libvirt; on-link: plain `virsh migrate --live`, `lab run` only)',
  )
    .choices(GUEST_KINDS)
    .default('netns');

export function registerLab(program: Command): Command {
  const lab = program
    .command('lab')
    .description("the report's experiment on this machine, in network namespaces");

  lab
    .command('run')
    .description('build the lab, migrate a streaming guest back and forth, measure, tear down, report')
    .option('--migrations <n>', 'how many migrations', positiveInt, 6)
    .option('--interval <s>', 'seconds between migrations', positiveNumber, 5)
    .addOption(procedureOption())
    .addOption(topologyOption())
    .addOption(guestOption())
    .addOption(familyOption())
    .addOption(dataplaneOption())
    .addOption(homeAgentsOption())
    .option(
      '--fail-ha',
      'with --home-agents 2: kill -9 the home agent carrying the traffic in the middle of the run (then restart it); report.json gets haFailover',
    )
    .option(
      '--no-overlap',
      'off-link QEMU and libvirt guests: start the handover after the hypervisor completed the migration, not at its switchover',
    )
    .option('--out <dir>', 'report directory (report.json, index.html, logs/)', 'lab-report')
    .option('--json <file>', 'also write report.json here')
    .action(
      async (
        opts: {
          migrations: number;
          overlap: boolean;
          interval: number;
          procedure: Procedure;
          topology: 'off-link' | 'on-link';
          guest: GuestKind;
          dataplane: BackendChoice;
          homeAgents: '1' | '2';
          failHa?: boolean;
          out: string;
          json?: string;
        },
        cmd: Command,
      ) => {
        const family = familyGiven(cmd);
        const { signal, dispose } = abortOnSignals();
        try {
          const report = await labRun({
            ...(family ? { family } : {}),
            migrations: opts.migrations,
            intervalS: opts.interval,
            procedure: opts.procedure,
            topology: opts.topology,
            guest: opts.guest,
            dataplane: opts.dataplane,
            homeAgents: opts.homeAgents === '2' ? 2 : 1,
            ...(opts.failHa ? { failHa: true } : {}),
            overlap: opts.overlap,
            out: opts.out,
            ...(opts.json ? { json: opts.json } : {}),
            stateDir: DEFAULT_STATE_DIR,
            print,
            signal,
          });
          if (report.summary.failed > 0) {
            throw new LabError(
              'ERR_LAB_MIGRATION',
              `${report.summary.failed} migration(s) failed; see the report`,
            );
          }
        } catch (err) {
          if (signal.aborted) throw signal.reason;
          throw err;
        } finally {
          dispose();
        }
      },
    );

  lab
    .command('up')
    .description('build the lab and start its daemons, and leave it running (remove it with `lab down`)')
    .addOption(topologyOption())
    .addOption(guestOption())
    .addOption(familyOption())
    .addOption(dataplaneOption())
    .addOption(homeAgentsOption())
    .action(
      async (
        opts: {
          topology: 'off-link' | 'on-link';
          guest: GuestKind;
          dataplane: BackendChoice;
          homeAgents: '1' | '2';
        },
        cmd: Command,
      ) => {
        const family = familyGiven(cmd);
        const { topo, configs, libvirt } = await labUp({
          ...(family ? { family } : {}),
          topology: opts.topology,
          guest: opts.guest,
          dataplane: opts.dataplane,
          homeAgents: opts.homeAgents === '2' ? 2 : 1,
          stateDir: DEFAULT_STATE_DIR,
          print,
        });
        const g = topo.guests[0]!;
        print(`lab: up (${opts.topology}). Namespaces: ${topo.namespaces.join(' ')}`);
        print(
          `  guest ${g.name}: ${g.address}${g.ipv4 ? ` and ${g.ipv4.address}` : ''} in ${g.ns}, on ${topo.hosts[0].name}; correspondent ${topo.cn.address}${topo.cn.address4 ? ` and ${topo.cn.address4}` : ''}`,
        );
        if (configs) {
          print(`  configs, keys and logs: ${configs.dir}`);
          print(
            `  migrate:  ip netns exec ofl-host-a offlink migrate ${g.network} --to host-b --config ${configs.hosts['host-a']}`,
          );
          print(`  status:   ip netns exec ofl-host-a offlink status --config ${configs.hosts['host-a']}`);
          if (topo.cluster) {
            print('  cluster:  ip netns exec ofl-ha offlink status --ha http://127.0.0.1:9180');
            print(
              `  routes:   ip netns exec ofl-inet birdc -s ${DEFAULT_STATE_DIR}/bird-inet.ctl show route`,
            );
          }
        }
        if (libvirt) print(`  libvirt:  ip netns exec ofl-host-a virsh -c '${libvirt.uri('host-a')}' list`);
        // a VM guest has no namespace of its own: ask it from the correspondent
        print(
          topo.guestKind === 'netns'
            ? `  try:      ip netns exec ${g.ns} ip -6 route; ip netns exec ${topo.cn.ns} ss -uan`
            : `  try:      ip netns exec ${topo.cn.ns} ping -c 3 ${g.address}`,
        );
        print('  remove:   offlink lab down');
      },
    );

  lab
    .command('down')
    .description('remove the lab: every ofl-* namespace and every process in it, whatever state it is in')
    .action(async () => {
      if (process.getuid?.() !== 0) {
        throw new LabError(
          'ERR_LAB_NOT_ROOT',
          'the lab needs root (it removes network namespaces): run it with sudo',
        );
      }
      const removed = await labDown(new ExecRunner({ timeoutMs: LAB_COMMAND_TIMEOUT_MS }), DEFAULT_STATE_DIR);
      print(removed.length > 0 ? `lab: removed ${removed.join(' ')}` : 'lab: nothing to remove');
    });
  return lab;
}
