// Handover outage benchmark (issue 9): `offlink lab run` with a streaming guest, in one run, for
// off-link make-before-break, off-link break-before-make and the on-link baseline (ordinary same-subnet migration,
// no NEMO), interleaved in rounds so all three see the same machine load. Reports gap p50/p95/max,
// probes lost per migration and per-phase timings; headline ratios off-link ÷ on-link and
// break-before-make ÷ make-before-break. ("paper" is break-before-make's former name; --configs still takes
// it for bbm.) With --guest libvirt (issue 15): a libvirt domain off-link (the agents migrate it through
// libvirt) and on-link (plain `virsh migrate --live`), the headline off-link ÷ on-link beside libvirt's
// own reported downtime.
//
//   node --import tsx bench/outage/run.ts [--migrations 20] [--rounds 2] [--interval 2] [--guest netns|qemu|libvirt]
//                                         [--configs mbb,bbm,onlink | overlap,no-overlap,onlink | offlink,no-overlap,onlink]
//                                         [--json FILE] [--qemu-priority N]
//
// --qemu-priority N (a diagnosis, not the headline): every QEMU thread on the machine runs at nice N
// (e.g. -10) while the benchmark runs, so the guests' vCPUs win the 2 CPUs from the handover's own
// processes (HA, agents, ip, nft), as they would on separate machines (bench/profiles/outage-qemu.md).
//
// The lab's namespaces have fixed names (ofl-*), and other people's test runs build and tear down the
// same lab: so this benchmark runs inside a private mount namespace with its own /run, where /run/netns
// and the lab's state directory are its own, and nobody else's `offlink lab down` can reach its lab.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { setPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_STATE_DIR } from '../../src/lab/netns.ts';
import type { GuestKind, LabReport, Procedure, TopologyKind } from '../../src/lab/report.ts';
import { labRun } from '../../src/lab/run.ts';
import { describeMachine, finishMachineInfo, machineInfo } from '../lib/machine.ts';
import { numArg, parseArgs, printTargets, type Target, writeResult } from '../lib/results.ts';
import { type Summary, summarize } from '../lib/stats.ts';

const args = parseArgs(process.argv.slice(2));
const MIGRATIONS = numArg(args, 'migrations', 20);
const ROUNDS = numArg(args, 'rounds', 2);
const INTERVAL = numArg(args, 'interval', 2);
const GUEST = (args.get('guest') ?? 'netns') as GuestKind;
const QEMU_PRIORITY = args.has('qemu-priority') ? numArg(args, 'qemu-priority', 0) : undefined;
if (
  QEMU_PRIORITY !== undefined &&
  (!Number.isInteger(QEMU_PRIORITY) || QEMU_PRIORITY < -20 || QEMU_PRIORITY > 19)
) {
  console.error('--qemu-priority: a nice value, an integer from -20 to 19');
  process.exit(2);
}

if (process.env['OFFLINK_BENCH_PRIVATE_RUN'] !== '1') {
  const me = fileURLToPath(import.meta.url);
  const r = spawnSync(
    'unshare',
    [
      '--mount',
      '--propagation',
      'private',
      '--',
      'sh',
      '-c',
      'mount -t tmpfs -o size=512m,mode=755 offlink-bench-run /run && mkdir -p /run/netns && exec "$0" "$@"',
      process.execPath,
      '--import',
      'tsx',
      me,
      ...process.argv.slice(2),
    ],
    { stdio: 'inherit', env: { ...process.env, OFFLINK_BENCH_PRIVATE_RUN: '1' } },
  );
  process.exit(r.status ?? 1);
}

interface Config {
  /** For --configs. */
  key: string;
  name: string;
  topology: TopologyKind;
  procedure: Procedure;
  overlap?: boolean;
}

const LIBVIRT_CONFIGS: Config[] = [
  // the agents migrate the domain through libvirt and hand net1 over at libvirt's switchover
  { key: 'offlink', name: 'off-link', topology: 'off-link', procedure: 'make-before-break' },
  // the same, the handover only after `virsh migrate` returned (migration.overlap: false): what the
  // overlap with libvirt's switchover is measured against
  {
    key: 'no-overlap',
    name: 'off-link no overlap',
    topology: 'off-link',
    procedure: 'make-before-break',
    overlap: false,
  },
  // plain `virsh migrate --live` between the two libvirtds on one segment (src/lab/libvirt-guest.ts)
  { key: 'onlink', name: 'on-link baseline', topology: 'on-link', procedure: 'make-before-break' },
];

if (!['netns', 'qemu', 'libvirt'].includes(GUEST)) {
  console.error(`--guest: netns, qemu or libvirt, not ${GUEST}`);
  process.exit(2);
}

const ALL_CONFIGS: Config[] =
  GUEST === 'libvirt'
    ? LIBVIRT_CONFIGS
    : GUEST === 'qemu'
      ? [
          {
            key: 'overlap',
            name: 'off-link overlap',
            topology: 'off-link',
            procedure: 'make-before-break',
            overlap: true,
          },
          {
            key: 'no-overlap',
            name: 'off-link no overlap',
            topology: 'off-link',
            procedure: 'make-before-break',
            overlap: false,
          },
          // Plain QEMU live migration on one segment (src/lab/onlink-vms.ts): what crossing a subnet is
          // compared with.
          { key: 'onlink', name: 'on-link baseline', topology: 'on-link', procedure: 'make-before-break' },
        ]
      : [
          {
            key: 'mbb',
            name: 'off-link make-before-break',
            topology: 'off-link',
            procedure: 'make-before-break',
          },
          {
            key: 'bbm',
            name: 'off-link break-before-make',
            topology: 'off-link',
            procedure: 'break-before-make',
          },
          { key: 'onlink', name: 'on-link baseline', topology: 'on-link', procedure: 'make-before-break' },
        ];

/** Former --configs keys, still accepted. */
const CONFIG_ALIASES: ReadonlyMap<string, string> = new Map([['paper', 'bbm']]);
const only = args
  .get('configs')
  ?.split(',')
  .map((key) => CONFIG_ALIASES.get(key) ?? key);
const unknownConfigs = only?.filter((key) => !ALL_CONFIGS.some((config) => config.key === key)) ?? [];
if (unknownConfigs.length > 0) {
  console.error(
    `--configs: unknown ${unknownConfigs.join(', ')}; expected some of ${ALL_CONFIGS.map((config) => config.key).join(', ')}`,
  );
  process.exit(2);
}
const CONFIGS = only ? ALL_CONFIGS.filter((c) => only.includes(c.key)) : ALL_CONFIGS;

/** One migration as measured by the lab, plus what the daemons' logs say about it. */
interface Row {
  config: string;
  round: number;
  index: number;
  ok: boolean;
  gapMs: number;
  lost: number;
  lostGuestToCn: number;
  lostCnToGuest: number;
  /** VM guests: whether the lab's one TCP connection to the guest lasted through the lab run. */
  tcpHeld?: boolean;
  phases: Record<string, number>;
}

const log = (msg: string) => console.error(`[bench/outage] ${msg}`);

interface LogLine {
  time: string;
  msg: string;
  [k: string]: unknown;
}

function readLog(path: string): LogLine[] {
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  const out: LogLine[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as LogLine);
    } catch {}
  }
  return out;
}

/** The home agent's and the destination's own figures for a migration, from the logs, by time window. */
function logPhases(logDir: string, from: number, to: number): Record<string, number> {
  const within = (l: LogLine) => {
    const t = Date.parse(l.time);
    return t >= from && t <= to;
  };
  const out: Record<string, number> = {};
  const ha = readLog(join(logDir, 'ha.log')).filter(
    (l) => within(l) && /^binding (move|register|deregister)$/.test(l.msg),
  );
  // make-before-break: one `move`; break-before-make: `deregister` at the source, then `register` from the destination
  for (const l of ha) {
    const event = l.msg.slice('binding '.length);
    out[`ha.${event}.dataplaneMs`] = l['dataplaneMs'] as number;
    out[`ha.${event}.storeMs`] = l['storeMs'] as number;
  }
  // libvirt's own figures, as the driver logged them (off-link the source agent, on-link the lab's libvirt.log)
  for (const file of ['agent-host-a.log', 'agent-host-b.log', 'libvirt.log']) {
    for (const l of readLog(join(logDir, file))) {
      if (!within(l) || l.msg !== 'libvirt migration completed') continue;
      for (const k of ['pausedMs', 'totalTimeMs', 'setupTimeMs', 'transferredBytes'])
        if (typeof l[k] === 'number') out[`libvirt.${k}`] = l[k];
    }
  }
  for (const host of ['host-a', 'host-b']) {
    for (const l of readLog(join(logDir, `agent-${host}.log`))) {
      if (!within(l)) continue;
      if (l.msg.startsWith('took over the network') && typeof l['takeoverMs'] === 'number')
        out['dst.takeoverMs'] = l['takeoverMs'];
      if (l.msg.startsWith('took over the network') && typeof l['buToBaMs'] === 'number')
        out['dst.buToBaMs'] = l['buToBaMs'];
    }
  }
  return out;
}

/** The VM guest endpoint's verdict (src/lab/vm-endpoint.ts): did its TCP connection to the guest last? */
function guestConnectionHeld(logDir: string): boolean {
  try {
    return (
      (JSON.parse(readFileSync(join(logDir, 'traffic-guest.json'), 'utf8')) as { tcpBroken?: boolean })
        .tcpBroken === false
    );
  } catch {
    return false;
  }
}

async function runConfig(
  c: Config,
  round: number,
  migrations: number,
  dir: string,
): Promise<{ rows: Row[]; report: LabReport }> {
  const out = join(dir, `${c.name.replaceAll(' ', '-')}-${round}`);
  const report = await labRun({
    topology: c.topology,
    guest: GUEST,
    // IPv6 probes alone, so the figures stay comparable with bench/RESULTS.md's (the lab's default is dual)
    family: 'ipv6',
    procedure: c.procedure,
    ...(c.overlap !== undefined ? { overlap: c.overlap } : {}),
    migrations,
    intervalS: INTERVAL,
    stateDir: DEFAULT_STATE_DIR,
    out,
    print: (line) => {
      if (/^\s+#\d+ /.test(line) || line.startsWith('lab: traffic flows'))
        console.error(`  ${c.name}: ${line.trim()}`);
    },
  });
  const tcpHeld = GUEST === 'netns' ? undefined : guestConnectionHeld(join(out, 'logs'));
  const rows = report.migrations.map((m): Row => {
    const dir = (name: string) => m.directions.find((d) => d.name.startsWith(name))?.lost ?? 0;
    return {
      config: c.name,
      round,
      index: m.index,
      ok: m.ok,
      gapMs: m.gapMs,
      lost: m.lost,
      lostGuestToCn: dir('guest'),
      lostCnToGuest: dir('cn'),
      ...(tcpHeld === undefined ? {} : { tcpHeld }),
      phases: {
        ...(m.phases ?? {}),
        ...(m.hypervisorMs !== null && m.phases?.['hypervisorMs'] === undefined
          ? { hypervisorMs: m.hypervisorMs }
          : {}),
        ...(m.downtimeMs != null ? { downtimeMs: m.downtimeMs } : {}),
        commandMs: m.commandMs,
        ...logPhases(join(out, 'logs'), m.startedAt - 50, m.endedAt + 1000),
      },
    };
  });
  return { rows, report };
}

interface ConfigSummary {
  name: string;
  migrations: number;
  failed: number;
  gapMs: Summary;
  lostPerMigration: Summary;
  lostGuestToCn: number;
  lostCnToGuest: number;
  phases: Record<string, Summary>;
  receiverDrops: Record<string, number>;
  /** VM guests: migrations whose lab run's TCP connection to the guest broke. */
  tcpBroken?: number;
}

function summarizeConfig(name: string, rows: Row[], reports: LabReport[]): ConfigSummary {
  const ok = rows.filter((r) => r.ok);
  const phaseNames = [...new Set(ok.flatMap((r) => Object.keys(r.phases)))].sort();
  const drops: Record<string, number> = {};
  for (const rep of reports)
    for (const [k, v] of Object.entries(rep.summary.receiverDrops ?? {})) drops[k] = (drops[k] ?? 0) + v;
  return {
    name,
    migrations: rows.length,
    failed: rows.length - ok.length,
    gapMs: summarize(ok.map((r) => r.gapMs)),
    lostPerMigration: summarize(ok.map((r) => r.lost)),
    lostGuestToCn: ok.reduce((s, r) => s + r.lostGuestToCn, 0),
    lostCnToGuest: ok.reduce((s, r) => s + r.lostCnToGuest, 0),
    phases: Object.fromEntries(
      phaseNames.map((p) => [
        p,
        summarize(ok.map((r) => r.phases[p]).filter((v): v is number => typeof v === 'number')),
      ]),
    ),
    receiverDrops: drops,
    ...(GUEST === 'netns' ? {} : { tcpBroken: rows.filter((r) => r.tcpHeld === false).length }),
  };
}

/**
 * --qemu-priority: give every thread of every QEMU process nice `priority`, now and every 100 ms (QEMU
 * starts threads as it runs; guests are started and migrated during the run). Returns the stopper.
 */
function prioritizeQemu(priority: number): () => void {
  const done = new Set<number>();
  const pass = () => {
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      try {
        if (!readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('qemu-system')) continue;
        for (const tid of readdirSync(`/proc/${pid}/task`).map(Number)) {
          if (done.has(tid)) continue;
          setPriority(tid, priority); // per thread on Linux
          done.add(tid);
        }
      } catch {
        // gone meanwhile
      }
    }
  };
  pass();
  const timer = setInterval(pass, 100);
  return () => clearInterval(timer);
}

async function main(): Promise<void> {
  const machine = machineInfo();
  const dir = mkdtempSync(join(tmpdir(), 'offlink-bench-outage-'));
  const rows: Row[] = [];
  const reports = new Map<string, LabReport[]>();
  const unprioritize = QEMU_PRIORITY !== undefined ? prioritizeQemu(QEMU_PRIORITY) : undefined;
  try {
    const perRound = Math.ceil(MIGRATIONS / ROUNDS);
    for (let round = 0; round < ROUNDS; round++) {
      for (const c of round % 2 === 0 ? CONFIGS : [...CONFIGS].reverse()) {
        const n = Math.min(perRound, MIGRATIONS - round * perRound);
        if (n <= 0) continue;
        log(`round ${round + 1}/${ROUNDS}: ${c.name}, ${n} migrations every ${INTERVAL} s`);
        const r = await runConfig(c, round, n, dir);
        rows.push(...r.rows);
        reports.set(c.name, [...(reports.get(c.name) ?? []), r.report]);
      }
    }
  } finally {
    unprioritize?.();
    if (!args.has('keep')) rmSync(dir, { recursive: true, force: true });
    else log(`kept ${dir}`);
  }
  const summaries = CONFIGS.map((c) =>
    summarizeConfig(
      c.name,
      rows.filter((r) => r.config === c.name),
      reports.get(c.name) ?? [],
    ),
  );
  const by = (name: string) => summaries.find((s) => s.name === name)!;
  const m = finishMachineInfo(machine);
  console.log(
    `\nHandover outage (${GUEST} guest${QEMU_PRIORITY !== undefined ? `, QEMU threads at nice ${QEMU_PRIORITY}` : ''}) — ${describeMachine(m)}`,
  );
  const fmt = (s: Summary) => `${s.p50.toFixed(1)} / ${s.p95.toFixed(1)} / ${s.max.toFixed(1)}`;
  for (const s of summaries) {
    console.log(
      `${s.name.padEnd(28)} gap p50/p95/max ${fmt(s.gapMs)} ms; lost/migration mean ${s.lostPerMigration.mean.toFixed(1)} (p50 ${s.lostPerMigration.p50}, max ${s.lostPerMigration.max}); ${s.failed} failed of ${s.migrations}${s.tcpBroken === undefined ? '' : `; TCP to the guest ${s.tcpBroken === 0 ? 'held' : `broke in the runs of ${s.tcpBroken} migrations`}`}`,
    );
    const ph = Object.entries(s.phases)
      .map(([k, v]) => `${k} ${v.p50.toFixed(1)}`)
      .join(', ');
    console.log(`${''.padEnd(28)} phases p50 (ms): ${ph}`);
  }
  const targets: Target[] = [];
  const ratios: Record<string, number> = {};
  if (GUEST === 'netns' && CONFIGS.length === 3) {
    const mbb = by('off-link make-before-break');
    const bbm = by('off-link break-before-make');
    const onLink = by('on-link baseline');
    ratios['offLinkOverOnLinkGapP50'] = mbb.gapMs.p50 / onLink.gapMs.p50;
    ratios['offLinkOverOnLinkLost'] = mbb.lostPerMigration.mean / onLink.lostPerMigration.mean;
    ratios['bbmOverMbbGapP50'] = bbm.gapMs.p50 / mbb.gapMs.p50;
    targets.push(
      {
        what: 'off-link ÷ on-link, p50 gap',
        target: '≤ 1.2',
        measured: `${ratios['offLinkOverOnLinkGapP50'].toFixed(2)} (${mbb.gapMs.p50.toFixed(1)} / ${onLink.gapMs.p50.toFixed(1)} ms)`,
        met: ratios['offLinkOverOnLinkGapP50'] <= 1.2,
      },
      {
        what: 'off-link ÷ on-link, probes lost',
        target: '≤ 1.2',
        measured: `${ratios['offLinkOverOnLinkLost'].toFixed(2)} (${mbb.lostPerMigration.mean.toFixed(1)} / ${onLink.lostPerMigration.mean.toFixed(1)} per migration)`,
        met: ratios['offLinkOverOnLinkLost'] <= 1.2,
      },
      {
        what: 'break-before-make ÷ make-before-break, p50 gap',
        target: '(report)',
        measured: `${ratios['bbmOverMbbGapP50'].toFixed(2)} (${bbm.gapMs.p50.toFixed(1)} / ${mbb.gapMs.p50.toFixed(1)} ms)`,
      },
    );
  } else if (GUEST === 'libvirt') {
    const off = summaries.find((s) => s.name === 'off-link');
    const none = summaries.find((s) => s.name === 'off-link no overlap');
    const onLink = summaries.find((s) => s.name === 'on-link baseline');
    for (const s of summaries) {
      const downtime = s.phases['downtimeMs'];
      if (downtime) ratios[`${s.name} gap ÷ libvirt downtime (p50)`] = s.gapMs.p50 / downtime.p50;
    }
    if (off && none) {
      const ratio = off.gapMs.p50 / none.gapMs.p50;
      ratios['overlapOverNoOverlapGapP50'] = ratio;
      targets.push({
        what: 'libvirt: handover at the switchover ÷ after the migration, p50 gap',
        target: '(report)',
        measured: `${ratio.toFixed(2)} (${off.gapMs.p50.toFixed(1)} / ${none.gapMs.p50.toFixed(1)} ms)`,
      });
    }
    if (off && onLink) {
      const gap = off.gapMs.p50 / onLink.gapMs.p50;
      const lost = off.lostPerMigration.mean / onLink.lostPerMigration.mean;
      ratios['offLinkOverOnLinkGapP50'] = gap;
      ratios['offLinkOverOnLinkLost'] = lost;
      const downtime = (s: ConfigSummary) => s.phases['downtimeMs']?.p50.toFixed(0) ?? '?';
      targets.push(
        {
          what: 'off-link ÷ on-link, p50 gap (libvirt guest)',
          target: '≤ 1.2',
          measured: `${gap.toFixed(2)} (${off.gapMs.p50.toFixed(1)} / ${onLink.gapMs.p50.toFixed(1)} ms); libvirt's downtime p50 ${downtime(off)} / ${downtime(onLink)} ms`,
          met: gap <= 1.2,
        },
        {
          what: 'off-link ÷ on-link, probes lost (libvirt guest)',
          target: '(report)',
          measured: `${lost.toFixed(2)} (${off.lostPerMigration.mean.toFixed(1)} / ${onLink.lostPerMigration.mean.toFixed(1)} per migration)`,
        },
      );
    }
  } else if (GUEST === 'qemu') {
    const overlap = summaries.find((s) => s.name === 'off-link overlap');
    const none = summaries.find((s) => s.name === 'off-link no overlap');
    const onLink = summaries.find((s) => s.name === 'on-link baseline');
    if (overlap && none) ratios['overlapOverNoOverlapGapP50'] = overlap.gapMs.p50 / none.gapMs.p50;
    for (const s of summaries) {
      const downtime = s.phases['downtimeMs'];
      if (downtime) ratios[`${s.name} gap ÷ QEMU downtime (p50)`] = s.gapMs.p50 / downtime.p50;
    }
    if (onLink) {
      for (const [key, s] of [
        ['overlap', overlap],
        ['noOverlap', none],
      ] as const) {
        if (!s) continue;
        const gap = s.gapMs.p50 / onLink.gapMs.p50;
        const lost = s.lostPerMigration.mean / onLink.lostPerMigration.mean;
        ratios[`${key}OverOnLinkGapP50`] = gap;
        ratios[`${key}OverOnLinkLost`] = lost;
        targets.push({
          what: `${s.name} ÷ on-link, p50 gap`,
          target: key === 'overlap' ? '≤ 1.2' : '(report)',
          measured: `${gap.toFixed(2)} (${s.gapMs.p50.toFixed(1)} / ${onLink.gapMs.p50.toFixed(1)} ms); probes lost ${lost.toFixed(2)} (${s.lostPerMigration.mean.toFixed(1)} / ${onLink.lostPerMigration.mean.toFixed(1)})`,
          ...(key === 'overlap' ? { met: gap <= 1.2 } : {}),
        });
      }
    }
  }
  printTargets(targets);
  const path = writeResult(args.get('json'), GUEST === 'netns' ? 'outage' : `outage-${GUEST}`, {
    bench: 'outage',
    machine: m,
    params: {
      migrations: MIGRATIONS,
      rounds: ROUNDS,
      intervalS: INTERVAL,
      guest: GUEST,
      configs: CONFIGS,
      ...(QEMU_PRIORITY !== undefined ? { qemuPriority: QEMU_PRIORITY } : {}),
    },
    summaries,
    ratios,
    targets,
    rows,
  });
  log(`wrote ${path}`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
