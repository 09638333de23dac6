import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  arrivalPoints,
  longestSilence,
  measure,
  type ProbeTimes,
  percentile,
  percentiles,
} from './measure.ts';

const T0 = 1_700_000_000_000;

/**
 * Probes at 1 kHz for `ms` milliseconds from T0 with 0.2 ms latency; `lose` drops those sent in
 * [from, to); `hold` delivers those sent in [from, to) all at once at `to` (a queue that drains).
 */
function probes(
  name: string,
  ms: number,
  opts: { lose?: [number, number][]; hold?: [number, number][] } = {},
): ProbeTimes {
  const sendTimes: number[] = [];
  const arrivals: number[] = [];
  for (let i = 0; i < ms; i++) {
    const s = T0 + i;
    sendTimes.push(s);
    let a = s + 0.2;
    for (const [f, t] of opts.lose ?? []) if (s >= T0 + f && s < T0 + t) a = Number.NaN;
    for (const [f, t] of opts.hold ?? []) if (s >= T0 + f && s < T0 + t) a = T0 + t + 0.2;
    arrivals.push(a);
  }
  return { name, sendTimes, arrivals };
}

describe('percentiles', () => {
  it('uses nearest rank', () => {
    assert.equal(percentile([], 50), 0);
    assert.equal(percentile([7], 95), 7);
    assert.equal(percentile([1, 2, 3, 4], 50), 2);
    assert.equal(percentile([1, 2, 3, 4], 95), 4);
    const values = Array.from({ length: 20 }, (_, i) => 20 - i);
    assert.deepEqual(percentiles(values), { p50: 10, p95: 19, max: 20 });
  });
});

describe('longestSilence', () => {
  it('picks the longest interval overlapping the window, not one outside it', () => {
    const points = Float64Array.from([0, 1, 2, 50, 51, 52, 300, 301]);
    assert.deepEqual(longestSilence(points, 10, 20), { from: 2, to: 50 });
    // the 52 → 300 silence is longer but begins after the window ends
    assert.deepEqual(longestSilence(points, 0, 51), { from: 2, to: 50 });
    assert.deepEqual(longestSilence(points, 0, 52), { from: 52, to: 300 });
  });

  it('bounds a silence that lasts until the end of the window', () => {
    const d = probes('x', 1000, { lose: [[900, 1000]] });
    const points = arrivalPoints(d, { from: T0, to: T0 + 999 });
    const s = longestSilence(points, T0 + 950, T0 + 960);
    assert.ok(Math.abs(s.to - s.from - 99.8) < 0.01, `${s.to - s.from}`);
  });
});

describe('measure', () => {
  const w = { from: T0, to: T0 + 9999 };
  const migrations = [
    { index: 1, start: T0 + 2990, end: T0 + 3100 },
    { index: 2, start: T0 + 5990, end: T0 + 6100 },
  ];

  it('takes the longest silence of either direction and counts lost probes per migration', () => {
    const up = probes('guest→cn', 10_000, { lose: [[3000, 3050]], hold: [[6000, 6080]] });
    const down = probes('cn→guest', 10_000, { lose: [[3000, 3020]], hold: [[6000, 6030]] });
    const m = measure([up, down], migrations, w);

    assert.equal(m.migrations.length, 2);
    const [first, second] = m.migrations;
    // 50 probes lost: last arrival at 2999.2, next at 3050.2
    assert.equal(first!.gapMs, 51);
    assert.equal(first!.lost, 70);
    assert.deepEqual(
      first!.directions.map((d) => [d.name, d.gapMs, d.lost]),
      [
        ['guest→cn', 51, 50],
        ['cn→guest', 21, 20],
      ],
    );
    // held, not lost: silence from 5999.2 until the queue drains at 6080.2
    assert.equal(second!.gapMs, 81);
    assert.equal(second!.lost, 0);

    assert.equal(m.summary.sent, 20_000);
    assert.equal(m.summary.lost, 70);
    assert.deepEqual(m.summary.gapMs, { p50: 51, p95: 81, max: 81 });
    assert.deepEqual(m.directions, [
      { name: 'guest→cn', sent: 10_000, lost: 50 },
      { name: 'cn→guest', sent: 10_000, lost: 20 },
    ]);
  });

  it('attributes losses to the migration that precedes them, and ignores the warm-up', () => {
    const up = probes('guest→cn', 10_000, {
      lose: [
        [100, 500],
        [4000, 4010],
        [8000, 8005],
      ],
    });
    const m = measure([up], migrations, { from: T0 + 1000, to: T0 + 9999 });
    assert.deepEqual(
      m.migrations.map((x) => x.lost),
      [10, 5],
    );
    assert.equal(m.summary.lost, 15);
    assert.equal(m.summary.sent, 9000);
    // the 10 ms loss at 4000 is after migration 1's window ended: its gap is one probe interval
    assert.equal(m.migrations[0]!.gapMs, 1);
  });

  it('reports a direction that never recovers as silent until the end', () => {
    const up = probes('guest→cn', 10_000, { lose: [[6000, 10_000]] });
    const m = measure([up], migrations, w);
    assert.equal(m.migrations[1]!.gapMs, 3999.8);
    assert.equal(m.migrations[1]!.lost, 4000);
  });

  it('handles no migrations and no probes', () => {
    const m = measure([{ name: 'x', sendTimes: [], arrivals: [] }], [], w);
    assert.deepEqual(m.summary, { gapMs: { p50: 0, p95: 0, max: 0 }, lost: 0, sent: 0 });
  });
});
