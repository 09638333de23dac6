// Data plane benchmark: iperf3 TCP both ways between a guest and a correspondent, through the HA–MR
// tunnel and on the direct path, in the same namespaces and run, for every backend this kernel runs (or
// those named). The rig is the agents' integration rig (test/helpers/agent-lab.ts): the real
// `offlink ha`, the real `offlink agent` on host-a (MSS clamp), guest-1 on host-a's bridge ofl-net1 (the
// product's guest link: a bridge with a veth port), the correspondent behind the router inet.
//
//   tunnel: guest 2001:db8:100::10 (MNP) → host-a ═tunnel═▶ inet → ha (decap) → inet → cn, and back
//   plain:  guest 2001:db8:e::10 → host-a → inet → ha → inet → cn: the tunnel's hops, not encapsulated
//           (policy routes on inet send that prefix through the home agent both ways)
//   direct: guest 2001:db8:d::10 (a plain prefix on the same bridge) → host-a → inet → cn
// tunnel ÷ plain is what the encapsulation costs (the target); tunnel ÷ direct adds the detour through
// the home agent, which on one machine costs the same CPUs twice more.
//
// Both paths carry 1400-byte segments (guest link MTU 1460; the HA clamps the tunnel's MSS to 1400), so
// the ratio is what the encapsulation and the detour through the home agent cost. Runs alternate
// direct/tunnel so both see the same machine load; the figure is the median of the paired ratios.
//
// --family ipv4 measures the same three paths for IPv4 (RFC 5555: IPv4 in the IPv6 tunnel): the guest's
// 10.1.0.10 in net1's IPv4 prefix (tunnel), 10.5.0.10 (plain, through the HA both ways) and 10.4.0.10
// (direct), to the correspondent's 172.16.3.2; the backbone carries IPv4 natively only for the plain and
// direct paths (host-a's and the HA's links get IPv4 addresses). Only the bpf backend carries IPv4.
//
//   node --import tsx bench/dataplane/run.ts [--rounds 9] [--seconds 5] [--backends bpf,seg6]
//     [--family ipv6|ipv4] [--json FILE]
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Backend, probeBackends } from '../../src/dataplane/index.ts';
import { ExecRunner } from '../../src/system/runner.ts';
import { addIpv4Home, build, IPV4_HOME, type Lab, removeRigFiles } from '../../test/helpers/agent-lab.ts';
import { ADDR } from '../../test/helpers/homeagent-lab.ts';
import { canUseNetns, type NetnsLab, sh, withNetns } from '../../test/helpers/netns.ts';
import { Procs } from '../../test/helpers/procs.ts';
import { describeMachine, finishMachineInfo, machineInfo } from '../lib/machine.ts';
import { numArg, parseArgs, printTargets, type Target, writeResult } from '../lib/results.ts';
import { percentile } from '../lib/stats.ts';

const args = parseArgs(process.argv.slice(2));
const ROUNDS = numArg(args, 'rounds', 9);
const SECONDS = numArg(args, 'seconds', 5);
const FAMILY = args.get('family') ?? 'ipv6';
if (FAMILY !== 'ipv6' && FAMILY !== 'ipv4') throw new Error(`--family: ipv6 or ipv4, not ${FAMILY}`);

/** One family's addressing: the paths' prefixes on the guest link and the correspondent's address. */
const PATHS = {
  ipv6: {
    len: 64,
    cn: ADDR.cn,
    direct: { prefix: '2001:db8:d::/64', gateway: '2001:db8:d::1', guest: '2001:db8:d::10' },
    plain: { prefix: '2001:db8:e::/64', gateway: '2001:db8:e::1', guest: '2001:db8:e::10' },
    tunnel: { guest: '2001:db8:100::10' },
    // the next hops on inet: the HA, host-a
    ha: '2001:db8:1::2',
    hostA: '2001:db8:a::2',
  },
  ipv4: {
    len: 24,
    cn: IPV4_HOME.cnLink.cn,
    direct: { prefix: '10.4.0.0/24', gateway: '10.4.0.1', guest: '10.4.0.10' },
    plain: { prefix: '10.5.0.0/24', gateway: '10.5.0.1', guest: '10.5.0.10' },
    tunnel: { guest: IPV4_HOME.guest },
    ha: IPV4_HOME.haLink.ha,
    hostA: '172.16.10.2',
  },
}[FAMILY];
const { direct: DIRECT, plain: PLAIN, tunnel: TUNNEL } = PATHS;
const GUEST: Record<Path, string> = { direct: DIRECT.guest, plain: PLAIN.guest, tunnel: TUNNEL.guest };

type Path = 'direct' | 'plain' | 'tunnel';
type Direction = 'guest→cn' | 'cn→guest';
interface Sample {
  round: number;
  path: Path;
  direction: Direction;
  mbps: number;
  retransmits: number;
  mss: number | undefined;
  /** Bytes the home agent's uplink received during the run: the proof of which path the traffic took. */
  haRxBytes: number;
}

const log = (msg: string) => console.error(`[bench/dataplane] ${msg}`);

interface IperfJson {
  start?: { tcp_mss_default?: number };
  end: { sum_received: { bits_per_second: number }; sum_sent: { retransmits?: number } };
}

async function iperf(netns: NetnsLab, ns: string, from: string, reverse: boolean): Promise<IperfJson> {
  const argv = ['timeout', String(SECONDS + 15), 'iperf3', FAMILY === 'ipv4' ? '-4' : '-6'];
  argv.push('--json', '-c', PATHS.cn, '-B', from);
  argv.push('-t', String(SECONDS), '-O', '1', ...(reverse ? ['-R'] : []));
  const { stdout } = await netns.exec(ns, argv);
  return JSON.parse(stdout) as IperfJson;
}

async function rxBytes(ns: string, dev: string): Promise<number> {
  const { stdout } = await sh(['ip', '-n', ns, '-j', '-s', 'link', 'show', 'dev', dev]);
  return (JSON.parse(stdout) as { stats64: { rx: { bytes: number } } }[])[0]!.stats64.rx.bytes;
}

async function measure(netns: NetnsLab, procs: Procs, dir: string): Promise<Sample[]> {
  const lab = await build(netns, procs, dir, FAMILY === 'ipv4' ? { net1Ipv4: IPV4_HOME.prefix } : {});
  const { ns } = lab;
  if (FAMILY === 'ipv4') await ipv4Links(netns, lab);
  const fam = FAMILY === 'ipv4' ? '-4' : '-6';
  const on = (n: string, ...a: string[]) => sh(['ip', '-n', n, fam, ...a]);
  const nodad = FAMILY === 'ipv6' ? ['nodad'] : [];
  // The direct path: a plain prefix on the same guest link, routed natively to host-a.
  await on(ns['host-a'], 'addr', 'add', `${DIRECT.gateway}/${PATHS.len}`, 'dev', 'ofl-net1', ...nodad);
  await netns.addr(ns.g1, 'g0', `${DIRECT.guest}/${PATHS.len}`);
  await on(ns.inet, 'route', 'add', DIRECT.prefix, 'via', PATHS.hostA);
  // The plain path: another prefix on the guest link whose traffic inet sends through the HA both ways.
  await on(ns['host-a'], 'addr', 'add', `${PLAIN.gateway}/${PATHS.len}`, 'dev', 'ofl-net1', ...nodad);
  await netns.addr(ns.g1, 'g0', `${PLAIN.guest}/${PATHS.len}`);
  await on(ns.inet, 'route', 'add', PLAIN.prefix, 'via', PATHS.ha); // cn → guest: to the HA first
  await on(ns.inet, 'route', 'add', PLAIN.prefix, 'via', PATHS.hostA, 'table', '102'); // back from the HA
  await on(ns.inet, 'rule', 'add', 'pref', '102', 'to', PLAIN.prefix, 'iif', 'inet-ha', 'lookup', '102');
  await on(ns.inet, 'route', 'add', 'default', 'via', PATHS.ha, 'table', '103'); // guest → cn: via the HA
  await on(ns.inet, 'rule', 'add', 'pref', '103', 'from', PLAIN.prefix, 'iif', 'inet-a', 'lookup', '103');
  procs.start(ns.cn, ['iperf3', '-s', '--forceflush']);
  await new Promise((r) => setTimeout(r, 500));
  const out: Sample[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (const direction of ['guest→cn', 'cn→guest'] as const) {
      const order: Path[][] = [
        ['direct', 'plain', 'tunnel'],
        ['tunnel', 'plain', 'direct'],
        ['plain', 'tunnel', 'direct'],
      ];
      for (const path of order[round % 3]!) {
        const from = GUEST[path];
        const rx0 = await rxBytes(ns.ha, 'ha-up');
        const r = await iperf(netns, ns.g1, from, direction === 'cn→guest');
        const haRxBytes = (await rxBytes(ns.ha, 'ha-up')) - rx0;
        const s: Sample = {
          round,
          path,
          direction,
          mbps: r.end.sum_received.bits_per_second / 1e6,
          retransmits: r.end.sum_sent.retransmits ?? 0,
          mss: r.start?.tcp_mss_default,
          haRxBytes,
        };
        out.push(s);
        log(
          `[${netns.backend}] round ${round} ${direction} ${path}: ${s.mbps.toFixed(0)} Mbit/s (${s.retransmits} retransmits, HA uplink received ${(haRxBytes / 2 ** 20).toFixed(0)} MiB)`,
        );
      }
    }
  }
  await procs.killAll();
  return out;
}

/**
 * IPv4 for --family ipv4: net1's IPv4 prefix and the HA's and correspondent's IPv4 links (the tests'
 * dual-stack rig), the guest's IPv4 address in it, and IPv4 on host-a's uplink for the plain and direct
 * paths (the tunnel does not need it: IPv4 crosses the backbone inside IPv6).
 */
async function ipv4Links(netns: NetnsLab, lab: Lab): Promise<void> {
  const { ns } = lab;
  await addIpv4Home(netns, lab);
  await netns.exec(ns.g1, ['ip', 'addr', 'add', `${IPV4_HOME.guest}/24`, 'dev', 'g0']);
  await netns.exec(ns.g1, ['ip', 'route', 'add', 'default', 'via', IPV4_HOME.gateway]);
  await netns.exec(ns.inet, ['ip', 'addr', 'add', '172.16.10.1/24', 'dev', 'inet-a']);
  await netns.exec(ns['host-a'], ['ip', 'addr', 'add', `${PATHS.hostA}/24`, 'dev', 'up0']);
  await netns.exec(ns['host-a'], ['ip', 'route', 'add', '172.16.3.0/24', 'via', '172.16.10.1']);
}

/** Per direction: medians of each path, and the median of the paired (same round) ratios. */
function summarize(samples: Sample[]) {
  const median = (path: Path, direction: Direction) =>
    percentile(
      Float64Array.from(
        samples.filter((s) => s.path === path && s.direction === direction).map((s) => s.mbps),
      ).sort(),
      0.5,
    );
  return (['guest→cn', 'cn→guest'] as const).map((direction) => {
    const paired = (base: Path) =>
      Array.from({ length: ROUNDS }, (_, round) => {
        const get = (path: Path) =>
          samples.find((s) => s.round === round && s.path === path && s.direction === direction)!;
        return get('tunnel').mbps / get(base).mbps;
      });
    const overPlain = paired('plain');
    const overDirect = paired('direct');
    return {
      direction,
      directMbps: median('direct', direction),
      plainMbps: median('plain', direction),
      tunnelMbps: median('tunnel', direction),
      pairedRatios: overPlain,
      ratio: percentile(Float64Array.from(overPlain).sort(), 0.5),
      pairedRatiosDirect: overDirect,
      ratioDirect: percentile(Float64Array.from(overDirect).sort(), 0.5),
    };
  });
}

async function main(): Promise<void> {
  if (!canUseNetns()) throw new Error('needs root (network namespaces)');
  const machine = machineInfo();
  const probe = await probeBackends({ runner: new ExecRunner() });
  const usable = probe.backends.filter((b) => b.usable).map((b) => b.backend);
  for (const b of probe.backends.filter((p) => !p.usable))
    log(`${b.backend}: not on this kernel (${b.reason})`);
  const backends = (args.get('backends')?.split(',') ?? usable) as Backend[];
  const procs = new Procs();
  const results = [];
  try {
    for (const backend of backends) {
      const dir = mkdtempSync(join(tmpdir(), 'offlink-bench-dp-'));
      try {
        const samples = await withNetns((netns) => measure(netns, procs, dir), { backend });
        results.push({ backend, directions: summarize(samples), samples });
      } finally {
        await procs.killAll();
        removeRigFiles(dir); // with the HA's database, on tmpfs
      }
    }
  } finally {
    await procs.killAll();
  }
  // Each round ran direct and tunnel back to back: the median of those paired ratios is the headline.
  const targets: Target[] = results.flatMap((r) =>
    r.directions.flatMap((d): Target[] => [
      {
        what: `${FAMILY} TCP ${d.direction} [${r.backend}], tunnel ÷ plain (same hops; bridge + veth guest link)`,
        target: '≥ 0.9',
        measured: `${d.ratio.toFixed(3)} (median of ${ROUNDS} paired runs; medians ${d.tunnelMbps.toFixed(0)} / ${d.plainMbps.toFixed(0)} Mbit/s)`,
        met: d.ratio >= 0.9,
      },
      {
        what: `${FAMILY} TCP ${d.direction} [${r.backend}], tunnel ÷ direct (no detour through the HA)`,
        target: '(report)',
        measured: `${d.ratioDirect.toFixed(3)} (medians ${d.tunnelMbps.toFixed(0)} / ${d.directMbps.toFixed(0)} Mbit/s)`,
      },
    ]),
  );
  const m = finishMachineInfo(machine);
  console.log(`\nData plane — ${describeMachine(m)}`);
  printTargets(targets);
  const path = writeResult(args.get('json'), 'dataplane', {
    bench: 'dataplane',
    machine: m,
    kernel: probe.kernelRelease,
    params: {
      family: FAMILY,
      rounds: ROUNDS,
      seconds: SECONDS,
      direct: DIRECT,
      plain: PLAIN,
      tunnel: TUNNEL,
    },
    backends: results,
    targets,
  });
  log(`wrote ${path}`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
