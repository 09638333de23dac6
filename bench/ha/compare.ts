// Before/after ratio of an optimization on the HA core (core.ts): runs the same harness (this checkout's
// bench/) against the src/ of two trees — a git revision, checked out as a temporary worktree, and this
// checkout — alternately, so both see the same machine load, and reports the ratios of the medians.
//
//   node --import tsx bench/ha/compare.ts --before <rev> [--runs 3] [--mrs 100000] [--label NAME]
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describeMachine, finishMachineInfo, machineInfo } from '../lib/machine.ts';
import { BENCH_DIR, numArg, parseArgs, REPO_DIR } from '../lib/results.ts';
import { percentile } from '../lib/stats.ts';

const args = parseArgs(process.argv.slice(2));
const before = args.get('before');
if (!before) throw new Error('--before <git revision> is required');
const RUNS = numArg(args, 'runs', 3);
const MRS = numArg(args, 'mrs', 100_000);
const label = args.get('label') ?? `${before}-vs-worktree`;

interface Core {
  register: { cpuUsPerBu: number };
  refreshes: { cpuUsPerBu: number }[];
  bytesPerMr: number;
  bytesPerBinding: number;
}

const rev = execFileSync('git', ['rev-parse', '--short', before], { cwd: REPO_DIR }).toString().trim();
const tree = join(REPO_DIR, '.tmp', 'bench9', `before-${rev}`);
if (!existsSync(tree)) {
  mkdirSync(join(REPO_DIR, '.tmp'), { recursive: true });
  execFileSync('git', ['worktree', 'add', '--detach', tree, rev], { cwd: REPO_DIR, stdio: 'ignore' });
  symlinkSync(join(REPO_DIR, 'node_modules'), join(tree, 'node_modules'));
}
// the same harness in both trees
rmSync(join(tree, 'bench'), { recursive: true, force: true });
cpSync(BENCH_DIR, join(tree, 'bench'), { recursive: true });

function run(dir: string, i: number): Core {
  const out = join(REPO_DIR, '.tmp', 'bench9', `core-${i}-${dir === REPO_DIR ? 'after' : 'before'}.json`);
  execFileSync(
    process.execPath,
    ['--expose-gc', '--import', 'tsx', 'bench/ha/core.ts', '--mrs', String(MRS), '--json', out],
    {
      cwd: dir,
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  return JSON.parse(readFileSync(out, 'utf8')) as Core;
}

const machine = machineInfo();
const samples: { before: Core[]; after: Core[] } = { before: [], after: [] };
for (let i = 0; i < RUNS; i++) {
  samples.before.push(run(tree, i));
  samples.after.push(run(REPO_DIR, i));
}
const median = (xs: number[]) => percentile(Float64Array.from(xs).sort(), 0.5);
const fig = (c: Core[], f: (c: Core) => number) => median(c.map(f));
const rows: [string, (c: Core) => number][] = [
  ['registration CPU µs/BU', (c) => c.register.cpuUsPerBu],
  ['refresh CPU µs/BU', (c) => median(c.refreshes.map((r) => r.cpuUsPerBu))],
  ['heap B per configured MR', (c) => c.bytesPerMr],
  ['heap B per binding', (c) => c.bytesPerBinding],
];
const m = finishMachineInfo(machine);
const lines = [
  `| HA core, ${MRS} MRs, median of ${RUNS} alternating runs | before (${rev}) | after | after ÷ before |`,
  '| --- | ---: | ---: | ---: |',
  ...rows.map(([name, f]) => {
    const b = fig(samples.before, f);
    const a = fig(samples.after, f);
    return `| ${name} | ${b.toFixed(1)} | ${a.toFixed(1)} | ${(a / b).toFixed(2)} |`;
  }),
  '',
  `${describeMachine(m)}.`,
];
console.log(lines.join('\n'));
writeFileSync(join(REPO_DIR, '.tmp', 'bench9', `compare-${label}.md`), `${lines.join('\n')}\n`);
