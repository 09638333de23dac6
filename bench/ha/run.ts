// HA scale benchmark (issue 9, bench/README.md): the real `offlink ha` daemon in one namespace, a load
// generator process (loadgen.ts) in another playing 100,000 mobile routers over UDP. Registers them all,
// then refreshes at steady rates; reports registration time, sustained BU/s with BA latency, HA RSS,
// SQLite size and the kernel routes installed.
//
//   node --import tsx bench/ha/run.ts [--mrs 100000] [--coas 1000] [--rates 5000,10000] [--seconds 20]
//                                     [--window 4096] [--profile LABEL] [--store sqlite|etcd] [--pin] [--json FILE]
//
// --pin (issue 19): the HA's main thread (its event loop: receive, process, commit, answer) alone on CPU 0;
// its other threads (V8's GC helpers, the checkpoint thread) and the load generator on CPU 1 (taskset), so
// the figures are the HA's own rather than the two processes' contention for the same two cores.
//
// --store etcd (issue 16): the bindings in a 3-member etcd cluster (Debian's etcd-server, test/helpers/etcd.ts)
// started in the HA's namespace on fd00:e7cd::1–3 on its loopback (the same 2 cores: each member fsyncs its own WAL),
// `--max-txn-ops=4096`, the HA's `maxTxnOps` to match.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EtcdCluster } from '../../test/helpers/etcd.ts';
import { canUseNetns, type NetnsLab, withNetns } from '../../test/helpers/netns.ts';
import { loadProfile, monotonicMicros, profileMarkdown, summarizeProfile } from '../lib/cpuprofile.ts';
import { type Daemon, launcherEnv, launcherFlags, startDaemon, stopDaemon } from '../lib/daemon.ts';
import { JsonProc } from '../lib/jsonproc.ts';
import { describeMachine, finishMachineInfo, machineInfo } from '../lib/machine.ts';
import { cpuMs, procMemory, RssSampler, StealSampler } from '../lib/proc.ts';
import {
  BENCH_DIR,
  numArg,
  parseArgs,
  printTargets,
  REPO_DIR,
  type Target,
  writeResult,
} from '../lib/results.ts';
import type { Summary } from '../lib/stats.ts';
import { COA_PREFIX, coaOf, HA_ADDRESS, HA_LINK, writeHaConfig } from './fleet.ts';

const args = parseArgs(process.argv.slice(2));
const MRS = numArg(args, 'mrs', 100_000);
const COAS = numArg(args, 'coas', 1000);
const WINDOW = numArg(args, 'window', 4096);
const SECONDS = numArg(args, 'seconds', 20);
const RATES = (args.get('rates') ?? '5000,10000').split(',').map(Number);
const PROFILE = args.get('profile');
/** Extra node flags for the HA process (experiments, e.g. "--max-semi-space-size=4"). */
const NODE_FLAGS = (args.get('ha-node-flags') ?? '').split(' ').filter((f) => f !== '');
const STATUS_PORT = 9180;
const STORE = args.get('store') ?? 'sqlite';
const PIN = args.has('pin');
if (STORE !== 'sqlite' && STORE !== 'etcd') throw new Error(`--store: sqlite or etcd, not ${STORE}`);
/** The members' addresses: on the HA namespace's loopback (IPv6, as test/helpers/etcd.ts writes them). */
const ETCD_HOSTS = ['fd00:e7cd::1', 'fd00:e7cd::2', 'fd00:e7cd::3'];
const ETCD_MAX_TXN_OPS = 4096;

interface RegisterResult {
  ms: number;
  answered: number;
  retransmissions: number;
  statuses: Record<string, number>;
  latencyMs: Summary;
  perSecond: number[];
  verified: number;
  verifyFailed: number;
}
interface RefreshResult {
  loadgenLoopDelayMs: { p50: number; p99: number; max: number };
  rate: number;
  sent: number;
  skipped: number;
  offeredPerSecond: number;
  answered: number;
  answeredPerSecond: number;
  lost: number;
  statuses: Record<string, number>;
  latencyMs: Summary;
  verified: number;
  verifyFailed: number;
  startNs: string;
  endNs: string;
}

const log = (msg: string) => console.error(`[bench/ha] ${msg}`);

async function buildNamespaces(lab: NetnsLab): Promise<{ ha: string; lg: string }> {
  const { ha, lg } = await lab.build({
    namespaces: [{ name: 'ha', forwarding: true }, { name: 'lg' }],
    veths: [
      {
        a: { ns: 'ha', dev: 'ha-up', addresses: [`${HA_LINK.ha}/64`] },
        b: { ns: 'lg', dev: 'lg0', addresses: [`${HA_LINK.lg}/64`] },
      },
    ],
  });
  // the load generator's many CoAs and the HA's routes to them in one batch each (faster than a spec)
  const batch = (ns: string, lines: string[]) =>
    execFileSync('ip', ['-6', '-n', ns, '-batch', '-'], { input: `${lines.join('\n')}\n` });
  batch(ha, [`addr add ${HA_ADDRESS}/128 dev lo`, `route add ${COA_PREFIX} via ${HA_LINK.lg} dev ha-up`]);
  batch(lg, [
    `route add 2001:db8:ffff::/48 via ${HA_LINK.ha} dev lg0`,
    ...Array.from({ length: COAS }, (_, k) => `addr add ${coaOf(k)}/128 dev lo nodad`),
  ]);
  return { ha, lg };
}

/** --pin: the HA's main thread on CPU 0, its other threads on CPU 1 (they start before this: all listed). */
function pinHa(pid: number): void {
  for (const tid of readdirSync(`/proc/${pid}/task`))
    execFileSync('taskset', ['-p', '-c', tid === String(pid) ? '0' : '1', tid], { stdio: 'ignore' });
}

function countRoutes(ns: string): number {
  const out = execFileSync('ip', ['-n', ns, '-6', 'route', 'show', 'proto', '241'], { maxBuffer: 1 << 30 });
  let n = 0;
  for (const b of out) if (b === 10) n++;
  return n;
}

/** The HA's metrics (one scrape: gauges that reset when collected are read once). */
function scrape(ns: string): string {
  return execFileSync('ip', [
    'netns',
    'exec',
    ns,
    'curl',
    '-sf',
    `http://127.0.0.1:${STATUS_PORT}/metrics`,
  ]).toString();
}

function metric(out: string, name: string): number {
  const line = out.split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1] ?? Number.NaN);
}

/** The HA's own BA latency histogram (receipt in the daemon → BA sent): cumulative count per bucket bound. */
function haLatencyBuckets(out: string, name = 'offlink_ha_ba_latency_seconds'): Map<string, number> {
  const buckets = new Map<string, number>();
  for (const m of out.matchAll(new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\d+)`, 'gm')))
    buckets.set(m[1]!, Number(m[2]));
  return buckets;
}

/**
 * Between two scrapes: the smallest bucket bound (ms) holding ≥ 99 % of the BAs, and the share ≤ 10 ms — the
 * latency inside the HA, without the load generator's own delays or the kernel's queueing before the HA reads.
 */
function haSideLatency(before: Map<string, number>, after: Map<string, number>) {
  const total = (after.get('+Inf') ?? 0) - (before.get('+Inf') ?? 0);
  let p99Ms = Number.POSITIVE_INFINITY;
  for (const [le, n] of after) {
    if (le === '+Inf') continue;
    if (n - (before.get(le) ?? 0) >= 0.99 * total) p99Ms = Math.min(p99Ms, Number(le) * 1000);
  }
  const within10 = ((after.get('0.01') ?? 0) - (before.get('0.01') ?? 0)) / Math.max(1, total);
  return { bas: total, p99BucketMs: p99Ms, shareWithin10Ms: Math.round(within10 * 10000) / 10000 };
}

function dbBytes(path: string): number {
  let sum = 0;
  for (const suffix of ['', '-wal', '-shm'])
    if (existsSync(path + suffix)) sum += statSync(path + suffix).size;
  return sum;
}

/** CPU time the HA and the load generator used since `from`, per answered BU (load-independent-ish). */
function cpuPer(from: { ha: number; lg: number }, haPid: number, lgPid: number, bus: number) {
  const ha = cpuMs(haPid) - from.ha;
  const lg = cpuMs(lgPid) - from.lg;
  return {
    haCpuMs: ha,
    loadgenCpuMs: lg,
    haCpuUsPerBu: (1000 * ha) / Math.max(1, bus),
    loadgenCpuUsPerBu: (1000 * lg) / Math.max(1, bus),
  };
}

const mib = (n: number) => Math.round((n / 2 ** 20) * 10) / 10;
const fmt = (s: Summary) => `p50 ${s.p50.toFixed(2)} / p99 ${s.p99.toFixed(2)} / max ${s.max.toFixed(1)} ms`;

async function main(): Promise<void> {
  if (!canUseNetns()) throw new Error('needs root (network namespaces)');
  const machine = machineInfo();
  const dir = mkdtempSync(join(tmpdir(), 'offlink-bench-ha-'));
  const config = join(dir, 'ha.yaml');
  // --db-dir: where the SQLite file goes (default: beside the config, on disk; /dev/shm shows the HA
  // without the disk's fsync latency)
  const dbDir = args.get('db-dir');
  const database = dbDir ? join(dbDir, `offlink-bench-ha-${process.pid}.sqlite`) : join(dir, 'ha.sqlite');
  const profDir = join(dir, 'prof');
  const t = performance.now();
  await writeHaConfig(config, {
    mrs: MRS,
    uplink: 'ha-up',
    database,
    statusPort: STATUS_PORT,
    ...(STORE === 'etcd'
      ? {
          homeAgentLines: `  store: etcd\n  etcd: { endpoints: [${ETCD_HOSTS.map((h) => `"http://[${h}]:2379"`).join(', ')}], maxTxnOps: ${ETCD_MAX_TXN_OPS}, name: bench-ha }\n`,
        }
      : {}),
  });
  log(
    `config with ${MRS} mobile routers: ${mib(statSync(config).size)} MiB in ${(performance.now() - t).toFixed(0)} ms`,
  );

  let ha: Daemon | undefined;
  let lg: JsonProc | undefined;
  let etcd: EtcdCluster | undefined;
  const marks: Record<string, number> = {};
  try {
    const result = await withNetns(async (lab) => {
      const ns = await buildNamespaces(lab);
      if (STORE === 'etcd') {
        for (const h of ETCD_HOSTS)
          execFileSync('ip', ['-n', ns.ha, 'addr', 'add', `${h}/128`, 'dev', 'lo', 'nodad']);
        etcd = await EtcdCluster.start(3, [`--max-txn-ops=${ETCD_MAX_TXN_OPS}`], {
          netns: ns.ha,
          hosts: ETCD_HOSTS,
        });
        log(`etcd: 3 members in the HA's namespace (${etcd.endpoints.join(', ')})`);
      }
      marks['start'] = monotonicMicros();
      ha = await startDaemon(ns.ha, ['ha', '--config', config], {
        log: join(dir, 'ha.log'),
        ready: 'home agent started',
        nodeFlags: [...NODE_FLAGS, ...(PROFILE ? ['--cpu-prof', '--cpu-prof-dir', profDir] : [])],
      });
      if (PIN) pinHa(ha.pid);
      const rss = new RssSampler(ha.pid);
      const started = { ms: ha.startMs, rssMiB: rss.sample() };
      log(
        `HA serving after ${(ha.startMs / 1000).toFixed(1)} s, RSS ${started.rssMiB.toFixed(0)} MiB (no bindings)`,
      );

      lg = new JsonProc(
        [
          'ip',
          'netns',
          'exec',
          ns.lg,
          ...(PIN ? ['taskset', '-c', '1'] : []),
          process.execPath,
          '--import',
          'tsx',
          join(BENCH_DIR, 'ha/loadgen.ts'),
        ],
        {
          cwd: REPO_DIR,
        },
      );
      await lg.call('init', { mrs: MRS, coas: COAS, port: 4191, lifetimeSeconds: 3600 });

      const lgPid = lg.child.pid!;
      rss.reset();
      marks['registerStart'] = monotonicMicros();
      let cpu = { ha: cpuMs(ha.pid), lg: cpuMs(lgPid) };
      const reg0 = await lg.call<RegisterResult>('register', { window: WINDOW, retransmitMs: 5000 });
      const reg = { ...reg0, ...cpuPer(cpu, ha.pid, lgPid, reg0.answered) };
      marks['registerEnd'] = monotonicMicros();
      const regRssMax = rss.max;
      log(
        `registered ${reg.answered} in ${(reg.ms / 1000).toFixed(1)} s (${reg.retransmissions} retransmitted), BA ${fmt(reg.latencyMs)}, statuses ${JSON.stringify(reg.statuses)}, HA CPU ${reg.haCpuUsPerBu.toFixed(0)} µs/BU`,
      );
      const routes = countRoutes(ns.ha);
      const bindings = metric(scrape(ns.ha), 'offlink_ha_bindings');
      await new Promise((r) => setTimeout(r, 2000));
      if (args.has('snapshot')) {
        // with --ha-node-flags=--heapsnapshot-signal=SIGUSR2: the HA writes Heap.*.heapsnapshot into its cwd
        process.kill(ha.pid, 'SIGUSR2');
        await new Promise((r) => setTimeout(r, 30_000));
      }
      const split = procMemory(ha.pid);
      const held = {
        anonMiB: split?.anonMiB,
        fileMiB: split?.fileMiB,
        rssMiB: rss.sample(),
        regRssMaxMiB: regRssMax,
        dbMiB: mib(dbBytes(database)),
        routes,
        bindings,
      };
      log(
        `holding ${bindings} bindings: ${routes} kernel routes, SQLite ${held.dbMiB} MiB, HA RSS ${held.rssMiB.toFixed(0)} MiB (anonymous ${held.anonMiB?.toFixed(0)}, files ${held.fileMiB?.toFixed(0)})`,
      );

      const refreshes: (RefreshResult & {
        rssMaxMiB: number;
        haSide: ReturnType<typeof haSideLatency>;
      } & ReturnType<typeof cpuPer>)[] = [];
      for (const rate of RATES) {
        rss.reset();
        cpu = { ha: cpuMs(ha.pid), lg: cpuMs(lgPid) };
        // (the scrape also resets the HA's loop-delay maximum)
        const before = scrape(ns.ha);
        const buckets = haLatencyBuckets(before);
        const commitBuckets = haLatencyBuckets(before, 'offlink_ha_store_commit_seconds');
        const steal = new StealSampler();
        steal.start();
        const r = await lg.call<RefreshResult>('refresh', { rate, seconds: SECONDS, lossTimeoutMs: 2000 });
        const stolen = steal.stop();
        const after = scrape(ns.ha);
        const haSide = {
          ...haSideLatency(buckets, haLatencyBuckets(after)),
          loopDelayMaxMs: 1000 * metric(after, 'offlink_ha_event_loop_delay_max_seconds'),
          commits: haSideLatency(commitBuckets, haLatencyBuckets(after, 'offlink_ha_store_commit_seconds')),
          stealMs: stolen,
        };
        refreshes.push({ ...r, rssMaxMiB: rss.max, ...cpuPer(cpu, ha.pid, lgPid, r.answered), haSide });
        marks[`refresh${rate}Start`] = Number(BigInt(r.startNs) / 1000n);
        marks[`refresh${rate}End`] = Number(BigInt(r.endNs) / 1000n);
        log(
          `refresh at ${rate}/s: offered ${r.offeredPerSecond.toFixed(0)}/s, answered ${r.answeredPerSecond.toFixed(0)}/s, lost ${r.lost}, BA ${fmt(r.latencyMs)}, RSS max ${rss.max.toFixed(0)} MiB, HA CPU ${refreshes.at(-1)!.haCpuUsPerBu.toFixed(0)} µs/BU; inside the HA: p99 ≤ ${haSide.p99BucketMs} ms, ${(100 * haSide.shareWithin10Ms).toFixed(2)} % ≤ 10 ms, its event loop held up ≤ ${haSide.loopDelayMaxMs.toFixed(1)} ms, ${haSide.commits.bas} commits p99 ≤ ${haSide.commits.p99BucketMs} ms (${(100 * haSide.commits.shareWithin10Ms).toFixed(2)} % ≤ 10 ms); load generator's loop delay p99 ${r.loadgenLoopDelayMs.p99.toFixed(1)} / max ${r.loadgenLoopDelayMs.max.toFixed(1)} ms; vCPU steal ${stolen.totalMs} ms (≤ ${stolen.maxMsPer100Ms} ms per 100 ms)`,
        );
      }
      const final = {
        rssMiB: rss.sample(),
        hwmMiB: procMemory(ha.pid)?.hwmMiB ?? Number.NaN,
        dbMiB: mib(dbBytes(database)),
      };
      rss.stop();
      await lg.close();
      marks['stop'] = monotonicMicros();
      await stopDaemon(ha);
      return { started, reg, held, refreshes, final };
    });

    const r5k = result.refreshes.find((r) => r.rate === 5000) ?? result.refreshes[0]!;
    const sustained = result.refreshes.filter((r) => r.lost === 0 && r.answeredPerSecond >= 0.98 * r.rate);
    const best = sustained.at(-1);
    const rssAt100k = Math.max(result.held.rssMiB, ...result.refreshes.map((r) => r.rssMaxMiB));
    const targets: Target[] = [
      {
        what: 'bindings held',
        target: `${MRS}`,
        measured: `${result.held.bindings} bindings, ${result.held.routes} routes`,
        met: result.held.bindings === MRS,
      },
      {
        what: 'register all',
        target: '≤ 60 s',
        measured: `${(result.reg.ms / 1000).toFixed(1)} s`,
        met: result.reg.ms <= 60_000,
      },
      {
        what: 'sustained refreshes',
        target: '≥ 5000 BU/s',
        measured: best
          ? `${best.answeredPerSecond.toFixed(0)} BU/s (offered ${best.rate}/s, 0 lost)`
          : 'none without loss',
        met: best !== undefined && best.answeredPerSecond >= 4900,
      },
      {
        what: `p99 BA latency at ${r5k.rate}/s`,
        target: '≤ 10 ms',
        measured: `p50 ${r5k.latencyMs.p50.toFixed(2)} / p99 ${r5k.latencyMs.p99.toFixed(2)} ms`,
        met: r5k.latencyMs.p99 <= 10,
      },
      {
        what: 'HA RSS at 100k bindings',
        target: '≤ 256 MiB',
        measured: `${rssAt100k.toFixed(0)} MiB (peak while registering ${result.held.regRssMaxMiB.toFixed(0)}, VmHWM ${result.final.hwmMiB.toFixed(0)})`,
        met: rssAt100k <= 256,
      },
    ];
    const m = finishMachineInfo(machine);
    console.log(`\nHA scale — ${describeMachine(m)}`);
    console.log(
      `SQLite ${result.final.dbMiB} MiB; HA start with ${MRS} MRs configured: ${(result.started.ms / 1000).toFixed(1)} s`,
    );
    printTargets(targets);

    let profile: string | undefined;
    if (PROFILE) profile = writeProfileSummary(profDir, PROFILE, marks, m);
    const out = writeResult(args.get('json'), PROFILE ? `ha-${PROFILE}` : 'ha', {
      bench: 'ha',
      machine: m,
      params: {
        mrs: MRS,
        coas: COAS,
        window: WINDOW,
        seconds: SECONDS,
        rates: RATES,
        profiled: !!PROFILE,
        launcherFlags: launcherFlags('ha'),
        launcherEnv: launcherEnv('ha'),
        haNodeFlags: NODE_FLAGS,
        pinned: PIN,
        store: STORE,
      },
      ...result,
      targets,
      profile,
    });
    log(`wrote ${out}`);
  } finally {
    await lg?.close();
    await stopDaemon(ha, 5000);
    await etcd?.stop();
    if (dbDir) for (const suffix of ['', '-wal', '-shm']) rmSync(database + suffix, { force: true });
    if (!args.has('keep')) rmSync(dir, { recursive: true, force: true });
    else log(`kept ${dir}`);
  }
}

function writeProfileSummary(
  profDir: string,
  label: string,
  marks: Record<string, number>,
  m: ReturnType<typeof machineInfo>,
): string {
  const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no .cpuprofile in ${profDir}`);
  const p = loadProfile(join(profDir, file));
  const windows: [string, number | undefined, number | undefined][] = [
    ['start (config, store, reconcile)', undefined, marks['registerStart']],
    [`registration of ${MRS}`, marks['registerStart'], marks['registerEnd']],
    ...RATES.map((r): [string, number | undefined, number | undefined] => [
      `refreshes at ${r}/s`,
      marks[`refresh${r}Start`],
      marks[`refresh${r}End`],
    ]),
  ];
  const md = [
    `## HA CPU profile: ${label}`,
    '',
    `\`node --cpu-prof\` on \`offlink ha\` during \`bench/ha/run.ts --profile ${label}\`; ${describeMachine(m)}.`,
    '',
    ...windows.map(([title, from, to]) => profileMarkdown(title, summarizeProfile(p, { from, to }))),
  ].join('\n');
  const path = join(BENCH_DIR, 'profiles', `ha-${label}.md`);
  writeFileSync(path, md);
  log(`profile summary: ${path}`);
  return path;
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
