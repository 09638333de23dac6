// Mapping a QEMU guest's clock to this machine's wall clock.
//
// The guest's monotonic clock does not run while the VM is stopped (under TCG its time source is QEMU's
// virtual clock / cpu ticks, which stop at vm_stop and are carried across a migration), so after every
// migration the guest lags by that migration's pause. The offset (host − guest) is therefore constant
// between migrations and jumps at each one. We sample it over TCP (guest time at the midpoint of a
// request's round trip) and split the guest's time line into segments at the jumps; within one segment
// every guest time maps with that segment's offset, accurate to about half a round trip.
//
// Where exactly inside the interval between two samples the jump happened is unknown; but while the VM
// is stopped it receives nothing, so the pause lies inside the longest silence of the guest's arrivals in
// that interval, and the boundary is put in the middle of it. Arrivals then map exactly; a send time
// inside the silence may be off by at most that silence's length in guest time.

export interface ClockSample {
  /** Guest monotonic ms at the sample. */
  guest: number;
  /** Host wall-clock ms at the middle of the request's round trip. */
  host: number;
  /** Round trip of the request, ms (the sample's uncertainty is half of it). */
  rtt: number;
}

export interface ClockSegment {
  /** Guest times from here on (up to the next segment's start) map with `offset`. */
  fromGuest: number;
  offset: number;
}

/** A jump between samples larger than this is a pause (a migration), not jitter. */
const JUMP_MS = 3;

/**
 * The segments of constant offset. `arrivals` (guest ms, any order) place each boundary in the longest
 * silence between the two samples that straddle a jump.
 */
export function clockSegments(
  samples: readonly ClockSample[],
  arrivals: readonly number[] = [],
): ClockSegment[] {
  const good = [...samples].sort((a, b) => a.guest - b.guest);
  if (good.length === 0) return [];
  // A sample's offset is exact to ±rtt/2: per run of agreeing samples keep the one with the best rtt.
  const sorted = [...arrivals].sort((a, b) => a - b);
  const segments: ClockSegment[] = [];
  let best = good[0]!;
  let runStart = -Infinity;
  const flush = (next?: ClockSample, prev?: ClockSample) => {
    segments.push({ fromGuest: runStart, offset: best.host - best.guest });
    if (next && prev) runStart = boundary(prev.guest, next.guest, sorted);
  };
  for (let i = 1; i < good.length; i++) {
    const prev = good[i - 1]!;
    const s = good[i]!;
    const jump = s.host - s.guest - (best.host - best.guest);
    if (Math.abs(jump) > JUMP_MS + (s.rtt + best.rtt) / 2) {
      flush(s, prev);
      best = s;
    } else if (s.rtt < best.rtt) best = s;
  }
  flush();
  return segments;
}

/** The middle of the longest silence in `sorted` within [from, to] (ends included as edges). */
function boundary(from: number, to: number, sorted: readonly number[]): number {
  let prev = from;
  let gapStart = from;
  let gap = -1;
  for (const t of sorted) {
    if (t <= from) continue;
    if (t >= to) break;
    if (t - prev > gap) {
      gap = t - prev;
      gapStart = prev;
    }
    prev = t;
  }
  if (to - prev > gap) {
    gap = to - prev;
    gapStart = prev;
  }
  return gapStart + gap / 2;
}

/** Map guest times to host wall-clock ms with `segments` (from clockSegments). */
export function toHostTimes(guestTimes: readonly number[], segments: readonly ClockSegment[]): number[] {
  if (segments.length === 0) return guestTimes.map(() => Number.NaN);
  return guestTimes.map((t) => {
    let seg = segments[0]!;
    for (const s of segments) {
      if (s.fromGuest <= t) seg = s;
      else break;
    }
    return t + seg.offset;
  });
}
