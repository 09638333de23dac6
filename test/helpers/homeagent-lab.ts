// Home agent integration rig: the report's testbed reduced to what the HA needs, in namespaces.
//
//   ga ── mra ──┐                  ┌── ha  (HA address 2001:db8:ffff::1 on lo; MNP routes point here)
//   gb ── mrb ──┼── inet (router) ─┤
//               │                  └── cn  (correspondent)
//   (2001:db8:a::2 and 2001:db8:b::2 are the two care-of addresses)
//
// Both guests carry the same MNP address, as a migrated guest would: after a CoA change the HA must
// deliver to the guest behind the new CoA, and what the old one sends must no longer pass the HA.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { BpfMaps } from '../../src/dataplane/bpf/maps.ts';
import { DECAP_PROGRAM, openLiveMaps } from '../../src/dataplane/bpf/program.ts';
import { kernelBpf } from '../../src/dataplane/bpf/syscall.ts';
import {
  type Backend,
  createMobileRouterDataplane,
  type MobileRouterBackend,
} from '../../src/dataplane/index.ts';
import { ExecRunner } from '../../src/system/runner.ts';
import type { WireSpec } from './homeagent-mr-agent.ts';
import { backbone, type NetnsLab, openNetns } from './netns.ts';
import { startupMs } from './slow.ts';

export const ADDR = {
  ha: '2001:db8:ffff::1',
  hoa: '2001:db8:ffff::101',
  hoa2: '2001:db8:ffff::102',
  mnp: '2001:db8:100::/64',
  mnp2: '2001:db8:200::/64',
  guest: '2001:db8:100::10',
  gw: '2001:db8:100::1',
  coaA: '2001:db8:a::2',
  coaB: '2001:db8:b::2',
  cn: '2001:db8:c::2',
} as const;

export const KEY = '6f66666c696e6b2d746573742d6b65792d3031';
export const SPI = 1001;
export const KEY2 = 'aa'.repeat(32);
export const SPI2 = 1002;
export const STATUS = 'http://127.0.0.1:9180';
export const ECHO_PORT = 7007;
/** What the Internet routes to the HA: the home addresses and both networks' MNP blocks. */
export const HOME_PREFIXES = ['2001:db8:ffff::/48', '2001:db8:100::/56', '2001:db8:200::/56'];

export interface Topology {
  ha: string;
  inet: string;
  mra: string;
  mrb: string;
  ga: string;
  gb: string;
  cn: string;
}

const ROOT = new URL('../../', import.meta.url).pathname;

export async function buildTopology(lab: NetnsLab): Promise<Topology> {
  const net = backbone({
    hosts: ['mra', 'mrb'],
    haAddress: ADDR.ha,
    homePrefixes: HOME_PREFIXES,
  });
  // Guests behind each MR, same MNP address. The worst case: a guest whose link MTU is 1500 although
  // the MR's side is 1460 (docs/dataplane.md), as one that ignores the router advertisements' MTU. It
  // then offers MSS 1440, and only the home agent's MSS clamp keeps TCP through the tunnel working.
  const guestLink = (mr: 'mra' | 'mrb', guest: 'ga' | 'gb') => ({
    a: { ns: mr, dev: 'mr-g', mtu: 1460, addresses: [`${ADDR.gw}/64`] },
    b: { ns: guest, dev: 'g0', mtu: 1500, addresses: [`${ADDR.guest}/64`] },
  });
  return lab.build({
    namespaces: [...net.namespaces, { name: 'ga' }, { name: 'gb' }],
    veths: [...net.veths, guestLink('mra', 'ga'), guestLink('mrb', 'gb')],
    addresses: net.addresses,
    routes: [
      ...net.routes,
      { ns: 'ga', to: 'default', via: ADDR.gw },
      { ns: 'gb', to: 'default', via: ADDR.gw },
    ],
  });
}

/**
 * The MR side of the tunnel, made by the data plane of the lab's backend (no mobile router process): the
 * guests' traffic from `mr-g` goes to the HA, what the HA tunnels to `coa` comes out on `mr-g`. No MSS
 * clamping on this side: the tests check the home agent's.
 */
export async function mrTunnel(lab: NetnsLab, ns: string, coa: string): Promise<MobileRouterBackend> {
  const dp = createMobileRouterDataplane(
    lab.backend,
    { runner: new ExecRunner({ netns: ns }) },
    { mss: 0, runDir: join(lab.runDir, ns) },
  );
  await dp.initHost({ coa, haAddress: ADDR.ha, uplink: 'up0', table: 200 });
  await dp.activate({
    network: 'net1',
    haAddress: ADDR.ha,
    coa,
    uplink: 'up0',
    bridge: 'mr-g',
    prefixes: [ADDR.mnp],
    table: 100,
    rulePref: 100,
  });
  return dp;
}

export interface HaConfigOptions {
  database: string;
  backend: Backend;
  runDir: string;
  maxLifetimeSeconds?: number;
  refreshAdviceSeconds?: number;
  mss?: number;
  /** store: etcd on these members, under this HA name (the cluster rigs). */
  etcd?: { endpoints: readonly string[]; name: string };
  /** The HA address on the HA's own tun device `offlink-ha`, for BGP anycast (the cluster rig). */
  anycast?: boolean;
}

export function haConfigYaml(o: HaConfigOptions): string {
  return `homeAgent:
  address: ${ADDR.ha}
  uplink: ha-up
  status: { listen: "127.0.0.1:9180" }
  database: ${o.database}
${o.etcd ? `  store: etcd\n  etcd: { endpoints: ${JSON.stringify(o.etcd.endpoints)}, name: ${o.etcd.name}, timeoutMs: 5000 }\n` : ''}${o.anycast ? '  anycast: { device: offlink-ha }\n' : ''}  runDir: ${o.runDir}
  dataplane: { backend: ${o.backend}, table: 200, mss: ${o.mss ?? 1400} }
  maxLifetimeSeconds: ${o.maxLifetimeSeconds ?? 3600}
${o.refreshAdviceSeconds ? `  refreshAdviceSeconds: ${o.refreshAdviceSeconds}\n` : ''}mobileRouters:
  - { name: net1, homeAddress: "${ADDR.hoa}", prefixes: ["${ADDR.mnp}"], spi: ${SPI}, key: ${KEY} }
  - { name: net2, homeAddress: "${ADDR.hoa2}", prefixes: ["${ADDR.mnp2}"], spi: ${SPI2}, key: ${KEY2}, algorithm: hmac-sha256 }
`;
}

/** A temporary directory with the HA config and database; removed by `dispose`. */
export function haFiles(o: Omit<HaConfigOptions, 'database' | 'runDir'>): {
  dir: string;
  config: string;
  dispose(): void;
} {
  const dir = mkdtempSync(join(tmpdir(), 'offlink-ha-it-'));
  const config = join(dir, 'ha.yaml');
  writeFileSync(config, haConfigYaml({ ...o, database: join(dir, 'ha.sqlite'), runDir: join(dir, 'run') }));
  return { dir, config, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}

/** `node bin/offlink.js ha --config FILE` in the HA namespace; resolves once it logs that it serves. */
export async function startHa(
  lab: NetnsLab,
  ns: string,
  config: string,
  env: NodeJS.ProcessEnv = {},
): Promise<{ child: ChildProcess; log: string[] }> {
  const child = lab.spawn(ns, [process.execPath, join(ROOT, 'bin/offlink.js'), 'ha', '--config', config], {
    env: { ...process.env, ...env },
  });
  const log: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`HA did not start:\n${log.join('\n')}`)), startupMs(15_000));
    createInterface({ input: child.stderr! }).on('line', (line) => {
      log.push(line);
      if (line.includes('home agent started')) {
        clearTimeout(t);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`HA exited with ${code}:\n${log.join('\n')}`));
    });
  });
  return { child, log };
}

export async function killHard(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const closed = new Promise((r) => child.once('close', r));
  // `ip netns exec` execs the program, so this pid is the node process itself.
  child.kill('SIGKILL');
  await closed;
}

export interface BindingView {
  hoa: string;
  coa: string;
  prefixes: string[];
  sequence: number;
  lifetimeSeconds: number;
  remainingSeconds: number;
  mode: string;
  id: number;
}

export async function haStatus(lab: NetnsLab, ns: string): Promise<{ bindings: BindingView[] }> {
  const { stdout } = await lab.exec(ns, ['curl', '-sf', `${STATUS}/status`]);
  return JSON.parse(stdout);
}

/** Sum of a Prometheus metric's samples whose labels include `match`. */
export async function haMetric(lab: NetnsLab, ns: string, name: string, match = ''): Promise<number> {
  const { stdout } = await lab.exec(ns, ['curl', '-sf', `${STATUS}/metrics`]);
  let sum = 0;
  for (const line of stdout.split('\n')) {
    if (
      line.startsWith(name) &&
      (line[name.length] === ' ' || line[name.length] === '{') &&
      line.includes(match)
    ) {
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return sum;
}

/**
 * Where the home agent in `ns` tunnels `prefix`, read from the kernel: '' when nowhere. seg6: the route
 * (`ip -6 route show <prefix>`, the CoA in its segment list); bpf: `tunnel <HA> -> <CoA>`, the map entry
 * of the program on the HA's uplink (read through bpf(2) from the test process: map ids are global).
 */
export async function haRoutes(lab: NetnsLab, ns: string, prefix: string, uplink = 'ha-up'): Promise<string> {
  if (lab.backend === 'seg6')
    return (await lab.exec(ns, ['ip', '-6', 'route', 'show', prefix])).stdout.trim();
  const maps = await attachedMaps(lab, ns, uplink);
  if (!maps) return '';
  try {
    const t = maps.encapDst.get(prefix);
    return t ? `tunnel ${t.src} -> ${t.dst}` : '';
  } finally {
    maps.close();
  }
}

/** The bpf data plane's maps in `ns` (those of the program on `uplink`), or undefined without one. */
export async function attachedMaps(lab: NetnsLab, ns: string, uplink: string): Promise<BpfMaps | undefined> {
  const { stdout } = await lab.exec(ns, ['tc', '-j', 'filter', 'show', 'dev', uplink, 'ingress']);
  const filters = (stdout.trim() === '' ? [] : JSON.parse(stdout)) as {
    options?: { prog?: { id?: number; name?: string } };
  }[];
  const id = filters.find((f) => f.options?.prog?.name === DECAP_PROGRAM)?.options?.prog?.id;
  return id === undefined ? undefined : openLiveMaps(kernelBpf(), id);
}

export interface BaView {
  status: number;
  sequence: number;
  lifetime: number;
  flags: number;
  authentic: boolean;
  bra: number | null;
  /** Outer source address of the BA. */
  from: string;
}

/**
 * A helper process inside a namespace (homeagent-mr-agent.ts), driven over stdin/stdout: the test MR
 * (BUs, fuzz) and UDP echo / probe traffic.
 */
export class NsAgent {
  private readonly child: ChildProcess;
  private seq = 0;
  private readonly pending = new Map<number, (v: Record<string, unknown>) => void>();
  private ready: Promise<void>;

  constructor(ns: string) {
    this.child = spawn(
      'ip',
      [
        'netns',
        'exec',
        ns,
        process.execPath,
        '--import',
        'tsx',
        join(ROOT, 'test/helpers/homeagent-mr-agent.ts'),
      ],
      { stdio: ['pipe', 'pipe', 'inherit'], cwd: ROOT },
    );
    this.ready = new Promise((resolve, reject) => {
      this.child.once('exit', (code) => reject(new Error(`MR agent exited with ${code}`)));
      createInterface({ input: this.child.stdout! }).on('line', (line) => {
        const msg = JSON.parse(line) as Record<string, unknown>;
        if (msg['ready']) resolve();
        const cb = this.pending.get(msg['id'] as number);
        this.pending.delete(msg['id'] as number);
        cb?.(msg);
      });
    });
    this.ready.catch(() => {});
  }

  private async request(cmd: Record<string, unknown>): Promise<Record<string, unknown>> {
    await this.ready;
    const id = ++this.seq;
    const answer = new Promise<Record<string, unknown>>((resolve) => this.pending.set(id, resolve));
    this.child.stdin!.write(`${JSON.stringify({ id, ...cmd })}\n`);
    const msg = await answer;
    if (msg['error']) throw new Error(String(msg['error']));
    return msg;
  }

  /** Send a BU and return its BA (null when none came within timeoutMs). */
  async bu(spec: WireSpec, timeoutMs = 3000): Promise<{ ba: BaView | null; ms?: number }> {
    return (await this.request({ op: 'bu', spec, timeoutMs })) as { ba: BaView | null; ms?: number };
  }

  async fuzz(cmd: { count: number; seed: number; base: WireSpec[]; probe: WireSpec; burst?: number }) {
    return (await this.request({ op: 'fuzz', ...cmd })) as {
      sent: number;
      malformed: number;
      probes: number;
      ms: number;
    };
  }

  /**
   * Send `hex` as it is (`count` times) from `from` (port `fromPort`, default any) to port `port` (default
   * the HA port, 4191) at `to`; the replies within waitMs, the first one's bytes in `reply.hex`.
   */
  async raw(cmd: {
    from: string;
    fromPort?: number;
    to: string;
    port?: number;
    hex: string;
    count?: number;
    waitMs?: number;
    verify?: { spi: number; key: string; algorithm?: 'hmac-sha1' | 'hmac-sha256'; coa: string; hoa: string };
  }): Promise<{
    replies: number;
    reply: { type: string; status?: number; sequence?: number; authentic?: boolean; hex: string } | null;
  }> {
    return (await this.request({ op: 'raw', ...cmd })) as Awaited<ReturnType<NsAgent['raw']>>;
  }

  echo(port = ECHO_PORT): Promise<unknown> {
    return this.request({ op: 'echo', port });
  }

  /** UDP datagrams of `size` bytes to an echo server; how many came back. */
  async probe(
    to: string,
    o: { count?: number; size?: number; intervalMs?: number; waitMs?: number } = {},
  ): Promise<{ sent: number; received: number; rttMs: number[]; gapMs: number }> {
    return (await this.request({ op: 'probe', to, port: ECHO_PORT, count: 3, size: 64, ...o })) as {
      sent: number;
      received: number;
      rttMs: number[];
      /** The longest time without an answered probe (0: none lost). */
      gapMs: number;
    };
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const closed = new Promise((r) => this.child.once('close', r));
    this.child.kill('SIGKILL');
    await closed;
  }
}

/** The home agent rig of test/homeagent*.test.ts: topology, MR tunnels, the real HA, helper processes. */
export interface HaRig {
  files: ReturnType<typeof haFiles>;
  lab: NetnsLab;
  ns: Topology;
  ha: { child: ChildProcess; log: string[] };
  agents: Record<'mra' | 'mrb' | 'ga' | 'gb' | 'cn', NsAgent>;
  close(): Promise<void>;
}

/**
 * Builds the rig on `backend`: both MRs' tunnels, `offlink ha` in its namespace, a helper process in each
 * MR, guest and the correspondent, UDP echo in the guests and the correspondent. What was made is
 * removed if building fails, and by `close()`.
 */
export async function openHaRig(backend: Backend): Promise<HaRig> {
  const files = haFiles({ backend });
  const lab = await openNetns({ backend });
  const agents: Partial<HaRig['agents']> = {};
  const close = async () => {
    await Promise.all(Object.values(agents).map((a) => a.close()));
    await lab.cleanup();
    files.dispose();
  };
  try {
    const ns = await buildTopology(lab);
    await mrTunnel(lab, ns.mra, ADDR.coaA);
    await mrTunnel(lab, ns.mrb, ADDR.coaB);
    const ha = await startHa(lab, ns.ha, files.config);
    for (const name of ['mra', 'mrb', 'ga', 'gb', 'cn'] as const) agents[name] = new NsAgent(ns[name]);
    const all = agents as HaRig['agents'];
    await Promise.all([all.ga.echo(), all.gb.echo(), all.cn.echo()]);
    return { files, lab, ns, ha, agents: all, close };
  } catch (err) {
    await close();
    throw err;
  }
}

export function specFor(coa: string, sequence: number, over: Partial<WireSpec> = {}): WireSpec {
  return { hoa: ADDR.hoa, ha: ADDR.ha, coa, spi: SPI, key: KEY, sequence, prefixes: [ADDR.mnp], ...over };
}
