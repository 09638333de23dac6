import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  acknowledged,
  allocateSequence,
  type BindingUpdateList,
  beginExchange,
  cancelAll,
  DEFAULT_RETRANSMIT,
  type ExchangeKind,
  emptyBindingUpdateList,
  findSent,
  lifetimeRemainingMs,
  recordSent,
  retransmissionDue,
  type SentBindingUpdate,
  withLastSequence,
} from './bul.ts';

const COA = '2001:db8::2';

function send(l: BindingUpdateList, now: number): [BindingUpdateList, SentBindingUpdate] {
  const [next, sequence] = allocateSequence(l);
  return recordSent(next, { sequence, coa: COA, lifetimeSeconds: 100 }, now);
}

/** When each retransmission falls due, following the deadlines as a timer would. */
function schedule(kind: ExchangeKind, untilMs: number): number[] {
  let [l] = send(beginExchange(emptyBindingUpdateList(), kind, DEFAULT_RETRANSMIT), 0);
  const times: number[] = [];
  while (l.retransmitAt !== undefined && l.retransmitAt <= untilMs) {
    const now = l.retransmitAt;
    times.push(now);
    [l] = send(retransmissionDue(l, DEFAULT_RETRANSMIT), now);
  }
  return times;
}

const gaps = (times: number[]) => times.map((t, i) => t - (i === 0 ? 0 : times[i - 1]!));

describe('binding update list entry', () => {
  it('first registration: retransmits after 1.5, 3, 6, 12, 24 s, then every 32 s', () => {
    assert.deepEqual(
      gaps(schedule('first', 200_000)),
      [1500, 3000, 6000, 12000, 24000, 32000, 32000, 32000, 32000],
    );
  });

  it('re-registration: retransmits after 1, 2, 4, 8, 16 s, then every 32 s', () => {
    assert.deepEqual(
      gaps(schedule('reregistration', 100_000)),
      [1000, 2000, 4000, 8000, 16000, 32000, 32000],
    );
  });

  it('each retransmission counts as the next attempt of its exchange', () => {
    let [l, first] = send(beginExchange(emptyBindingUpdateList(), 'first', DEFAULT_RETRANSMIT), 0);
    [l] = [retransmissionDue(l, DEFAULT_RETRANSMIT)];
    const [, second] = send(l, 1500);
    assert.equal(first.attempt, 0);
    assert.equal(second.attempt, 1);
  });

  it('sequence numbers continue from a handed-over value and wrap at 2^16', () => {
    let l = emptyBindingUpdateList();
    assert.equal(l.lastSequence, undefined);
    l = withLastSequence(l, 65534);
    let n: number;
    [l, n] = allocateSequence(l);
    assert.equal(n, 65535);
    [l, n] = allocateSequence(l);
    assert.equal(n, 0);
    assert.equal(l.lastSequence, 0);
  });

  it('an acknowledgement stops retransmission; refresh at 80 % and expiry at 100 % from the BU', () => {
    const [l, sent] = send(beginExchange(emptyBindingUpdateList(), 'first', DEFAULT_RETRANSMIT), 0);
    const acked = acknowledged(l, sent, 100, undefined, 500);
    assert.equal(acked.exchange, undefined);
    assert.equal(acked.retransmitAt, undefined);
    assert.equal(acked.refreshAt, 80_000);
    assert.equal(acked.expiresAt, 100_000);
    assert.equal(lifetimeRemainingMs(acked, 500), 99_500);
    assert.equal(lifetimeRemainingMs(acked, 100_001), 0);
  });

  it('a Binding Refresh Advice shorter than the lifetime sets the refresh time (from the BA); a longer one is ignored', () => {
    const [l, sent] = send(beginExchange(emptyBindingUpdateList(), 'first', DEFAULT_RETRANSMIT), 0);
    assert.equal(acknowledged(l, sent, 400, 40, 200).refreshAt, 40_200);
    assert.equal(acknowledged(l, sent, 100, 100, 0).refreshAt, 80_000);
  });

  it('findSent matches recent BUs by sequence; cancelAll ends every deadline but keeps the sequence', () => {
    const [l, a] = send(
      beginExchange(withLastSequence(emptyBindingUpdateList(), 9), 'first', DEFAULT_RETRANSMIT),
      0,
    );
    assert.equal(a.sequence, 10);
    assert.equal(findSent(l, 10), a);
    assert.equal(findSent(l, 11), undefined);
    const cancelled = cancelAll(acknowledged(l, a, 100, undefined, 0));
    assert.deepEqual(
      [
        cancelled.retransmitAt,
        cancelled.refreshAt,
        cancelled.expiresAt,
        cancelled.exchange,
        cancelled.lastSequence,
      ],
      [undefined, undefined, undefined, undefined, 10],
    );
  });
});
