// Host-agent integration rig: the real home agent, two agents in their host namespaces on two /64s,
// guests on host-a's bridges and a correspondent (see test/agent.test.ts).
//
//   g1 ─┐ ofl-net1                               ┌── ha (2001:db8:ffff::1; MNPs routed here)
//   g2 ─┴ ofl-net2  host-a (2001:db8:a::2) ──┐   │
//                   host-b (2001:db8:b::2) ──┴── inet ── cn (2001:db8:c::2, UDP echo)
import { type ChildProcess, execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { authorityOf, signRequest } from '../../src/agent/auth.ts';
import type { Backend } from '../../src/dataplane/probe.ts';
import type { AgentStatus, MigrationRecord } from '../../src/migration/messages.ts';
import { ADDR, HOME_PREFIXES, KEY, KEY2, SPI, SPI2, startHa } from './homeagent-lab.ts';
import { backbone, type NetnsLab, openNetns, sh } from './netns.ts';
import { type Proc, Procs } from './procs.ts';
import { startupMs } from './slow.ts';

export const ROOT = new URL('../../', import.meta.url).pathname;
export const OFFLINK = join(ROOT, 'bin/offlink.js');
export const CLUSTER_KEY = '6f66666c696e6b2d636c75737465722d746573742d6b65792d3030303030303031';
export const HOSTS = { 'host-a': '2001:db8:a::2', 'host-b': '2001:db8:b::2' } as const;
export type Host = keyof typeof HOSTS;
export const url = (h: Host) => `http://[${HOSTS[h]}]:7400`;
export const GUESTS = {
  'guest-1': { net: 'net1', addr: '2001:db8:100::10' },
  'guest-2': { net: 'net2', addr: '2001:db8:200::10' },
};

export interface Lab {
  ns: Record<'ha' | 'inet' | 'cn' | Host | 'g1' | 'g2', string>;
  dir: string;
  keyFile: string;
  /** The agent processes; `startAgent` replaces an entry after a restart. */
  agents: Record<Host, Proc>;
  /** The `offlink ha` process and its log lines; `startLabHa` replaces it after a restart. */
  ha: { child: ChildProcess; log: string[] };
  haConfig: string;
  agentConfigs: Record<Host, string>;
  options: BuildOptions;
}

export interface BuildOptions {
  /** Extra keys of net1's entry in both agents' configs, as YAML flow-map text (`lifetimeSeconds: 12`). */
  net1?: string;
  /** The same for net2. */
  net2?: string;
  /** An IPv4 prefix net1 also has (dual stack, RFC 5555): in the HA's table and both agents' entries. */
  net1Ipv4?: string;
  /**
   * net1's guest-1 is a QEMU VM instead of namespace g1: both agents run the qemu driver and host-a's boots
   * it (before it reports "agent started"). The value is the rest of its `hypervisor.guests` entry as YAML
   * flow-map text (`mac: "52:54:00:…", ipv4: {…}`). net2 and its guest are left out of the agents.
   */
  qemuGuest1?: string;
  /** With qemuGuest1: each host's `hypervisor.migration` as YAML flow-map text (`tls: { dir: … }`). */
  qemuMigration?: Partial<Record<Host, string>>;
  /** Extra lines under `homeAgent:` of the HA config (`maxLifetimeSeconds: 60`); each is indented by 2. */
  homeAgent?: string;
  /** Extra `mobileRouters` entries of the HA config, as YAML lines (`  - { name: x, ... }`). */
  mobileRouters?: string;
  /** Extra environment of the HA process (`OFFLINK_LOG_LEVEL: 'debug'` for its per-BU lines). */
  haEnv?: NodeJS.ProcessEnv;
  /** Extra top-level lines of both agents' configs (`metrics: { listen: ... }`); `{address}` is the host's. */
  agent?: string;
  /** Extra environment of the agent processes, by host. */
  env?: Partial<Record<Host, NodeJS.ProcessEnv>>;
  /** Run after the HA started and before the agents do (e.g. nftables rules for their first BUs). */
  beforeAgents?: (ns: Lab['ns']) => Promise<void>;
}

/** The IPv4 side of a dual-stack rig (RFC 5555): net1's IPv4 prefix, its guest, and the IPv4 links of the HA and
 * the correspondent to the router (the backbone itself is IPv6 only). */
export const IPV4_HOME = {
  prefix: '10.1.0.0/24',
  guest: '10.1.0.10',
  gateway: '10.1.0.1',
  haLink: { inet: '172.16.1.1', ha: '172.16.1.2' },
  cnLink: { inet: '172.16.3.1', cn: '172.16.3.2' },
} as const;

/**
 * IPv4 addressing and routes for a rig built with `net1Ipv4: IPV4_HOME.prefix`: IPv4 forwarding on the router,
 * the HA and the hosts; the HA's and the correspondent's IPv4 links; the router sends the prefix to the HA
 * (the IPv4 home network, as the IPv6 MNPs), so the correspondent reaches net1's IPv4 guests only through
 * the HA's tunnel.
 */
export async function addIpv4Home(netns: NetnsLab, lab: Lab): Promise<void> {
  const v4 = IPV4_HOME;
  const run = (ns: string, argv: string[]) => netns.exec(ns, argv);
  for (const ns of [lab.ns.inet, lab.ns.ha, lab.ns['host-a'], lab.ns['host-b']])
    await run(ns, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  await run(lab.ns.inet, ['ip', 'addr', 'add', `${v4.haLink.inet}/24`, 'dev', 'inet-ha']);
  await run(lab.ns.ha, ['ip', 'addr', 'add', `${v4.haLink.ha}/24`, 'dev', 'ha-up']);
  await run(lab.ns.inet, ['ip', 'addr', 'add', `${v4.cnLink.inet}/24`, 'dev', 'inet-cn']);
  await run(lab.ns.cn, ['ip', 'addr', 'add', `${v4.cnLink.cn}/24`, 'dev', 'cn0']);
  await run(lab.ns.inet, ['ip', 'route', 'add', v4.prefix, 'via', v4.haLink.ha]);
  await run(lab.ns.ha, ['ip', 'route', 'add', 'default', 'via', v4.haLink.inet]);
  await run(lab.ns.cn, ['ip', 'route', 'add', 'default', 'via', v4.cnLink.inet]);
}

/** The HA's database of the rig in `dir`: on tmpfs when there is one (see build). */
function haDatabase(dir: string): string {
  return join(existsSync('/dev/shm') ? '/dev/shm' : dir, `${basename(dir)}-ha.sqlite`);
}

/** Remove what a rig built in `dir` left on disk: `dir` and the HA's database beside it on tmpfs. */
export function removeRigFiles(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  for (const f of ['', '-wal', '-shm']) rmSync(`${haDatabase(dir)}${f}`, { force: true });
}

/** One built rig and what it runs: a fixture shared by the cases of a file. */
export interface AgentRig {
  netns: NetnsLab;
  procs: Procs;
  dir: string;
  lab: Lab;
  /** Kills the processes, removes the namespaces, the directory and the HA's database. */
  close(): Promise<void>;
}

/**
 * Builds the rig on `backend` in a new directory named after `name`. Open it in `before` and close it in
 * `after` (or use withAgentRig); if building fails, what was made is removed before the error is thrown.
 */
export async function openAgentRig(
  backend: Backend,
  name: string,
  options: BuildOptions | ((netns: NetnsLab, dir: string) => BuildOptions) = {},
): Promise<AgentRig> {
  const procs = new Procs();
  const dir = mkdtempSync(join(tmpdir(), `offlink-${name}-`));
  const netns = await openNetns({ backend });
  const close = async () => {
    await procs.killAll();
    await netns.cleanup();
    removeRigFiles(dir);
  };
  try {
    const lab = await build(netns, procs, dir, typeof options === 'function' ? options(netns, dir) : options);
    return { netns, procs, dir, lab, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** openAgentRig for the length of `fn`, closed in `finally`. */
export async function withAgentRig<T>(
  backend: Backend,
  name: string,
  options: BuildOptions | ((netns: NetnsLab, dir: string) => BuildOptions),
  fn: (rig: AgentRig) => Promise<T>,
): Promise<T> {
  const rig = await openAgentRig(backend, name, options);
  try {
    return await fn(rig);
  } finally {
    await rig.close();
  }
}

export async function build(
  lab: NetnsLab,
  procs: Procs,
  dir: string,
  options: BuildOptions = {},
): Promise<Lab> {
  const net = backbone({
    hosts: ['a', 'b'],
    haAddress: ADDR.ha,
    homePrefixes: HOME_PREFIXES,
  });
  // The guests start on host-a, on bridges made ahead of the agent (the agent adopts and configures them).
  const guests = [
    { ns: 'g1', name: 'guest-1', ...GUESTS['guest-1'] },
    { ns: 'g2', name: 'guest-2', ...GUESTS['guest-2'] },
  ] as const;
  // A QEMU guest-1 brings its own NIC, on a bridge its agent makes; g1 and g2 then stay empty.
  const veths = options.qemuGuest1 ? [] : guests;
  const made = await lab.build({
    namespaces: [...net.namespaces, { name: 'g1' }, { name: 'g2' }],
    bridges: veths.map((g) => ({ ns: 'a', name: `ofl-${g.net}`, mtu: 1460 })),
    veths: [
      ...net.veths,
      ...veths.map((g) => ({
        a: { ns: g.ns, dev: 'g0', mtu: 1460, addresses: [`${g.addr}/64`] },
        b: { ns: 'a', dev: `vg-${g.name}`, mtu: 1460, master: `ofl-${g.net}` },
      })),
    ],
    addresses: net.addresses,
    routes: [...net.routes, ...veths.map((g) => ({ ns: g.ns, to: 'default', via: 'fe80::1', dev: 'g0' }))],
  });
  const ns = { ...made, 'host-a': made.a, 'host-b': made.b };

  // The HA answers from its own address (bound), so BAs come from where the MRs sent their BUs.
  // Its database on tmpfs when there is one: a BA waits for the binding's fsync, which costs 30-70 ms on
  // this kind of disk and would dominate every gap measured here.
  const haConfig = join(dir, 'ha.yaml');
  writeFileSync(haConfig, haYaml(haDatabase(dir), join(dir, 'run-ha'), lab.backend, options));
  const ha = await startHa(lab, ns.ha, haConfig, options.haEnv);
  const keyFile = join(dir, 'cluster.key');
  writeFileSync(keyFile, `${CLUSTER_KEY}\n`);
  await options.beforeAgents?.(ns);
  const agentConfigs = {} as Record<Host, string>;
  const built: Lab = {
    ns,
    dir,
    keyFile,
    agents: {} as Record<Host, Proc>,
    ha,
    haConfig,
    agentConfigs,
    options,
  };
  for (const host of ['host-a', 'host-b'] as const) {
    const peer: Host = host === 'host-a' ? 'host-b' : 'host-a';
    agentConfigs[host] = join(dir, `${host}.yaml`);
    writeFileSync(
      agentConfigs[host],
      agentYaml(host, peer, ns, join(dir, `run-${host}`), lab.backend, options),
    );
    await startAgent(built, procs, host);
  }
  for (const net of options.qemuGuest1 ? ['net1'] : ['net1', 'net2']) {
    await waitForLog(
      built.agents['host-a'],
      (l) => l.includes('"msg":"registered"') && l.includes(`"network":"${net}"`),
      `${net} registration`,
    );
  }
  return built;
}

/** Start (or restart) `host`'s agent with its config; resolves once it logs "agent started". */
export async function startAgent(
  lab: Lab,
  procs: Procs,
  host: Host,
  env: NodeJS.ProcessEnv = {},
): Promise<Proc> {
  const p = procs.start(
    lab.ns[host],
    [process.execPath, OFFLINK, 'agent', '--config', lab.agentConfigs[host]],
    {
      ...process.env,
      OFFLINK_LOG_LEVEL: 'info',
      ...lab.options.env?.[host],
      ...env,
    },
  );
  // A QEMU guest boots (TCG) before the agent has started: up to its bootTimeoutSeconds below.
  const timeoutMs = startupMs(lab.options.qemuGuest1 ? 200_000 : 20_000);
  await waitForLog(p, (l) => l.includes('"msg":"agent started"'), `${host} agent start`, timeoutMs);
  lab.agents[host] = p;
  return p;
}

/** Start the home agent again (after `kill -9`), same config and database. */
export async function startLabHa(netns: NetnsLab, lab: Lab): Promise<Lab['ha']> {
  lab.ha = await startHa(netns, lab.ns.ha, lab.haConfig, lab.options.haEnv);
  return lab.ha;
}

function haYaml(database: string, runDir: string, backend: Backend, o: BuildOptions): string {
  return `homeAgent:
  address: ${ADDR.ha}
  uplink: ha-up
  listen: { address: "${ADDR.ha}", port: 4191 }
  status: { listen: "127.0.0.1:9180" }
  database: ${database}
  runDir: ${runDir}
  dataplane: { backend: ${backend}, table: 200, mss: 1400 }
${(o.homeAgent ?? '')
  .split('\n')
  .filter((l) => l.trim() !== '')
  .map((l) => `  ${l}\n`)
  .join('')}mobileRouters:
  - { name: net1, homeAddress: "${ADDR.hoa}", prefixes: ["${ADDR.mnp}"${o.net1Ipv4 ? `, "${o.net1Ipv4}"` : ''}], spi: ${SPI}, key: ${KEY} }
  - { name: net2, homeAddress: "${ADDR.hoa2}", prefixes: ["${ADDR.mnp2}"], spi: ${SPI2}, key: ${KEY2}, algorithm: hmac-sha256 }
${o.mobileRouters ? `${o.mobileRouters.trimEnd()}\n` : ''}`;
}

function agentYaml(
  host: Host,
  peer: Host,
  ns: Lab['ns'],
  runDir: string,
  backend: Backend,
  o: BuildOptions,
): string {
  return `host: ${host}
uplink: up0
homeAgent: { address: "${ADDR.ha}" }
runDir: ${runDir}
dataplane: { backend: ${backend} }
control:
  listen: "[${HOSTS[host]}]:7400"
  key: ${CLUSTER_KEY}
peers:
  ${peer}: "${url(peer)}"
hypervisor:
${
  o.qemuGuest1
    ? `  driver: qemu
  bootTimeoutSeconds: 180${o.qemuMigration?.[host] ? `\n  migration: ${o.qemuMigration[host]}` : ''}
  guests:
    guest-1: { bootOn: host-a, ${o.qemuGuest1} }`
    : `  driver: netns
  namespaces: { host-a: ${ns['host-a']}, host-b: ${ns['host-b']} }`
}
networks:
  - { name: net1, homeAddress: "${ADDR.hoa}", prefixes: ["${ADDR.mnp}"${o.net1Ipv4 ? `, "${o.net1Ipv4}"` : ''}], bridge: ofl-net1, spi: ${SPI}, key: ${KEY}, guests: [guest-1]${o.net1 ? `, ${o.net1}` : ''} }
${o.qemuGuest1 ? '' : `  - { name: net2, homeAddress: "${ADDR.hoa2}", prefixes: ["${ADDR.mnp2}"], bridge: ofl-net2, spi: ${SPI2}, key: ${KEY2}, algorithm: hmac-sha256, guests: [guest-2]${o.net2 ? `, ${o.net2}` : ''} }\n`}${o.agent ? `${o.agent.replaceAll('{address}', HOSTS[host]).trimEnd()}\n` : ''}`;
}

export async function waitForLog(
  p: Proc,
  test: (line: string) => boolean,
  what: string,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!p.stderr.split('\n').some(test)) {
    if (p.child.exitCode !== null)
      throw new Error(`${what}: process exited ${p.child.exitCode}\n${p.stderr}`);
    if (Date.now() > deadline) throw new Error(`${what}: timed out\n${p.stderr.slice(-4000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface ProbeReport {
  sent: number;
  received: number;
  lost: number;
  maxGapMs: number;
  maxRttMs: number;
  trailingLost: number;
}

export async function report(p: Proc): Promise<ProbeReport> {
  p.send('report');
  return JSON.parse(await p.waitFor((l) => l.startsWith('{'))) as ProbeReport;
}

/** Arguments of `ip` that run `offlink migrate` from inside the source's namespace, with the cluster key. */
function migrateArgs(lab: Lab, network: string, from: Host, to: Host, procedure: string): string[] {
  return [
    'netns',
    'exec',
    lab.ns[from],
    process.execPath,
    OFFLINK,
    'migrate',
    network,
    '--to',
    to,
    '--procedure',
    procedure,
    '--agent',
    url(from),
    '--key-file',
    lab.keyFile,
  ];
}

/** `offlink migrate` from inside the source's namespace; its stdout, or the error with stdout/stderr. */
export async function migrate(
  lab: Lab,
  network: string,
  from: Host,
  to: Host,
  procedure: string,
): Promise<string> {
  const { stdout } = await sh(['ip', ...migrateArgs(lab, network, from, to, procedure)]);
  return stdout;
}

export interface ControlReply {
  status: number;
  body: string;
}

/**
 * One control API request with curl from inside `from`'s namespace to `to`'s agent. `headers` replace the
 * signature headers of a genuine request (forged, stale or replayed ones); `sign` = false sends none.
 */
export async function controlRequest(
  lab: Lab,
  from: keyof Lab['ns'],
  to: Host,
  req: { method: 'GET' | 'POST'; path: string; body?: string },
  headers: Record<string, string> = signFor(to, req),
): Promise<ControlReply> {
  const argv = ['curl', '-s', '-o', '-', '-w', '\n%{http_code}', '-X', req.method, '--max-time', '20'];
  // The body goes through stdin: an argument is limited to 128 KiB.
  if (req.body !== undefined) argv.push('-H', 'content-type: application/json', '--data-binary', '@-');
  for (const [k, v] of Object.entries(headers)) argv.push('-H', `${k}: ${v}`);
  argv.push(`${url(to)}${req.path}`);
  const { stdout } = await sh(['ip', 'netns', 'exec', lab.ns[from], ...argv], req.body);
  const nl = stdout.lastIndexOf('\n');
  return { status: Number(stdout.slice(nl + 1)), body: stdout.slice(0, nl) };
}

/** Genuine signature headers for a request to `to`'s agent (the signature covers its authority). */
export function signFor(
  to: Host,
  req: { method: string; path: string; body?: string },
  clock = { now: () => Date.now() },
  key: Uint8Array = Buffer.from(CLUSTER_KEY, 'hex'),
): Record<string, string> {
  const authority = authorityOf(HOSTS[to], 7400);
  return signRequest(key, { method: req.method, path: req.path, body: req.body ?? '', authority }, clock);
}

/** `GET /v1/status` of `host`'s agent (asked from its own namespace). */
export async function agentStatus(lab: Lab, host: Host): Promise<AgentStatus> {
  const r = await controlRequest(lab, host, host, { method: 'GET', path: '/v1/status' });
  if (r.status !== 200) throw new Error(`${host} status: HTTP ${r.status} ${r.body}`);
  return JSON.parse(r.body) as AgentStatus;
}

/** Sum of an agent's Prometheus samples named `name` whose labels include `match`. */
export async function agentMetric(lab: Lab, host: Host, name: string, match = ''): Promise<number> {
  const r = await controlRequest(lab, host, host, { method: 'GET', path: '/metrics' });
  let sum = 0;
  for (const line of r.body.split('\n')) {
    if (line.startsWith(name) && /[ {]/.test(line[name.length] ?? '') && line.includes(match))
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/**
 * `offlink migrate --json` from inside the source's namespace; never throws for a failed migration:
 * returns its record (the CLI prints it either way), the exit code and the output.
 */
export async function migrateRecord(
  lab: Lab,
  network: string,
  from: Host,
  to: Host,
  procedure = 'make-before-break',
): Promise<{ code: number; record: MigrationRecord | undefined; stdout: string; stderr: string }> {
  const args = [...migrateArgs(lab, network, from, to, procedure), '--json'];
  return new Promise((resolve) => {
    execFile('ip', args, { maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const at = stdout.indexOf('\n{');
      const record = at < 0 ? undefined : (JSON.parse(stdout.slice(at + 1)) as MigrationRecord);
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, record, stdout, stderr });
    });
  });
}

/** Milliseconds since the epoch of a JSON log line's `time`. */
export function logTime(line: string): number {
  return Date.parse((JSON.parse(line) as { time: string }).time);
}

/** Log lines of a process (stderr, JSON) whose text matches every pattern. */
export function logLines(p: Proc, ...patterns: RegExp[]): string[] {
  return p.stderr.split('\n').filter((l) => l.startsWith('{') && patterns.every((re) => re.test(l)));
}
