import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeClock } from '../clock.ts';
import { BindingUpdateListEntry, DEFAULT_RETRANSMIT, type ExchangeKind } from './bul.ts';

function rig() {
  const clock = new FakeClock(0);
  const events: string[] = [];
  const bul = new BindingUpdateListEntry(clock, DEFAULT_RETRANSMIT, {
    retransmit: () => {
      events.push(`retransmit@${clock.now()}`);
      send();
    },
    refresh: () => events.push(`refresh@${clock.now()}`),
    expire: () => events.push(`expire@${clock.now()}`),
  });
  const send = () =>
    bul.recordSent({ sequence: bul.allocateSequence(), coa: '2001:db8::2', lifetimeSeconds: 100 });
  return { clock, bul, events, send };
}

function schedule(kind: ExchangeKind, untilMs: number): number[] {
  const { clock, bul, events, send } = rig();
  bul.begin(kind);
  send();
  clock.advance(untilMs);
  return events.map((e) => Number(e.split('@')[1]));
}

describe('binding update list entry', () => {
  it('first registration: retransmits after 1.5, 3, 6, 12, 24 s, then every 32 s', () => {
    const times = schedule('first', 200_000);
    const gaps = times.map((t, i) => t - (i === 0 ? 0 : times[i - 1]!));
    assert.deepEqual(gaps, [1500, 3000, 6000, 12000, 24000, 32000, 32000, 32000, 32000]);
  });

  it('re-registration: retransmits after 1, 2, 4, 8, 16 s, then every 32 s', () => {
    const times = schedule('reregistration', 100_000);
    const gaps = times.map((t, i) => t - (i === 0 ? 0 : times[i - 1]!));
    assert.deepEqual(gaps, [1000, 2000, 4000, 8000, 16000, 32000, 32000]);
  });

  it('sequence numbers continue from a handed-over value and wrap at 2^16', () => {
    const { bul } = rig();
    assert.equal(bul.sequence, undefined);
    bul.setLastSequence(65534);
    assert.equal(bul.allocateSequence(), 65535);
    assert.equal(bul.allocateSequence(), 0);
    assert.equal(bul.sequence, 0);
  });

  it('an acknowledgement stops retransmission and schedules refresh at 80 % and expiry at 100 % from the BU', () => {
    const { clock, bul, events, send } = rig();
    bul.begin('first');
    const sent = send();
    clock.advance(500);
    bul.acknowledged(sent, 100);
    assert.equal(bul.pending, false);
    assert.equal(bul.lifetimeRemainingMs(), 99_500);
    clock.advance(79_499);
    assert.deepEqual(events, []);
    clock.advance(1);
    assert.deepEqual(events, ['refresh@80000']);
    clock.advance(20_000);
    assert.deepEqual(events, ['refresh@80000', 'expire@100000']);
    assert.equal(bul.lifetimeRemainingMs(), 0);
  });

  it('a Binding Refresh Advice shorter than the lifetime sets the refresh time (from the BA)', () => {
    const { clock, bul, events, send } = rig();
    bul.begin('first');
    const sent = send();
    clock.advance(200);
    bul.acknowledged(sent, 400, 40);
    clock.advance(40_000);
    assert.deepEqual(events, ['refresh@40200']);
  });

  it('an advice not shorter than the lifetime is ignored', () => {
    const { clock, bul, events, send } = rig();
    bul.begin('first');
    bul.acknowledged(send(), 100, 100);
    clock.advance(80_000);
    assert.deepEqual(events, ['refresh@80000']);
  });

  it('find() matches recent BUs by sequence; cancel() stops every timer but keeps the sequence', () => {
    const { clock, bul, events, send } = rig();
    bul.setLastSequence(9);
    bul.begin('first');
    const a = send();
    assert.equal(a.sequence, 10);
    assert.equal(bul.find(10), a);
    assert.equal(bul.find(11), undefined);
    bul.cancel();
    clock.advance(100_000);
    assert.deepEqual(events, []);
    assert.equal(bul.sequence, 10);
  });
});
