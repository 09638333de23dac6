import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type ClockSample, clockSegments, toHostTimes } from './guest-clock.ts';

/** A guest whose clock stops during `pauses` ([host start, length]); host = guest + 1e6 before any. */
function guestClock(pauses: [number, number][]) {
  return (host: number) => {
    let lag = 0;
    for (const [at, len] of pauses) if (host >= at + len) lag += len;
    return host - 1e6 - lag;
  };
}

describe('guest clock mapping', () => {
  test('no migration: one segment, times map to within the round trip', () => {
    const g = guestClock([]);
    const samples: ClockSample[] = [0, 200, 400].map((h) => ({
      guest: g(2e6 + h),
      host: 2e6 + h + 0.3,
      rtt: 1,
    }));
    const segs = clockSegments(samples);
    assert.equal(segs.length, 1);
    const [t] = toHostTimes([g(2e6 + 123)], segs);
    assert.ok(Math.abs(t! - (2e6 + 123)) <= 0.5);
  });

  test('a pause between two samples splits the line in the silence of the arrivals', () => {
    // Guest paused 40 ms at host 2e6+300; samples every 200 ms; arrivals every ms except around the pause.
    const pause: [number, number] = [2e6 + 300, 40];
    const g = guestClock([pause]);
    const hostTimes = [0, 200, 400, 600].map((h) => 2e6 + h);
    const samples = hostTimes.map((h) => ({ guest: g(h), host: h, rtt: 0.8 }));
    const arrivalsHost: number[] = [];
    for (let h = 2e6; h < 2e6 + 700; h++)
      if (h < pause[0] - 5 || h >= pause[0] + pause[1] + 20) arrivalsHost.push(h);
    const arrivalsGuest = arrivalsHost.map(g);
    const segs = clockSegments(samples, arrivalsGuest);
    assert.equal(segs.length, 2);
    assert.equal(segs[1]!.offset - segs[0]!.offset, 40);
    const mapped = toHostTimes(arrivalsGuest, segs);
    for (let i = 0; i < mapped.length; i++)
      assert.ok(Math.abs(mapped[i]! - arrivalsHost[i]!) < 1e-6, `arrival ${i}`);
    // The silence as the lab sees it: 5 ms before the pause + the pause + 20 ms after.
    const gaps = mapped.slice(1).map((t, i) => t - mapped[i]!);
    assert.equal(Math.max(...gaps), 66);
  });

  test('jitter within the round trip is not a jump; empty input maps to NaN', () => {
    const samples: ClockSample[] = [
      { guest: 0, host: 1000, rtt: 4 },
      { guest: 100, host: 1101.5, rtt: 4 },
      { guest: 200, host: 1200.2, rtt: 0.5 },
    ];
    const segs = clockSegments(samples);
    assert.equal(segs.length, 1);
    assert.ok(Math.abs(segs[0]!.offset - 1000.2) < 1e-9, 'the best round trip wins');
    assert.deepEqual(toHostTimes([1], []), [Number.NaN]);
  });
});
