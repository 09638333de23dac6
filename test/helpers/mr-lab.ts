// A small NEMO testbed for mobile router integration tests, in namespaces made by NetnsLab:
//
//   guest ─(g0/vg1, bridge ofl-net1)─ host-a ─up0─┐
//                                     host-b ─up0─┤ inet ─── ha (HA address on lo) ─── (routes MNP)
//                                            cn ──┘
//
//   inet ↔ ha      2001:db8:1::/64   inet ::1, ha ::2       HA address 2001:db8:f::1, HoA 2001:db8:f::100
//   inet ↔ host-a  2001:db8:a::/64   inet ::1, host-a ::2   (care-of address)
//   inet ↔ host-b  2001:db8:b::/64   inet ::1, host-b ::2
//   inet ↔ cn      2001:db8:c::/64   inet ::1, cn ::2
//   MNP            2001:db8:100::/64 (inet routes it and the home prefix to the HA)
//
// Mobile routers run as test/fixtures/mr-runner.ts processes inside their host namespace; the HA is the
// real `offlink ha` daemon inside ha.
import { type ChildProcess, type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Backend } from '../../src/dataplane/probe.ts';
import { backbone, type NetnsLab } from './netns.ts';
import { Procs } from './procs.ts';
import { startupMs } from './slow.ts';

export const A = {
  haLink: '2001:db8:1::/64',
  inetHa: '2001:db8:1::1',
  haUp: '2001:db8:1::2',
  haAddress: '2001:db8:f::1',
  home: '2001:db8:f::/64',
  hoa: '2001:db8:f::100',
  hostA: { inet: '2001:db8:a::1', coa: '2001:db8:a::2' },
  hostB: { inet: '2001:db8:b::1', coa: '2001:db8:b::2' },
  cn: { inet: '2001:db8:c::1', addr: '2001:db8:c::2' },
  mnp: '2001:db8:100::/64',
} as const;

export const KEY = '6f66666c696e6b2d746573742d6b65792d31323334';
export const SPI = 4242;
export const BRIDGE = 'ofl-net1';
export const REPO = new URL('../../', import.meta.url).pathname;
const RUNNER = join(REPO, 'test/fixtures/mr-runner.ts');
const OFFLINK = join(REPO, 'bin/offlink.js');

export interface Topology {
  inet: string;
  ha: string;
  hostA: string;
  hostB: string;
  cn: string;
  guest: string;
}

/** Namespaces, links, addresses and static routes. The guest hangs off host-a's port vg1 (not yet bridged). */
export async function buildTopology(lab: NetnsLab): Promise<Topology> {
  const net = backbone({ hosts: ['hosta', 'hostb'], haAddress: A.haAddress, homePrefixes: [A.home, A.mnp] });
  const ns = await lab.build({
    namespaces: [...net.namespaces, { name: 'guest' }],
    veths: [
      ...net.veths,
      { a: { ns: 'guest', dev: 'g0', mtu: 1460 }, b: { ns: 'hosta', dev: 'vg1', mtu: 1460 } },
    ],
    addresses: net.addresses,
    routes: net.routes,
  });
  return { inet: ns.inet, ha: ns.ha, hostA: ns.hosta, hostB: ns.hostb, cn: ns.cn, guest: ns.guest };
}

/** The guest's SLAAC address in the MNP, once it has one (polls). Returns it and how long it took. */
export async function waitForSlaac(lab: NetnsLab, guest: string, timeoutMs = 20_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { stdout } = await lab.exec(guest, [
      'ip',
      '-j',
      '-6',
      'addr',
      'show',
      'dev',
      'g0',
      'scope',
      'global',
    ]);
    const info = (JSON.parse(stdout) as Array<{ addr_info?: Array<{ local?: string; tentative?: boolean }> }>)
      .flatMap((l) => l.addr_info ?? [])
      .find((a) => a.local?.startsWith('2001:db8:100:') && !a.tentative);
    if (info?.local) return info.local;
    if (Date.now() > deadline) throw new Error(`guest got no SLAAC address in ${timeoutMs} ms`);
    await sleep(50);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A mobile router process: commands answered by id, events kept in order until consumed. */
export class MrHandle {
  private readonly events: Array<Record<string, unknown>> = [];
  private readonly pending = new Map<number, (o: Record<string, unknown>) => void>();
  private wake: Array<() => void> = [];
  private nextId = 1;
  stderr = '';

  constructor(
    readonly name: string,
    readonly child: ChildProcessWithoutNullStreams,
  ) {
    createInterface({ input: child.stdout }).on('line', (line) => {
      let o: Record<string, unknown>;
      try {
        o = JSON.parse(line);
      } catch {
        return;
      }
      const answer = typeof o['id'] === 'number' ? this.pending.get(o['id']) : undefined;
      if (answer) answer(o);
      else if ('event' in o) this.events.push(o);
      for (const w of this.wake.splice(0)) w();
    });
    child.stderr.on('data', (d) => {
      this.stderr += d;
    });
    child.on('close', () => {
      for (const w of this.wake.splice(0)) w();
    });
  }

  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  /** Send a command and wait for its answer. */
  call(cmd: string, args: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.name} ${cmd}: no answer in ${timeoutMs} ms\n${this.stderr.slice(-3000)}`));
      }, timeoutMs);
      this.pending.set(id, (o) => {
        clearTimeout(t);
        this.pending.delete(id);
        if (o['ok']) resolve(o['result']);
        else reject(new Error(`${this.name} ${cmd}: ${String(o['error'])}`));
      });
      this.child.stdin.write(`${JSON.stringify({ id, cmd, ...args })}\n`);
    });
  }

  /** The first event (oldest first) matching `pred`; it and the events before it are consumed. */
  async event(
    pred: (e: Record<string, unknown>) => boolean,
    timeoutMs = 30_000,
  ): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.events.findIndex(pred);
      if (i >= 0) return this.events.splice(0, i + 1).at(-1)!;
      if (this.exited) throw new Error(`${this.name} exited:\n${this.stderr.slice(-3000)}`);
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(
          `${this.name}: no matching event in ${timeoutMs} ms; have ${JSON.stringify(this.events)}`,
        );
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.wake.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** Forget events seen so far. */
  drain(): Array<Record<string, unknown>> {
    return this.events.splice(0);
  }

  async status(): Promise<Record<string, unknown> & { state: string; counters: Record<string, number> }> {
    return (await this.call('status')) as Awaited<ReturnType<MrHandle['status']>>;
  }

  async kill(): Promise<void> {
    if (this.exited) return;
    const closed = new Promise((r) => this.child.once('close', r));
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await closed;
    clearTimeout(t);
  }
}

/** Everything a test starts that needs cleaning up beyond the namespaces themselves. */
export class MrLabProcesses {
  readonly procs = new Procs();
  readonly dir = mkdtempSync(join(tmpdir(), 'offlink-mr-it-'));
  private readonly mrs: MrHandle[] = [];
  private ha: ChildProcess | undefined;
  private haLog = '';

  /** `backend`: the data plane of the MRs and the HA this starts. */
  constructor(readonly backend: Backend = 'bpf') {}

  /** Start a mobile router process for the test network inside `ns`. */
  async startMr(
    ns: string,
    name: string,
    network: Record<string, unknown> = {},
    options: { dataplane?: 'none' } = {},
  ): Promise<MrHandle> {
    const runDir = join(this.dir, `run-${name}`);
    const config = {
      host: { uplink: 'up0', haAddress: A.haAddress },
      network: {
        name: 'net1',
        homeAddress: A.hoa,
        prefixes: [A.mnp],
        bridge: BRIDGE,
        spi: SPI,
        key: KEY,
        lifetimeSeconds: 60,
        ...network,
      },
      runDir,
      dataplane: options.dataplane ?? this.backend,
      coaPollMs: 1000,
    };
    const file = join(this.dir, `mr-${name}.json`);
    writeFileSync(file, JSON.stringify(config));
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '--import', 'tsx', RUNNER, file], {
      stdio: ['pipe', 'pipe', 'pipe'],
      cwd: REPO,
      env: { ...process.env, OFFLINK_LOG_LEVEL: process.env['OFFLINK_LOG_LEVEL'] ?? 'info' },
    });
    const mr = new MrHandle(name, child);
    this.mrs.push(mr);
    await mr.event((e) => e['event'] === 'ready', startupMs(30_000));
    return mr;
  }

  /** The real home agent daemon inside `ns`, answering for the test network. */
  async startHa(
    lab: NetnsLab,
    ns: string,
    over: Record<string, unknown> = {},
    options: { freshDatabase?: boolean } = {},
  ): Promise<void> {
    const database = join(this.dir, options.freshDatabase ? `ha-${Date.now()}.sqlite` : 'ha.sqlite');
    const yaml = [
      'homeAgent:',
      `  address: ${A.haAddress}`,
      '  uplink: ha-up',
      '  listen: { address: "::", port: 4191 }',
      '  status: { listen: "127.0.0.1:9180" }',
      `  database: ${database}`,
      `  runDir: ${join(this.dir, 'run-ha')}`,
      `  dataplane: { backend: ${this.backend}, table: 200, mss: 1400 }`,
      ...Object.entries(over).map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`),
      'mobileRouters:',
      '  - name: net1',
      `    homeAddress: ${A.hoa}`,
      `    prefixes: [${A.mnp}]`,
      `    spi: ${SPI}`,
      `    key: ${KEY}`,
      '',
    ].join('\n');
    const file = join(this.dir, 'ha.yaml');
    writeFileSync(file, yaml);
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, OFFLINK, 'ha', '--config', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.on('data', (d) => {
      this.haLog += d;
    });
    child.stderr.on('data', (d) => {
      this.haLog += d;
    });
    this.ha = child;
    const deadline = Date.now() + startupMs(20_000);
    for (;;) {
      if (child.exitCode !== null) throw new Error(`offlink ha exited ${child.exitCode}:\n${this.haLog}`);
      const ok = await lab
        .exec(ns, ['curl', '-sf', 'http://127.0.0.1:9180/status'])
        .then(() => true)
        .catch(() => false);
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`offlink ha not ready:\n${this.haLog}`);
      await sleep(100);
    }
  }

  async stopHa(): Promise<void> {
    const child = this.ha;
    this.ha = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const closed = new Promise((r) => child.once('close', r));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 5000);
    await closed;
    clearTimeout(t);
  }

  get haOutput(): string {
    return this.haLog;
  }

  async haStatus(
    lab: NetnsLab,
    ns: string,
  ): Promise<{
    bindings: Array<{ hoa: string; coa: string; sequence: number; prefixes: string[] }>;
  }> {
    const { stdout } = await lab.exec(ns, ['curl', '-sf', 'http://127.0.0.1:9180/status']);
    return JSON.parse(stdout);
  }

  /** Count of BUs the HA answered with `status` (from its Prometheus metrics). */
  async haBuCount(lab: NetnsLab, ns: string, status: number): Promise<number> {
    const { stdout } = await lab.exec(ns, ['curl', '-sf', 'http://127.0.0.1:9180/metrics']);
    let n = 0;
    for (const line of stdout.split('\n')) {
      if (line.startsWith('offlink_ha_binding_updates_total{') && line.includes(`status="${status}"`)) {
        n += Number(line.split(' ').at(-1));
      }
    }
    return n;
  }

  async cleanup(): Promise<void> {
    await this.stopHa();
    for (const mr of this.mrs) await mr.kill();
    await this.procs.killAll();
    // A runner killed hard leaves its radvd behind (namespace deletion does not kill processes).
    for (const d of readdirSync(this.dir).filter((f) => f.startsWith('run-'))) {
      for (const f of readdirSync(join(this.dir, d)).filter((x) => x.endsWith('.pid'))) {
        const pid = Number(readFileSync(join(this.dir, d, f), 'utf8').trim());
        if (pid > 1) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {}
        }
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
