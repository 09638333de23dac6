// The lab's results: DIR/report.json with exactly docs/architecture.md's keys (plus parameters, per-direction
// numbers, uplink series and machine info), and DIR/index.html, a self-contained page with the Fig. 6
// chart (report-html.ts).
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, hostname, type as osType, version as osVersion, release, totalmem } from 'node:os';
import { join } from 'node:path';
import type { Procedure } from '../migration/messages.ts';
import type { AddressFamily, FamilySummary, Measurement, Percentiles } from './measure.ts';
import { renderHtml } from './report-html.ts';
import type { UplinkSeries } from './uplink.ts';

export type { Procedure };
export type TopologyKind = 'off-link' | 'on-link';
export type GuestKind = 'netns' | 'qemu' | 'libvirt';
export const GUEST_KINDS: readonly GuestKind[] = ['netns', 'qemu', 'libvirt'];
/** The address families the lab's guests use: IPv6 alone, or IPv6 and IPv4 (dual-stack). */
export type LabFamily = 'ipv6' | 'dual';
export const LAB_FAMILIES: readonly LabFamily[] = ['ipv6', 'dual'];

export interface ReportMigration {
  index: number;
  from: string;
  to: string;
  /** Phase timings as the agent reported them (null where the procedure has no such phase). */
  hypervisorMs: number | null;
  handoverMs: number | null;
  gapMs: number;
  lost: number;
  // ---- beyond docs/architecture.md
  /**
   * The hypervisor's own downtime figure as the agent reported it (QEMU: query-migrate's `downtime`;
   * libvirt: its job-completed `downtime`), beside the measured gap; null where there was none.
   */
  downtimeMs?: number | null;
  ok: boolean;
  error?: string;
  /** Wall-clock ms when the migration started and ended (as the agent timed it). */
  startedAt: number;
  endedAt: number;
  /** What `offlink migrate` itself took, as seen by the lab. */
  commandMs: number;
  sent: number;
  directions: {
    name: string;
    family: AddressFamily;
    gapMs: number;
    gapFrom: number;
    gapTo: number;
    lost: number;
    sent: number;
  }[];
  /** Gap, lost and sent over each probed family's directions alone. */
  byFamily: Partial<Record<AddressFamily, { gapMs: number; lost: number; sent: number }>>;
  phases?: Record<string, number>;
}

export interface ReportParameters {
  migrations: number;
  intervalS: number;
  probeRate: number;
  streamKbps: number;
  streamPayload: number;
  uplinkSampleMs: number;
  /**
   * VM guests off-link: whether the handover overlapped the hypervisor's switchover (QEMU: inside its
   * pause-before-switchover; libvirt: from its "Suspended Migrated" event).
   */
  overlap?: boolean;
  /** Home agents (`--home-agents 2`: two, their bindings in etcd, the HA address by BGP anycast); absent: one. */
  homeAgents?: number;
  /** `--fail-ha`: one home agent was killed (-9) in the middle of the run (`haFailover`). */
  failHa?: boolean;
}

/**
 * `--fail-ha` (issue 16): kill -9 of the home agent ofl-inet routed the network to, between two migrations,
 * while probes flow; the killed HA is restarted afterwards. The window runs from the kill until the killed
 * HA serves again and ofl-inet's BGP has both routes, plus a settling second; no migration runs in it.
 */
export interface HaFailover {
  /** Longest probe silence overlapping the window, over every direction (both families), ms. */
  gapMs: number;
  /** Probes sent in the window and never received (every direction). */
  lost: number;
  /**
   * BUs the mobile router had to send because of the kill: those it sent in the window (its BU sequence
   * number's advance, which counts every BU, retransmissions too) minus a refresh its schedule had due
   * in the window. null: the agent's status did not say.
   */
  reRegistrations: number | null;
  // ---- beyond the three
  /** The HA killed (ha1, ha2), and the one that carried on. */
  killed: string;
  survivor: string;
  /** Wall-clock ms of the kill. */
  killedAt: number;
  /** From the kill until ofl-inet routed the network to the survivor (BGP withdrawal), ms. */
  rerouteMs: number;
  /** From the kill until the restarted HA served and ofl-inet's BIRD had both routes again, ms. */
  restartMs: number;
  /** The window's length, ms. */
  windowMs: number;
  sent: number;
  /** When the longest silence began and ended (wall-clock ms). */
  gapFrom: number;
  gapTo: number;
  byFamily: Partial<Record<AddressFamily, { gapMs: number; lost: number; sent: number }>>;
  directions: { name: string; family: AddressFamily; gapMs: number; lost: number; sent: number }[];
  /** BUs the mobile router sent in the window, and a refresh its schedule had due there (0 or 1). */
  busSent: number | null;
  refreshesDue: number;
  /** BUs the two HAs answered in the window (their offlink_ha_binding_updates_total). */
  busAnswered: number;
  /** The HA ofl-inet routes to after the restart. */
  routedToAfter: string | null;
}

export interface MachineInfo {
  hostname: string;
  uname: string;
  cpus: number;
  cpuModel: string;
  memoryMiB: number;
  node: string;
  date: string;
}

/** The tunnel's data plane: the backend the home agent ran (null on-link: no tunnel), and what was asked. */
export interface ReportDataplane {
  backend: string | null;
  requested: string | null;
}

export interface LabReport {
  procedure: Procedure;
  topology: TopologyKind;
  guest: GuestKind;
  /** The guests' address families; dual: probes over IPv6 and IPv4 (the stream is IPv6). */
  family: LabFamily;
  /** Why the run's family is not the one asked for (the seg6 data plane carries IPv6 only). */
  familyNote?: string;
  dataplane: ReportDataplane;
  migrations: ReportMigration[];
  summary: {
    /** Over every probe direction, both families in a dual-stack run. */
    gapMs: Percentiles;
    lost: number;
    sent: number;
    // ---- beyond docs/architecture.md
    /** The same figures per address family (the families that were probed). */
    byFamily: Partial<Record<AddressFamily, FamilySummary>>;
    directions: { name: string; family: AddressFamily; sent: number; lost: number }[];
    stream: { sent: number; received: number; receivedKbps: number };
    failed: number;
    /** Probes dropped by the receiver's own kernel at a full socket buffer (overload, not network). */
    receiverDrops: Record<string, number>;
  };
  parameters: ReportParameters;
  machine: MachineInfo;
  /** Wall-clock ms of the start of measurement; chart times are relative to it. */
  startedAt: number;
  endedAt: number;
  uplinks: UplinkSeries[];
  hosts: { name: string; label: string; careOf: string }[];
  /** `--fail-ha`: what killing a home agent cost. */
  haFailover?: HaFailover;
}

/** What the run hands over for the report. */
export interface RunData {
  procedure: Procedure;
  topology: TopologyKind;
  guest: GuestKind;
  /** Default ipv6. */
  family?: LabFamily;
  familyNote?: string;
  dataplane?: ReportDataplane;
  parameters: ReportParameters;
  startedAt: number;
  endedAt: number;
  migrations: {
    index: number;
    from: string;
    to: string;
    ok: boolean;
    error?: string;
    /** The migration as the agent timed it (the command's own window where the agent gave none). */
    startedAt: number;
    endedAt: number;
    /** What `offlink migrate` took as the lab saw it, process start-up included. */
    commandMs?: number;
    hypervisorMs: number | null;
    handoverMs: number | null;
    phases?: Record<string, number>;
  }[];
  measurement: Measurement;
  stream: { sent: number; received: number; receivedBytes: number };
  uplinks: UplinkSeries[];
  hosts: { name: string; label: string; careOf: string }[];
  machine?: MachineInfo;
  receiverDrops?: Record<string, number>;
  haFailover?: HaFailover;
}

export function machineInfo(date = new Date()): MachineInfo {
  const cpu = cpus();
  return {
    hostname: hostname(),
    uname: `${osType()} ${release()} ${osVersion()}`,
    cpus: cpu.length,
    cpuModel: cpu[0]?.model.trim() ?? 'unknown',
    memoryMiB: Math.round(totalmem() / 2 ** 20),
    node: process.version,
    date: date.toISOString(),
  };
}

export function buildReport(run: RunData): LabReport {
  const byIndex = new Map(run.measurement.migrations.map((m) => [m.index, m]));
  const durationS = Math.max(0.001, (run.endedAt - run.startedAt) / 1000);
  return {
    procedure: run.procedure,
    topology: run.topology,
    guest: run.guest,
    family: run.family ?? 'ipv6',
    ...(run.familyNote === undefined ? {} : { familyNote: run.familyNote }),
    dataplane: run.dataplane ?? { backend: null, requested: null },
    migrations: run.migrations.map((m) => {
      const meas = byIndex.get(m.index);
      return {
        index: m.index,
        from: m.from,
        to: m.to,
        hypervisorMs: m.hypervisorMs,
        handoverMs: m.handoverMs,
        gapMs: meas?.gapMs ?? 0,
        lost: meas?.lost ?? 0,
        downtimeMs: m.phases?.['downtimeMs'] ?? null,
        ok: m.ok,
        ...(m.error === undefined ? {} : { error: m.error }),
        startedAt: m.startedAt,
        endedAt: m.endedAt,
        commandMs: Math.round((m.commandMs ?? m.endedAt - m.startedAt) * 10) / 10,
        sent: meas?.sent ?? 0,
        directions: meas?.directions ?? [],
        byFamily: meas?.byFamily ?? {},
        ...(m.phases === undefined ? {} : { phases: m.phases }),
      };
    }),
    summary: {
      gapMs: run.measurement.summary.gapMs,
      lost: run.measurement.summary.lost,
      sent: run.measurement.summary.sent,
      byFamily: run.measurement.summary.byFamily,
      directions: run.measurement.directions,
      stream: {
        sent: run.stream.sent,
        received: run.stream.received,
        receivedKbps: Math.round(((run.stream.receivedBytes * 8) / durationS / 1000) * 10) / 10,
      },
      failed: run.migrations.filter((m) => !m.ok).length,
      receiverDrops: run.receiverDrops ?? {},
    },
    parameters: run.parameters,
    machine: run.machine ?? machineInfo(),
    startedAt: run.startedAt,
    endedAt: run.endedAt,
    uplinks: run.uplinks,
    hosts: run.hosts,
    ...(run.haFailover ? { haFailover: run.haFailover } : {}),
  };
}

/** Write DIR/report.json and DIR/index.html; returns their paths. */
export function writeReport(dir: string, report: LabReport): { json: string; html: string } {
  mkdirSync(dir, { recursive: true });
  const json = join(dir, 'report.json');
  const html = join(dir, 'index.html');
  writeFileSync(json, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(html, renderHtml(report));
  return { json, html };
}
