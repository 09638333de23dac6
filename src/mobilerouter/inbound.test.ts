// What a Binding Acknowledgement may do to the mobile router (inbound.ts): only an answer to the BU
// outstanding can make it resync or give up (issue 18). Core tables first, then the router's log.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { BaStatus } from '../protocol/constants.ts';
import type { MrModel } from './core.ts';
import { IGNORED_LOGS_PER_SECOND } from './runtime.ts';
import { MrState } from './state.ts';
import {
  activateRig,
  inboundAnswer as ba,
  bindingAckFor,
  kinds,
  makeRig,
  registering,
  run,
  runPendingWork,
  sends,
  T0,
} from './testkit.ts';

/** The model apart from what ignoring a message changes (its counter and lastIgnored). */
const withoutIgnored = (m: MrModel) => ({ ...m, counters: undefined, lastIgnored: undefined });

describe('mobile router core: a BA must answer the BU outstanding (issue 18)', () => {
  /** Registered after one genuine 135 resync; `recorded` is that 135, as an attacker on the path keeps it. */
  function resyncedThenActive() {
    const r = registering();
    const recorded = ba(r.bu, { status: BaStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW, sequence: 500 });
    const resynced = run(r.model, [[recorded, { now: T0 + 5 }]]);
    const second = sends(resynced.actions)[0]!;
    const accepted = run(resynced.model, [[ba(second, { lifetimeSeconds: 100 }), { now: T0 + 10 }]]);
    assert.equal(accepted.model.state, MrState.active);
    return { model: accepted.model, recorded };
  }

  it('a recorded BA 135 replayed during a later refresh is ignored (ignoredReplay); nothing else changes', () => {
    const { model, recorded } = resyncedThenActive();
    const refreshing = run(model, [[{ type: 'timer', timer: 'refresh' }, { now: T0 + 80_000 }]]).model;
    const replayed = run(refreshing, [
      [recorded, { now: T0 + 80_001 }],
      [recorded, { now: T0 + 80_002 }],
      [recorded, { now: T0 + 80_003 }],
      [recorded, { now: T0 + 80_004 }],
    ]);
    assert.deepEqual(kinds(replayed.actions), ['ignored', 'ignored', 'ignored', 'ignored']);
    assert.equal(replayed.model.counters.ignoredReplay, 4);
    assert.equal(replayed.model.counters.baSequenceResync, 1);
    assert.deepEqual(withoutIgnored(replayed.model), withoutIgnored(refreshing));
  });

  it('a BA 135 answering an earlier retransmission of this exchange is ignored: only the outstanding BU counts', () => {
    const r = registering();
    const again = run(r.model, [[{ type: 'timer', timer: 'retransmit' }, { now: T0 + 1500 }]]).model;
    const late = run(again, [
      [ba(r.bu, { status: BaStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW, sequence: 500 }), { now: T0 + 1501 }],
    ]);
    assert.deepEqual(kinds(late.actions), ['ignored']);
    assert.equal(late.model.counters.ignoredReplay, 1);
    assert.deepEqual(withoutIgnored(late.model), withoutIgnored(again));
  });

  it('a BA 135 with a timestamp the BU did not carry is ignored (ignoredReplay)', () => {
    const r = registering();
    const t = run(r.model, [
      [ba(r.bu, { status: BaStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW, sequence: 500, timestamp: T0 - 5000 })],
    ]);
    assert.deepEqual(kinds(t.actions), ['ignored']);
    assert.equal(t.model.counters.ignoredReplay, 1);
    assert.deepEqual(withoutIgnored(t.model), withoutIgnored(r.model));
  });

  it('a BA 135 without a timestamp is ignored (ignoredReplay)', () => {
    const r = registering();
    const t = run(r.model, [
      [ba(r.bu, { status: BaStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW, sequence: 500, timestamp: 'none' })],
    ]);
    assert.deepEqual(kinds(t.actions), ['ignored']);
    assert.equal(t.model.counters.ignoredReplay, 1);
  });

  for (const status of [BaStatus.MIPV6_ID_MISMATCH, BaStatus.MIPV6_MESG_ID_REQD]) {
    it(`a BA ${status} replayed after its resync is ignored (ignoredStale); the clock offset stays`, () => {
      const r = registering();
      const recorded = ba(r.bu, { status, timestamp: T0 + 60_000 });
      const resynced = run(r.model, [[recorded]]);
      assert.equal(resynced.model.counters.baTimestampResync, 1);
      const replayed = run(resynced.model, [[recorded, { now: T0 + 1 }]]);
      assert.deepEqual(kinds(replayed.actions), ['ignored']);
      assert.equal(replayed.model.counters.ignoredStale, 1);
      assert.deepEqual(withoutIgnored(replayed.model), withoutIgnored(resynced.model));
    });
  }

  it('a BA 144 for a sequence never sent is ignored (ignoredUnsolicited)', () => {
    const r = registering();
    const t = run(r.model, [[ba(r.bu, { status: BaStatus.MIPV6_ID_MISMATCH, sequence: 9000 })]]);
    assert.deepEqual(kinds(t.actions), ['ignored']);
    assert.equal(t.model.counters.ignoredUnsolicited, 1);
    assert.deepEqual(withoutIgnored(t.model), withoutIgnored(r.model));
  });

  it('a recorded refusal of an earlier exchange replayed during a refresh is ignored (ignoredStale)', () => {
    const r = registering();
    const recorded = ba(r.bu, { status: BaStatus.INSUFFICIENT_RESOURCES });
    const failed = run(r.model, [[recorded]]).model;
    assert.equal(failed.state, MrState.failed);
    const again = run(failed, [
      [{ type: 'startRegistration', kind: 'first', reason: 'retry' }, { now: T0 + 32_000 }],
      [{ type: 'readyToSend' }, { now: T0 + 32_000 }],
      [{ type: 'routesInstalled' }, { now: T0 + 32_000 }],
    ]);
    const bu = sends(again.actions)[0]!;
    const active = run(again.model, [[ba(bu, { lifetimeSeconds: 100 }), { now: T0 + 32_010 }]]).model;
    const refreshing = run(active, [[{ type: 'timer', timer: 'refresh' }, { now: T0 + 112_000 }]]).model;
    const replayed = run(refreshing, [[recorded, { now: T0 + 112_001 }]]);
    assert.deepEqual(kinds(replayed.actions), ['ignored']);
    assert.equal(replayed.model.counters.ignoredStale, 1);
    assert.deepEqual(withoutIgnored(replayed.model), withoutIgnored(refreshing));
  });
});

describe('MobileRouter: a flood of replayed BAs', () => {
  it('is counted in full but logged at most IGNORED_LOGS_PER_SECOND lines a second, then says how many it left out', async () => {
    const lines: { msg: string; counter?: string; suppressed?: number }[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) });
    const rig = makeRig({ logger });
    await activateRig(rig);
    const first = rig.transport.sent[0]!;
    rig.clock.advance(1500); // the retransmission: the first BU is no longer outstanding
    const recorded = bindingAckFor(first, { status: BaStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW, sequence: 7 });
    for (let i = 0; i < 100; i++) rig.transport.deliver(recorded);
    await runPendingWork();
    const st = rig.mr.status();
    assert.equal(st.counters.ignoredReplay, 100);
    assert.equal(st.counters.baSequenceResync, 0);
    assert.equal(st.state, 'registering');
    const ignoredLines = () => lines.filter((l) => l.msg === 'message ignored');
    assert.equal(ignoredLines().length, IGNORED_LOGS_PER_SECOND);
    rig.clock.advance(1000);
    rig.transport.deliver(recorded);
    await runPendingWork();
    assert.equal(ignoredLines().length, IGNORED_LOGS_PER_SECOND + 1);
    assert.equal(ignoredLines().at(-1)?.suppressed, 100 - IGNORED_LOGS_PER_SECOND);
  });
});
