// `offlink lab run`: build the lab, start its daemons and traffic, migrate the guest back and forth,
// measure, tear everything down (also on failure and on Ctrl-C), and write the report.
// `offlink lab up`: the same lab with its daemons, left running for manual experiments.
import type { ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { BackendChoice } from '../dataplane/probe.ts';
import { OfflinkError } from '../errors.ts';
import { createLogger } from '../log.ts';
import type { CommandRunner } from '../system/runner.ts';
import { ExecRunner } from '../system/runner.ts';
import { type LabConfigs, writeLabConfigs } from './configs.ts';
import { runMigrate, startDaemons, waitActive, waitFor } from './daemons.ts';
import { CLUSTER_COMMANDS, type HaFailoverTimes, LabHaCluster } from './ha-cluster.ts';
import { checkLibvirtRequirements, LabLibvirt, OnLinkLibvirt } from './libvirt-guest.ts';
import { type MigrationWindow, measure, measureSpan } from './measure.ts';
import { LAB_COMMAND_TIMEOUT_MS, LIBVIRT_DIR, labDown, preflight, writeState } from './netns.ts';
import { type OnLinkGuests, OnLinkVms } from './onlink-vms.ts';
import type { GuestKind, HaFailover, LabFamily, LabReport, Procedure, RunData } from './report.ts';
import { buildReport, writeReport } from './report.ts';
import { formatSummary } from './summary.ts';
import {
  attachGuest,
  buildTopology,
  moveGuest,
  planTopology,
  type Topology,
  type TopologyKind,
} from './topology.ts';
import { TRAFFIC_DEFAULTS, Traffic, type TrafficProgress } from './traffic.ts';
import { UplinkSampler } from './uplink.ts';

export interface LabOptions {
  topology: TopologyKind;
  guest: GuestKind;
  /** VM guests (QEMU, libvirt): overlap the handover with the hypervisor's switchover (default true); false to compare. */
  overlap?: boolean;
  /** The daemons' data plane backend (default auto). */
  dataplane?: BackendChoice;
  /** The guests' address families; unset: dual, or ipv6 for QEMU guests (resolveFamily). */
  family?: LabFamily;
  /** 2: two home agents, their bindings in etcd, the HA address by BGP anycast (default 1). */
  homeAgents?: 1 | 2;
  stateDir: string;
  print: (line: string) => void;
  signal?: AbortSignal;
}

export interface LabRunOptions extends LabOptions {
  migrations: number;
  intervalS: number;
  procedure: Procedure;
  out: string;
  json?: string;
  /** Kill -9 the home agent that carries the traffic in the middle of the run (needs homeAgents 2). */
  failHa?: boolean;
}

/** The agents' default BU lifetime (the lab's configs set none): a refresh is due at 80 % of it. */
const AGENT_LIFETIME_S = 600;

/** Two home agents need the off-link topology; `--fail-ha` needs two. Checked before anything is built. */
export function checkHomeAgents(options: {
  homeAgents?: number;
  failHa?: boolean;
  topology: TopologyKind;
}): void {
  const n = options.homeAgents ?? 1;
  if (options.failHa && n !== 2)
    throw new OfflinkError(
      'ERR_LAB_OPTIONS',
      '--fail-ha kills one of two home agents: use it with --home-agents 2',
    );
  if (n === 2 && options.topology === 'on-link')
    throw new OfflinkError(
      'ERR_LAB_OPTIONS',
      '--home-agents 2 needs the off-link topology (the on-link baseline has no home agent)',
    );
}

const now = () => performance.timeOrigin + performance.now();
const UPLINK_SAMPLE_MS = 100;

/**
 * The family a run uses. Dual-stack by default, for every kind of guest; the seg6 data plane carries
 * IPv6 only, so a seg6 run asked for nothing falls back to ipv6 and says so (`note`, in the report), and
 * one asked for dual is refused before anything is built.
 */
export function resolveFamily(
  asked: LabFamily | undefined,
  dataplane: BackendChoice = 'auto',
): { family: LabFamily; note?: string } {
  // The seg6 data plane does not carry IPv4 (docs/dataplane.md).
  const why =
    dataplane === 'seg6'
      ? {
          what: 'the seg6 data plane',
          text: 'the seg6 data plane does not carry IPv4',
          use: '--dataplane seg6',
        }
      : undefined;
  if (!why) return { family: asked ?? 'dual' };
  if (asked === 'dual') {
    throw new OfflinkError(
      'ERR_LAB_OPTIONS',
      `--family dual cannot run with ${why.what}: ${why.text} (use --family ipv6 with ${why.use})`,
    );
  }
  return asked ? { family: asked } : { family: 'ipv6', note: `${why.text}: ran ipv6, not dual` };
}

function sleepUntil(t: number, signal?: AbortSignal): Promise<void> {
  return new Promise((res, rej) => {
    const onAbort = () => {
      clearTimeout(timer);
      rej(signal?.reason);
    };
    const timer = setTimeout(
      () => {
        signal?.removeEventListener('abort', onAbort);
        res();
      },
      Math.max(0, t - now()),
    );
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * What runs in a built lab: the daemons' configs (off-link), the guests the lab migrates itself (on-link
 * QEMU and libvirt), the libvirtds (libvirt guests).
 */
interface Running {
  topo: Topology;
  configs?: LabConfigs;
  vms?: OnLinkGuests;
  libvirt?: LabLibvirt;
  /** The data plane backend the home agent chose (off-link; on-link has no tunnel). */
  backend?: string;
  /** Two home agents: etcd and BIRD, and the HAs' processes by name. */
  cluster?: LabHaCluster;
  has?: Record<string, ChildProcess>;
}

/** The backend a daemon logged it chose (`data plane backend chosen`), from its log file. */
export function chosenBackend(logFile: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(logFile, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    if (!line.includes('data plane backend chosen')) continue;
    try {
      const backend = (JSON.parse(line) as { backend?: unknown }).backend;
      if (typeof backend === 'string') return backend;
    } catch {}
  }
  return undefined;
}

/** Build the lab and start what runs in it; the guest ends up attached to host A. */
async function bringUp(
  options: LabOptions,
  runner: CommandRunner,
  logDir: string,
  detached: boolean,
  onStarted: (what: { vms?: OnLinkGuests; libvirt?: LabLibvirt }) => void = () => {},
): Promise<Running> {
  const t0 = now();
  const { family, note } = resolveFamily(options.family, options.dataplane);
  if (note) options.print(`lab: ${note}`);
  options.print(
    `lab: building the ${options.topology} testbed (${family === 'dual' ? 'dual-stack' : 'IPv6'}) in network namespaces ...`,
  );
  const homeAgents = options.homeAgents ?? 1;
  const topo = await buildTopology(planTopology(options.topology, 1, options.guest, family, homeAgents), {
    runner,
    stateDir: options.stateDir,
    bridges: options.topology === 'off-link' ? 'agent' : 'lab',
    detached,
    ...(options.signal ? { signal: options.signal } : {}),
  });
  options.print(
    `lab: built in ${((now() - t0) / 1000).toFixed(1)} s; ${topo.hosts.map((h) => `host ${h.label} ${topo.careOf[h.name]}`).join(', ')}`,
  );
  let libvirt: LabLibvirt | undefined;
  if (options.guest === 'libvirt') {
    libvirt = new LabLibvirt(topo, join(options.stateDir, LIBVIRT_DIR), { detached });
    onStarted({ libvirt });
    options.print(
      'lab: starting a libvirtd on host A and on host B (its QEMU probe: ~8 s) and the libvirt domain on host A ...',
    );
    await libvirt.start(runner, options.signal);
  }
  if (options.topology === 'off-link') {
    const configs = writeLabConfigs(topo, options.stateDir, {
      overlap: options.overlap ?? true,
      dataplane: options.dataplane ?? 'auto',
    });
    let cluster: LabHaCluster | undefined;
    if (topo.cluster) {
      cluster = new LabHaCluster(
        { ...topo, cluster: topo.cluster },
        runner,
        { state: options.stateDir, log: logDir },
        detached,
      );
      options.print(
        `lab: two home agents: etcd ×3 on ${topo.inet.ns}'s loopback, BIRD in ${[topo.inet.ns, ...topo.cluster.members.map((m) => m.ns)].join(', ')} ...`,
      );
      await cluster.start();
    }
    if (options.guest === 'qemu') options.print("lab: host A's agent boots the QEMU guest (TCG: ~10 s) ...");
    options.print(
      `lab: starting offlink ha (${topo.cluster ? topo.cluster.members.map((m) => m.ns).join(', ') : topo.ha.ns}) and offlink agent (${topo.hosts.map((h) => h.ns).join(', ')}) ...`,
    );
    const has = await startDaemons(topo, {
      runner,
      configs,
      logDir,
      detached,
      ...(options.signal ? { signal: options.signal } : {}),
      // both HAs announce the HA address before the agents register through it
      ...(cluster ? { beforeAgents: () => cluster.waitPaths(2, 60_000, options.signal) } : {}),
    });
    if (cluster) {
      const via = await cluster.carrier();
      options.print(
        `lab: ${topo.inet.ns} routes the home prefixes to ${via?.name ?? '?'} (BGP, both HAs announce)`,
      );
    }
    if (options.guest === 'netns')
      for (const g of topo.guests) await attachGuest(g, topo.hosts[0].ns, runner);
    await waitActive(runner, topo.hosts[0], configs, 60_000, options.signal);
    const backend = chosenBackend(join(logDir, 'ha.log'));
    options.print(
      `lab: ${topo.guests.map((g) => g.network).join(', ')} active on host A (registered with the home agent; data plane ${backend ?? '?'})`,
    );
    return {
      topo,
      configs,
      has,
      ...(cluster ? { cluster } : {}),
      ...(backend ? { backend } : {}),
      ...(libvirt ? { libvirt } : {}),
    };
  }
  if (libvirt) {
    // On-link: plain `virsh migrate --live` between the two libvirtds, driven by this process.
    const logger = createLogger('lab-libvirt', { destination: openSync(join(logDir, 'libvirt.log'), 'a') });
    const vms = new OnLinkLibvirt(topo, libvirt, logger);
    onStarted({ vms, libvirt });
    return { topo, vms, libvirt };
  }
  if (options.guest === 'qemu') {
    // On-link: ordinary QEMU live migration on one segment, driven by this process (onlink-vms.ts).
    // The drivers' own log lines (boot, "qemu migration completed" with QEMU's figures), as the agents'
    // logs hold them off-link.
    const logger = createLogger('lab-qemu', { destination: openSync(join(logDir, 'qemu.log'), 'a') });
    const vms = new OnLinkVms(topo, runner, join(logDir, 'qemu'), logger);
    onStarted({ vms });
    options.print('lab: booting the QEMU guest on host A (TCG: ~10 s) ...');
    await vms.boot(options.signal);
    return { topo, vms };
  }
  return { topo };
}

/** What a lab with these options needs beyond the lab's own commands. */
function extraCommands(options: LabOptions): readonly { command: string; pkg: string }[] {
  return (options.homeAgents ?? 1) === 2 ? CLUSTER_COMMANDS : [];
}

export async function labUp(options: LabOptions): Promise<Running> {
  // The on-link QEMU guest is a child of the lab process: it cannot outlive `lab up`. An on-link libvirt
  // guest could, but nothing would migrate it: the lab process does that on-link.
  if (options.guest !== 'netns' && options.topology === 'on-link') {
    const what = options.guest === 'qemu' ? 'QEMU' : 'libvirt';
    throw new OfflinkError(
      'ERR_LAB_OPTIONS',
      `\`lab up\` cannot leave an on-link ${what} guest running (the lab process runs it); use \`lab run --topology on-link --guest ${options.guest}\``,
    );
  }
  resolveFamily(options.family, options.dataplane);
  checkHomeAgents(options);
  const runner = new ExecRunner({ timeoutMs: LAB_COMMAND_TIMEOUT_MS });
  await preflight(runner, options.stateDir, (l) => options.print(`lab: ${l}`), extraCommands(options));
  if (options.guest === 'libvirt') checkLibvirtRequirements();
  writeState(options.stateDir, {
    pid: process.pid,
    mode: 'up',
    topology: options.topology,
    startedAt: new Date().toISOString(),
  });
  try {
    return await bringUp(options, runner, options.stateDir, true);
  } catch (err) {
    await labDown(runner, options.stateDir, { killOwner: false });
    throw err;
  }
}

export async function labRun(options: LabRunOptions): Promise<LabReport> {
  const { family, note: familyNote } = resolveFamily(options.family, options.dataplane);
  checkHomeAgents(options);
  const runner = new ExecRunner({ timeoutMs: LAB_COMMAND_TIMEOUT_MS });
  await preflight(runner, options.stateDir, (l) => options.print(`lab: ${l}`), extraCommands(options));
  if (options.guest === 'libvirt') checkLibvirtRequirements();
  writeState(options.stateDir, {
    pid: process.pid,
    mode: 'run',
    topology: options.topology,
    startedAt: new Date().toISOString(),
  });
  const out = resolve(options.out);
  const logDir = join(out, 'logs');
  let traffic: Traffic | undefined;
  let sampler: UplinkSampler | undefined;
  let vms: OnLinkGuests | undefined;
  let libvirt: LabLibvirt | undefined;
  try {
    mkdirSync(logDir, { recursive: true });
    const { topo, configs, backend, cluster, has } = await bringUp(
      options,
      runner,
      logDir,
      false,
      (started) => {
        vms = started.vms ?? vms;
        libvirt = started.libvirt ?? libvirt;
      },
    );
    const guest = topo.guests[0]!;
    sampler = new UplinkSampler(
      topo.hosts.map((h) => ({ label: `host ${h.label}`, ns: h.ns, dev: h.trafficDev })),
      UPLINK_SAMPLE_MS,
    );
    await sampler.start();
    const startedAt = now();
    const flow = new FlowMonitor();
    traffic = new Traffic({
      guest: {
        ns: guest.ns,
        address: guest.address,
        ...(guest.ipv4 ? { address4: guest.ipv4.address } : {}),
        vm: options.guest !== 'netns',
      },
      cn: topo.cn,
      // raw send and arrival times of every probe, kept beside the report for analysis
      dir: logDir,
      onProgress: (p) => flow.add(p),
    });
    options.print(
      `lab: traffic: UDP stream 520 kbit/s guest → correspondent (IPv6), probes 1 kHz both ways${guest.ipv4 ? ' over IPv6 and over IPv4' : ''} ...`,
    );
    await traffic.start();
    await waitFor(
      async () => flow.flowing(TRAFFIC_DEFAULTS.probeRate, guest.ipv4 !== undefined),
      60_000,
      `probes do not flow both ways after 60 s (${flow.describe()}); see ${logDir}`,
      options.signal,
    );
    options.print(
      `lab: traffic flows (${flow.describe()}); migrating ${options.migrations}× every ${options.intervalS} s`,
    );

    const from = now();
    const windows: MigrationWindow[] = [];
    const migrations: RunData['migrations'] = [];
    let at = 0;
    // --fail-ha: after the middle migration, halfway to the next; the later ones wait for the restart
    const failAfter = options.failHa ? Math.max(1, Math.floor(options.migrations / 2)) : 0;
    const intervalMs = options.intervalS * 1000;
    let shift = 0;
    let failover: HaFailoverTimes | undefined;
    for (let i = 1; i <= options.migrations; i++) {
      await sleepUntil(from + shift + i * intervalMs, options.signal);
      const src = topo.hosts[at]!;
      const dst = topo.hosts[1 - at]!;
      const start = now();
      const { window, ...m } = await migrateOnce(options, topo, runner, configs, vms, src.name, dst.name);
      const end = now();
      const [mStart, mEnd] = window ?? [start, end];
      windows.push({ index: i, start: mStart, end: mEnd });
      migrations.push({
        index: i,
        from: src.name,
        to: dst.name,
        startedAt: mStart,
        endedAt: mEnd,
        commandMs: end - start,
        ...m,
      });
      if (m.ok) at = 1 - at;
      options.print(
        `  #${i} ${src.label} → ${dst.label}  ${m.ok ? 'ok' : `FAILED: ${m.error}`}  hypervisor ${fmt(m.hypervisorMs)}  handover ${fmt(m.handoverMs)}  (command ${(end - start).toFixed(0)} ms; ${flow.describe()})`,
      );
      if (i === failAfter && cluster && has && configs) {
        await sleepUntil(Math.max(from + shift + (i + 0.5) * intervalMs, now() + 500), options.signal);
        const carrier = await cluster.carrier();
        options.print(
          `lab: --fail-ha: kill -9 of ${carrier?.name ?? '?'} (${topo.inet.ns} routes the network to it)`,
        );
        failover = await cluster.failover(has, {
          runner,
          configs,
          logDir,
          detached: false,
          ...(options.signal ? { signal: options.signal } : {}),
          active: topo.hosts[at]!,
          lifetimeSeconds: AGENT_LIFETIME_S,
          holdMs: 1000,
          settleMs: 1000,
        });
        options.print(
          `lab: ${topo.inet.ns} routed to ${failover.survivor} ${(failover.reroutedAt - failover.killedAt).toFixed(0)} ms after the kill; ${failover.killed} restarted and announcing again after ${((failover.restartedAt - failover.killedAt) / 1000).toFixed(1)} s (${flow.describe()})`,
        );
        const next = from + shift + (i + 1) * intervalMs;
        const want = failover.windowEnd + intervalMs / 2;
        if (want > next) shift += want - next;
      }
    }
    await sleepUntil(now() + options.intervalS * 1000, options.signal);
    const to = now();
    const result = await traffic.stop();
    traffic = undefined;
    const uplinks = sampler.stop();
    sampler = undefined;
    const measurement = measure(
      result.directions,
      windows,
      { from, to },
      failover ? [failover.killedAt] : [],
    );
    const haFailover = failover ? failoverReport(failover, result.directions, { from, to }) : undefined;
    const report = buildReport({
      procedure: options.procedure,
      topology: options.topology,
      guest: options.guest,
      family,
      ...(familyNote ? { familyNote } : {}),
      dataplane: {
        backend: backend ?? null,
        requested: options.topology === 'off-link' ? (options.dataplane ?? 'auto') : null,
      },
      parameters: {
        migrations: options.migrations,
        intervalS: options.intervalS,
        probeRate: result.probeRate,
        streamKbps: result.stream.kbps,
        streamPayload: result.stream.payload,
        uplinkSampleMs: UPLINK_SAMPLE_MS,
        ...(cluster ? { homeAgents: 2 } : {}),
        ...(options.failHa ? { failHa: true } : {}),
        ...(options.guest !== 'netns' && options.topology === 'off-link'
          ? { overlap: options.overlap ?? true }
          : {}),
      },
      startedAt,
      endedAt: to,
      migrations,
      measurement,
      stream: result.stream,
      uplinks,
      hosts: topo.hosts.map((h) => ({ name: h.name, label: h.label, careOf: topo.careOf[h.name] })),
      receiverDrops: Object.fromEntries(result.directions.map((d) => [d.name, d.rcvbufErrors])),
      ...(haFailover ? { haFailover } : {}),
    });
    const files = writeReport(out, report);
    if (options.json) writeFileSync(options.json, `${JSON.stringify(report, null, 2)}\n`);
    options.print(formatSummary(report));
    options.print(
      `report: ${files.html}\n        ${files.json}${options.json ? `\n        ${resolve(options.json)}` : ''}`,
    );
    return report;
  } finally {
    traffic?.kill();
    sampler?.stop();
    options.print('lab: tearing down ...');
    await vms?.close();
    if (libvirt) {
      copyLibvirtLogs(libvirt, logDir);
      await libvirt.close();
    }
    await labDown(runner, options.stateDir, { killOwner: false });
  }
}

/** report.json's `haFailover`: the probes around the kill, and the BUs the window held. */
function failoverReport(
  f: HaFailoverTimes,
  directions: Parameters<typeof measureSpan>[0],
  w: { from: number; to: number },
): HaFailover {
  const span = measureSpan(directions, f.killedAt, f.windowEnd, w);
  return {
    gapMs: span.gapMs,
    lost: span.lost,
    reRegistrations: f.busSent === null ? null : Math.max(0, f.busSent - f.refreshesDue),
    killed: f.killed,
    survivor: f.survivor,
    killedAt: f.killedAt,
    rerouteMs: round(f.reroutedAt - f.killedAt),
    restartMs: round(f.restartedAt - f.killedAt),
    windowMs: round(f.windowEnd - f.killedAt),
    sent: span.sent,
    gapFrom: span.gapFrom,
    gapTo: span.gapTo,
    byFamily: span.byFamily,
    directions: span.directions,
    busSent: f.busSent,
    refreshesDue: f.refreshesDue,
    busAnswered: f.busAnswered,
    routedToAfter: f.rerouteBack,
  };
}

/** Each host's libvirt logs (libvirtd.log, the domain's QEMU log and console) into the report's logs/. */
function copyLibvirtLogs(libvirt: LabLibvirt, logDir: string): void {
  for (const host of libvirt.hosts.hosts.keys()) {
    const from = join(libvirt.hosts.dir, host, 'log');
    if (existsSync(from)) cpSync(from, join(logDir, `libvirt-${host}`), { recursive: true });
  }
}

const fmt = (v: number | null) => (v === null ? '-' : `${v.toFixed(1)} ms`);

interface MigrationOutcome {
  ok: boolean;
  error?: string;
  hypervisorMs: number | null;
  handoverMs: number | null;
  phases?: Record<string, number>;
  /** Start and end of the migration as the agent timed it (wall-clock ms). */
  window?: [number, number];
}

async function migrateOnce(
  options: LabRunOptions,
  topo: Topology,
  runner: CommandRunner,
  configs: LabConfigs | undefined,
  vms: OnLinkGuests | undefined,
  from: 'host-a' | 'host-b',
  to: 'host-a' | 'host-b',
): Promise<MigrationOutcome> {
  const src = topo.hosts.find((h) => h.name === from)!;
  const dst = topo.hosts.find((h) => h.name === to)!;
  if (vms) {
    // The on-link baseline with a VM: QEMU's (or libvirt's) live migration and nothing else.
    try {
      const r = await vms.migrate(from, to, options.signal);
      return { ok: true, hypervisorMs: round(r.hypervisorMs), handoverMs: null, phases: roundAll(r.phases) };
    } catch (err) {
      return { ok: false, error: (err as Error).message, hypervisorMs: null, handoverMs: null };
    }
  }
  if (!configs) {
    // The on-link baseline: the same hypervisor step as the netns driver, and nothing else (no NEMO).
    try {
      let ms = 0;
      for (const g of topo.guests) ms += await moveGuest(g, src.ns, dst.ns, runner);
      return { ok: true, hypervisorMs: round(ms), handoverMs: null };
    } catch (err) {
      return { ok: false, error: (err as Error).message, hypervisorMs: null, handoverMs: null };
    }
  }
  const r = await runMigrate(src, topo.guests[0]!.network, to, options.procedure, configs);
  const t = r.record?.timings ?? {};
  const handover =
    t.notificationMs === undefined ? null : round(t.notificationMs + (t.deregistrationMs ?? 0));
  const phases = Object.fromEntries(Object.entries(t).filter(([, v]) => typeof v === 'number')) as Record<
    string,
    number
  >;
  const started = r.record ? Date.parse(r.record.startedAt) : Number.NaN;
  return {
    ok: r.ok,
    ...(r.error ? { error: r.error } : {}),
    ...(Number.isFinite(started) && t.totalMs !== undefined
      ? { window: [started, started + t.totalMs] }
      : {}),
    hypervisorMs: t.hypervisorMs ?? null,
    handoverMs: handover,
    phases,
  };
}

const round = (v: number) => Math.round(v * 10) / 10;
const roundAll = (values: Record<string, number>) =>
  Object.fromEntries(Object.entries(values).map(([k, v]) => [k, round(v)]));

/** Follows the endpoints' once-a-second progress: are probes arriving both ways, at what rate? */
class FlowMonitor {
  private readonly last = new Map<
    string,
    { t: number; received: number; received4: number; rate: number; rate4: number }
  >();

  add(p: TrafficProgress): void {
    const prev = this.last.get(p.role);
    const { t, probesReceived: received, probesReceived4: received4 = 0 } = p.progress;
    const per = (n: number, before: number | undefined) =>
      prev && before !== undefined ? ((n - before) * 1000) / (t - prev.t) : 0;
    this.last.set(p.role, {
      t,
      received,
      received4,
      rate: per(received, prev?.received),
      rate4: per(received4, prev?.received4),
    });
  }

  /** Probes arrive at both ends at 80 % of their rate or more (over IPv4 too when `ipv4`). */
  flowing(probeRate: number, ipv4: boolean): boolean {
    return ['guest', 'cn'].every((role) => {
      const r = this.last.get(role);
      return !!r && r.rate > probeRate * 0.8 && (!ipv4 || r.rate4 > probeRate * 0.8);
    });
  }

  describe(): string {
    const r = (role: string) => {
      const x = this.last.get(role);
      return `${Math.round(x?.rate ?? 0)}${x?.received4 ? ` + ${Math.round(x.rate4)} IPv4` : ''}`;
    };
    return `probes/s received: correspondent ${r('cn')}, guest ${r('guest')}`;
  }
}
