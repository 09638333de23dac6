// Summaries of V8 CPU profiles (`node --cpu-prof`): the functions that took the time, as a markdown
// table for bench/profiles/. A window (µs on CLOCK_MONOTONIC, the clock of process.hrtime and of the
// profile's timestamps) picks out one phase of a run, e.g. registration vs. refreshes.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface FunctionTime {
  name: string;
  ms: number;
  pct: number;
}

export interface ProfileSummary {
  /** Sampled wall time of the window, and the part the thread was not idle. */
  wallMs: number;
  busyMs: number;
  self: FunctionTime[];
  inclusive: FunctionTime[];
  byFile: FunctionTime[];
}

export function loadProfile(path: string): CpuProfile {
  return JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
}

/** Microseconds on CLOCK_MONOTONIC, comparable with a profile's sample times. */
export function monotonicMicros(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

function frameName(f: CallFrame): string {
  const fn = f.functionName || '(anonymous)';
  if (!f.url) return fn;
  const url = f.url.replace(/^file:\/\//, '');
  const short = url.includes('/node_modules/')
    ? url.slice(url.lastIndexOf('/node_modules/') + 14)
    : url.includes('/src/')
      ? url.slice(url.lastIndexOf('/src/') + 1)
      : basename(url);
  return f.lineNumber > 0 ? `${fn} ${short}:${f.lineNumber + 1}` : `${fn} ${short}`;
}

function fileName(f: CallFrame): string {
  if (!f.url) return f.functionName.startsWith('(') ? f.functionName : '(native)';
  const url = f.url.replace(/^file:\/\//, '');
  if (url.includes('/node_modules/')) {
    const rest = url.slice(url.lastIndexOf('/node_modules/') + 14).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (url.startsWith('node:')) return url;
  return url.includes('/src/') ? url.slice(url.lastIndexOf('/src/') + 1) : basename(url);
}

const IDLE = new Set(['(idle)', '(program)']);

export function summarizeProfile(
  p: CpuProfile,
  window: { from?: number; to?: number } = {},
  top = 25,
): ProfileSummary {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const stackCache = new Map<number, string[]>();
  const stackOf = (id: number): string[] => {
    const cached = stackCache.get(id);
    if (cached) return cached;
    const names = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const f = byId.get(cur)!.callFrame;
      if (f.functionName !== '(root)') names.add(frameName(f));
    }
    const out = [...names];
    stackCache.set(id, out);
    return out;
  };
  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  const files = new Map<string, number>();
  const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);
  let t = p.startTime;
  let wall = 0;
  let busy = 0;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i] ?? 0;
    const dt = p.timeDeltas[i + 1] ?? 0; // the time until the next sample is this sample's weight
    if ((window.from !== undefined && t < window.from) || (window.to !== undefined && t > window.to))
      continue;
    const node = byId.get(p.samples[i]!)!;
    const f = node.callFrame;
    wall += dt;
    if (IDLE.has(f.functionName)) continue;
    busy += dt;
    add(self, frameName(f), dt);
    add(files, fileName(f), dt);
    for (const name of stackOf(node.id)) add(incl, name, dt);
  }
  const list = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, ms: us / 1000, pct: busy ? (100 * us) / busy : 0 }));
  return {
    wallMs: wall / 1000,
    busyMs: busy / 1000,
    self: list(self),
    inclusive: list(incl),
    byFile: list(files),
  };
}

export function profileMarkdown(title: string, s: ProfileSummary, rows = 20): string {
  const table = (head: string, xs: FunctionTime[]) =>
    [
      `| ${head} | ms | % of busy |`,
      '| --- | ---: | ---: |',
      ...xs
        .slice(0, rows)
        .map((x) => `| \`${x.name.replaceAll('|', '\\|')}\` | ${x.ms.toFixed(0)} | ${x.pct.toFixed(1)} |`),
    ].join('\n');
  return [
    `### ${title}`,
    '',
    `Window ${(s.wallMs / 1000).toFixed(1)} s, main thread busy ${(s.busyMs / 1000).toFixed(1)} s (${((100 * s.busyMs) / Math.max(1, s.wallMs)).toFixed(0)} %).`,
    '',
    table('self time: function', s.self),
    '',
    table('by file / package (self)', s.byFile.slice(0, 12)),
    '',
    table('inclusive: function', s.inclusive),
    '',
  ].join('\n');
}
