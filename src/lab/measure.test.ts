import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  arrivalPoints,
  longestSilence,
  measure,
  measureSpan,
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
      { name: 'guest→cn', family: 'ipv6', sent: 10_000, lost: 50 },
      { name: 'cn→guest', family: 'ipv6', sent: 10_000, lost: 20 },
    ]);
    // IPv6 only (the default family): byFamily holds IPv6 alone, the same as the whole
    const { byFamily, ...whole } = m.summary;
    assert.deepEqual(Object.keys(byFamily), ['ipv6']);
    assert.deepEqual(byFamily.ipv6, whole);
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

  it('a cut (a home agent killed) ends the loss of the migration before it; measureSpan counts the failure', () => {
    const up = probes('guest→cn', 10_000, { lose: [[4000, 4120]] });
    const down = { ...probes('cn→guest', 10_000, { lose: [[4050, 4100]] }), family: 'ipv4' as const };
    const m = measure([up, down], migrations, w, [T0 + 3500]);
    assert.deepEqual(
      m.migrations.map((x) => x.lost),
      [0, 0],
    );
    assert.equal(m.summary.lost, 170, 'the run still counts every lost probe');
    const f = measureSpan([up, down], T0 + 3500, T0 + 5000, w);
    assert.equal(f.lost, 170);
    assert.equal(f.sent, 3002);
    assert.equal(f.gapMs, 121);
    assert.equal(f.gapFrom, T0 + 3999.2);
    assert.deepEqual(f.byFamily.ipv4, { gapMs: 51, lost: 50, sent: 1501 });
    assert.deepEqual(
      f.directions.map((d) => [d.name, d.lost]),
      [
        ['guest→cn', 120],
        ['cn→guest', 50],
      ],
    );
  });

  it('reports a direction that never recovers as silent until the end', () => {
    const up = probes('guest→cn', 10_000, { lose: [[6000, 10_000]] });
    const m = measure([up], migrations, w);
    assert.equal(m.migrations[1]!.gapMs, 3999.8);
    assert.equal(m.migrations[1]!.lost, 4000);
  });

  it('handles no migrations and no probes', () => {
    const m = measure([{ name: 'x', sendTimes: [], arrivals: [] }], [], w);
    assert.deepEqual(m.summary, {
      gapMs: { p50: 0, p95: 0, max: 0 },
      lost: 0,
      sent: 0,
      byFamily: { ipv6: { gapMs: { p50: 0, p95: 0, max: 0 }, lost: 0, sent: 0 } },
    });
  });

  it('dual-stack: gap, lost and sent per family from that family’s directions alone, per migration and overall', () => {
    const fam = (d: ProbeTimes, family: 'ipv6' | 'ipv4'): ProbeTimes => ({ ...d, family });
    const m = measure(
      [
        fam(probes('guest→cn', 10_000, { lose: [[3000, 3050]], hold: [[6000, 6020]] }), 'ipv6'),
        fam(probes('cn→guest', 10_000, { lose: [[3000, 3010]] }), 'ipv6'),
        // IPv4 has the longer outage in migration 2 and the shorter in migration 1
        fam(probes('guest→cn IPv4', 10_000, { lose: [[3000, 3030]], hold: [[6000, 6090]] }), 'ipv4'),
        fam(probes('cn→guest IPv4', 10_000, { lose: [[6000, 6040]] }), 'ipv4'),
      ],
      migrations,
      w,
    );
    const [first, second] = m.migrations;
    assert.deepEqual(first!.byFamily, {
      ipv6: { gapMs: 51, lost: 60, sent: 6000 },
      ipv4: { gapMs: 31, lost: 30, sent: 6000 },
    });
    assert.deepEqual(second!.byFamily, {
      ipv6: { gapMs: 21, lost: 0, sent: 8020 },
      ipv4: { gapMs: 91, lost: 40, sent: 8020 },
    });
    // the whole takes every direction: the longest gap of any family, the losses of both
    assert.equal(first!.gapMs, 51);
    assert.equal(second!.gapMs, 91);
    assert.equal(first!.lost, 90);
    assert.deepEqual(m.summary.byFamily, {
      ipv6: { gapMs: { p50: 21, p95: 51, max: 51 }, lost: 60, sent: 20_000 },
      ipv4: { gapMs: { p50: 31, p95: 91, max: 91 }, lost: 70, sent: 20_000 },
    });
    assert.deepEqual(m.summary.gapMs, { p50: 51, p95: 91, max: 91 });
    assert.equal(m.summary.lost, 130);
    assert.equal(m.summary.sent, 40_000);
    assert.deepEqual(
      m.migrations[0]!.directions.map((d) => [d.name, d.family]),
      [
        ['guest→cn', 'ipv6'],
        ['cn→guest', 'ipv6'],
        ['guest→cn IPv4', 'ipv4'],
        ['cn→guest IPv4', 'ipv4'],
      ],
    );
  });
});
