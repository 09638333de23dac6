// What one migration cost, from the probes' send and arrival times (docs/architecture.md): the gap is the longest
// silence seen by any probe direction around the migration, and a probe is lost when it was sent but
// never received. Pure functions over numbers, so they are tested on synthetic data. With probes over
// both address families (a dual-stack lab) the same figures are also given per family.

export type AddressFamily = 'ipv6' | 'ipv4';

/** One probe direction: send time of each sequence number and its arrival time (NaN: never arrived). */
export interface ProbeTimes {
  name: string;
  /** Default ipv6. */
  family?: AddressFamily;
  sendTimes: ArrayLike<number>;
  arrivals: ArrayLike<number>;
}

/** When the lab started and finished one migration (wall-clock ms). */
export interface MigrationWindow {
  index: number;
  start: number;
  end: number;
}

export interface DirectionMeasure {
  name: string;
  family: AddressFamily;
  /** Longest silence at the receiver that overlaps the migration window. */
  gapMs: number;
  /** When that silence began and ended (wall-clock ms). */
  gapFrom: number;
  gapTo: number;
  /** Probes sent from this migration's start until the next one's start, never received. */
  lost: number;
  sent: number;
}

export interface MigrationMeasure {
  index: number;
  gapMs: number;
  lost: number;
  sent: number;
  directions: DirectionMeasure[];
  /** The same figures over each family's directions alone (the families that were probed). */
  byFamily: Partial<Record<AddressFamily, { gapMs: number; lost: number; sent: number }>>;
}

export interface Percentiles {
  p50: number;
  p95: number;
  max: number;
}

export interface FamilySummary {
  gapMs: Percentiles;
  lost: number;
  sent: number;
}

export interface Measurement {
  migrations: MigrationMeasure[];
  /** Over every probe direction; `byFamily` over each family's directions alone. */
  summary: FamilySummary & { byFamily: Partial<Record<AddressFamily, FamilySummary>> };
  directions: { name: string; family: AddressFamily; sent: number; lost: number }[];
}

/** Only probes sent in [from, to] count (the warm-up before and the drain after are left out). */
export interface MeasureWindow {
  from: number;
  to: number;
}

const round1 = (x: number) => Math.round(x * 10) / 10;

/** Nearest-rank percentile of an ascending array (0 when empty). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1]!;
}

export function percentiles(values: readonly number[]): Percentiles {
  const sorted = [...values].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p95: percentile(sorted, 95), max: sorted.at(-1) ?? 0 };
}

/**
 * Times at which the receiver heard something, bounded by the window's ends: silence is measured
 * between consecutive points, so a direction that goes quiet until the end still shows a gap.
 */
export function arrivalPoints(d: ProbeTimes, w: MeasureWindow): Float64Array {
  const points: number[] = [w.from];
  let last = w.to;
  for (let i = 0; i < d.sendTimes.length; i++) {
    const s = d.sendTimes[i]!;
    const a = d.arrivals[i]!;
    if (s < w.from || s > w.to || Number.isNaN(a)) continue;
    points.push(a);
    if (a > last) last = a;
  }
  points.push(last);
  return Float64Array.from(points).sort();
}

/** The longest interval between consecutive points that overlaps [start, end]. */
export function longestSilence(
  points: Float64Array,
  start: number,
  end: number,
): { from: number; to: number } {
  let best = { from: start, to: start };
  for (let i = 1; i < points.length; i++) {
    const a = points[i - 1]!;
    const b = points[i]!;
    if (b < start) continue;
    if (a > end) break;
    if (b - a > best.to - best.from) best = { from: a, to: b };
  }
  return best;
}

function countLost(
  d: ProbeTimes,
  from: number,
  to: number,
  toInclusive: boolean,
): { sent: number; lost: number } {
  let sent = 0;
  let lost = 0;
  for (let i = 0; i < d.sendTimes.length; i++) {
    const s = d.sendTimes[i]!;
    if (s < from || s > to || (s === to && !toInclusive)) continue;
    sent++;
    if (Number.isNaN(d.arrivals[i]!)) lost++;
  }
  return { sent, lost };
}

const familyOf = (d: { family?: AddressFamily }): AddressFamily => d.family ?? 'ipv6';

/** One direction over [from, to]: its longest silence there, and the given loss count. */
function directionMeasure(
  d: ProbeTimes,
  points: ReturnType<typeof arrivalPoints>,
  from: number,
  to: number,
  loss: { sent: number; lost: number },
): DirectionMeasure {
  const silence = longestSilence(points, from, to);
  return {
    name: d.name,
    family: familyOf(d),
    gapMs: round1(silence.to - silence.from),
    gapFrom: silence.from,
    gapTo: silence.to,
    lost: loss.lost,
    sent: loss.sent,
  };
}

/** Gap (the longest of any direction's), lost and sent summed, over some directions (of one migration, or a span). */
function combine(per: readonly DirectionMeasure[]): { gapMs: number; lost: number; sent: number } {
  return {
    gapMs: Math.max(0, ...per.map((p) => p.gapMs)),
    lost: per.reduce((n, p) => n + p.lost, 0),
    sent: per.reduce((n, p) => n + p.sent, 0),
  };
}

/** Gap, lost and sent over a span of time that is no migration (a home agent's failure, `--fail-ha`). */
export interface SpanMeasure {
  /** The longest silence at any receiver that overlaps [from, to]. */
  gapMs: number;
  gapFrom: number;
  gapTo: number;
  /** Probes sent in [from, to] and never received, and sent. */
  lost: number;
  sent: number;
  byFamily: Partial<Record<AddressFamily, ReturnType<typeof combine>>>;
  directions: Omit<DirectionMeasure, 'gapFrom' | 'gapTo'>[];
}

export function measureSpan(
  directions: readonly ProbeTimes[],
  from: number,
  to: number,
  w: MeasureWindow,
): SpanMeasure {
  const per = directions.map((d) =>
    directionMeasure(d, arrivalPoints(d, w), from, to, countLost(d, from, to, true)),
  );
  const worst = per.reduce<{ gapMs: number; gapFrom: number; gapTo: number }>(
    (a, b) => (b.gapMs > a.gapMs ? b : a),
    { gapMs: -1, gapFrom: from, gapTo: from },
  );
  const families = [...new Set(directions.map(familyOf))];
  return {
    ...combine(per),
    gapFrom: worst.gapFrom,
    gapTo: worst.gapTo,
    byFamily: Object.fromEntries(families.map((f) => [f, combine(per.filter((p) => p.family === f))])),
    directions: per.map(({ gapFrom: _f, gapTo: _t, ...rest }) => rest),
  };
}

/**
 * Per migration and over the run. `cuts`: times (a home agent killed) at which a migration's loss stops
 * being counted before the next migration starts, so that the failure's loss is not the migration's.
 */
export function measure(
  directions: readonly ProbeTimes[],
  migrations: readonly MigrationWindow[],
  w: MeasureWindow,
  cuts: readonly number[] = [],
): Measurement {
  const points = directions.map((d) => arrivalPoints(d, w));
  const families = [...new Set(directions.map(familyOf))];
  const ordered = [...migrations].sort((a, b) => a.start - b.start);
  const perMigration = ordered.map((m, k): MigrationMeasure => {
    const next = ordered[k + 1];
    const cut = cuts.filter((c) => c > m.end && (!next || c < next.start)).sort((a, b) => a - b)[0];
    const per = directions.map(
      (d, j): DirectionMeasure =>
        directionMeasure(
          d,
          points[j]!,
          m.start,
          m.end,
          countLost(d, m.start, cut ?? (next ? next.start : w.to), next === undefined && cut === undefined),
        ),
    );
    return {
      index: m.index,
      ...combine(per),
      directions: per,
      byFamily: Object.fromEntries(families.map((f) => [f, combine(per.filter((p) => p.family === f))])),
    };
  });
  const totals = directions.map((d) => ({
    name: d.name,
    family: familyOf(d),
    ...countLost(d, w.from, w.to, true),
  }));
  const summarize = (family?: AddressFamily): FamilySummary => {
    const of = <T extends { family: AddressFamily }>(xs: readonly T[]) =>
      family ? xs.filter((x) => x.family === family) : xs;
    return {
      gapMs: percentiles(perMigration.map((m) => combine(of(m.directions)).gapMs)),
      lost: of(totals).reduce((n, t) => n + t.lost, 0),
      sent: of(totals).reduce((n, t) => n + t.sent, 0),
    };
  };
  return {
    migrations: perMigration,
    summary: {
      ...summarize(),
      byFamily: Object.fromEntries(families.map((f) => [f, summarize(f)])),
    },
    directions: totals,
  };
}
