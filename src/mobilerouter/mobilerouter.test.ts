import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ntpTimestampToMs } from '../protocol/auth.ts';
import { BaStatus, BuFlag, SIGNALING_PORT } from '../protocol/constants.ts';
import { verifyPacketAuth } from '../protocol/packet.ts';
import {
  activateRig,
  bindingAckFor,
  COA,
  HA,
  HOA,
  makeRig,
  type Rig,
  registeredRig,
  runPendingWork,
  SA,
} from './testkit.ts';

const activate = activateRig;
const registered = registeredRig;

describe('MobileRouter registration', () => {
  it('sends a signed BU with A, H, R, the MNPs and replay protection, from the CoA to the HA port', async () => {
    const rig = makeRig();
    await activate(rig);
    assert.equal(rig.transport.sent.length, 1);
    const s = rig.transport.sent[0]!;
    assert.equal(s.address, HA);
    assert.equal(s.port, SIGNALING_PORT);
    assert.equal(s.from, COA);
    const { bu, packet } = rig.transport.last();
    assert.equal(packet.src, HOA);
    assert.equal(packet.dst, HA);
    assert.equal(bu.flags, BuFlag.A | BuFlag.H | BuFlag.R);
    assert.equal(bu.lifetime, 100);
    assert.deepEqual(
      bu.options.filter((option) => option.type === 'mobileNetworkPrefix'),
      [{ type: 'mobileNetworkPrefix', prefix: '2001:db8:100::', prefixLength: 64 }],
    );
    const replay = bu.options.find((option) => option.type === 'replayProtection');
    assert.ok(replay?.type === 'replayProtection');
    assert.equal(Math.round(ntpTimestampToMs(replay.timestamp)), rig.clock.now());
    assert.equal(bu.options.at(-1)?.type, 'auth');
    assert.ok(verifyPacketAuth(packet, SA, COA, HOA));
    assert.equal(rig.mr.state, 'registering');
  });

  it('initialises the host before the BU, installs routes and radvd, and is active at the BA', async () => {
    const rig = makeRig();
    const states: string[] = [];
    rig.mr.on('state', (t) => states.push(t.to));
    const { p } = await activate(rig);
    assert.deepEqual(rig.dataplane.calls, [`initHost ${COA}`, `activate net1 ${COA}`]);
    assert.deepEqual(rig.guestLink.calls, ['ensure', 'flushNeighbours', 'startAdvertising']);
    rig.clock.advance(7);
    rig.transport.deliver(bindingAckFor(rig.transport.sent[0]!, { lifetimeSeconds: 200 }));
    const reg = await p;
    assert.equal(reg.buToBaMs, 7);
    assert.equal(reg.lifetimeSeconds, 200);
    assert.equal(reg.coa, COA);
    assert.equal(reg.kind, 'first');
    assert.deepEqual(states, ['registering', 'active']);
    const st = rig.mr.status();
    assert.equal(st.state, 'active');
    assert.equal(st.lastBaStatusName, 'ACCEPTED');
    assert.equal(st.lifetimeRemainingMs, 200_000 - 7);
    assert.equal(st.counters.baAccepted, 1);
  });

  it('implicit mode sends no MNP options', async () => {
    const rig = makeRig({ network: { mode: 'implicit' } });
    await activate(rig);
    assert.equal(
      rig.transport.last().bu.options.filter((option) => option.type === 'mobileNetworkPrefix').length,
      0,
    );
  });

  it('retransmits a first registration after 1.5, 3, 6, 12, 24 s and then every 32 s, each with a new sequence', async () => {
    const rig = makeRig();
    const t0 = rig.clock.now();
    const times: number[] = [];
    await activate(rig);
    times.push(rig.clock.now() - t0);
    for (let i = 0; i < 8; i++) {
      const before = rig.transport.sent.length;
      while (rig.transport.sent.length === before) rig.clock.advance(100);
      times.push(rig.clock.now() - t0);
    }
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    assert.deepEqual(gaps, [1500, 3000, 6000, 12000, 24000, 32000, 32000, 32000]);
    const seqs = rig.transport.bus().map((b) => b.bu.sequence);
    for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], (seqs[i - 1]! + 1) & 0xffff);
    assert.equal(rig.mr.status().counters.buRetransmitted, 8);
    assert.equal(rig.mr.state, 'registering');
  });

  it('accepts a BA whose outer source is not the HA address (an HA on :: answers from its uplink)', async () => {
    const rig = makeRig();
    const { p } = await activate(rig);
    rig.transport.deliver(bindingAckFor(rig.transport.sent[0]!), '2001:db8:1::2');
    await p;
    assert.equal(rig.mr.state, 'active');
  });

  it('a retransmitted exchange is answered by the BA to any of its BUs', async () => {
    const rig = makeRig();
    const { p } = await activate(rig);
    rig.clock.advance(1500);
    assert.equal(rig.transport.sent.length, 2);
    rig.transport.deliver(bindingAckFor(rig.transport.sent[0]!));
    const reg = await p;
    assert.equal(reg.retransmissions, 0);
    assert.equal(reg.exchangeMs, 1500);
    assert.equal(rig.mr.state, 'active');
    // the answer to the retransmission arrives later: extends the binding, no new BU
    rig.transport.deliver(bindingAckFor(rig.transport.sent[1]!));
    await runPendingWork();
    assert.equal(rig.transport.sent.length, 2);
    assert.equal(rig.mr.status().counters.ignoredStale, 0);
  });

  it('refreshes at 80 % of the granted lifetime, retransmitting on the 1 s schedule, and notices expiry', async () => {
    const rig = makeRig();
    await registered(rig, { lifetimeSeconds: 100 });
    const n = rig.transport.sent.length;
    rig.clock.advance(79_999);
    assert.equal(rig.transport.sent.length, n);
    rig.clock.advance(1);
    assert.equal(rig.transport.sent.length, n + 1);
    assert.equal(rig.mr.state, 'active');
    assert.equal(rig.transport.last().bu.lifetime, 100);
    const times: number[] = [];
    const t0 = rig.clock.now();
    for (let i = 0; i < 4; i++) {
      const before = rig.transport.sent.length;
      while (rig.transport.sent.length === before) rig.clock.advance(100);
      times.push(rig.clock.now() - t0);
    }
    assert.deepEqual(times, [1000, 3000, 7000, 15000]);
    // the lifetime ran out at 100 s (t0 + 20 s): the HA dropped the binding
    rig.clock.advance(5000);
    assert.equal(rig.mr.state, 'registering');
    assert.equal(rig.dataplane.active.size, 1, 'routes stay while re-registering');
    rig.transport.deliver(bindingAckFor(rig.transport.sent.at(-1)!));
    await runPendingWork();
    assert.equal(rig.mr.state, 'active');
  });

  it('honours a Binding Refresh Advice', async () => {
    const rig = makeRig();
    await registered(rig, { lifetimeSeconds: 400, refreshAdviceSeconds: 40 });
    const n = rig.transport.sent.length;
    rig.clock.advance(39_999);
    assert.equal(rig.transport.sent.length, n);
    rig.clock.advance(1);
    assert.equal(rig.transport.sent.length, n + 1);
    const reg = rig.transport.sent.at(-1)!;
    const registeredAgain = rig.mr.whenRegistered();
    rig.transport.deliver(bindingAckFor(reg, { lifetimeSeconds: 400, refreshAdviceSeconds: 40 }));
    const r = await registeredAgain;
    assert.equal(r.refreshAdviceSeconds, 40);
    assert.equal(r.kind, 'reregistration');
  });

  it('BA 135: resyncs to the stored sequence + 1 and resends at once', async () => {
    const rig = makeRig();
    const { p } = await activate(rig, { lastSequence: 10 });
    assert.equal(rig.transport.last().bu.sequence, 11);
    rig.transport.deliver(
      bindingAckFor(rig.transport.sent[0]!, {
        status: BaStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW,
        sequence: 5000,
        lifetimeSeconds: 0,
      }),
    );
    assert.equal(rig.transport.sent.length, 2);
    assert.equal(rig.transport.last().bu.sequence, 5001);
    assert.equal(rig.mr.state, 'registering');
    rig.transport.deliver(bindingAckFor(rig.transport.sent[1]!));
    const reg = await p;
    assert.equal(reg.sequence, 5001);
    assert.equal(rig.mr.status().counters.baSequenceResync, 1);
  });

  it('activate({ lastSequence }) continues another host’s binding with last + 1 on the 1 s schedule', async () => {
    const rig = makeRig();
    await activate(rig, { lastSequence: 65535 });
    assert.equal(rig.transport.last().bu.sequence, 0);
    rig.clock.advance(1000);
    assert.equal(rig.transport.sent.length, 2);
    assert.equal(rig.transport.last().bu.sequence, 1);
  });

  it('answers a Binding Refresh Request from the HA with a BU', async () => {
    const rig = makeRig();
    await registered(rig);
    const n = rig.transport.sent.length;
    const { encodeSignalingPacket } = await import('../protocol/packet.ts');
    const brr = encodeSignalingPacket({
      src: HA,
      dst: HOA,
      message: { type: 'bindingRefreshRequest', options: [] },
    });
    rig.transport.deliver(brr);
    assert.equal(rig.transport.sent.length, n + 1);
    assert.equal(rig.mr.status().counters.brrAnswered, 1);
    // a BRR not from the HA's port, or not from the HA address inside, is not answered
    rig.transport.deliver(brr, HA, 5555);
    const notHa = encodeSignalingPacket({
      src: '2001:db8:bad::1',
      dst: HOA,
      message: { type: 'bindingRefreshRequest', options: [] },
    });
    rig.transport.deliver(notHa);
    assert.equal(rig.transport.sent.length, n + 1);
    assert.equal(rig.mr.status().counters.ignoredForeign, 2);
  });

  it('a Binding Error for an unknown binding makes an active router re-register', async () => {
    const rig = makeRig();
    await registered(rig);
    const n = rig.transport.sent.length;
    const { encodeSignalingPacket } = await import('../protocol/packet.ts');
    const be = encodeSignalingPacket({
      src: HA,
      dst: HOA,
      message: { type: 'bindingError', status: 1, homeAddress: HOA, options: [] },
    });
    rig.transport.deliver(be);
    assert.equal(rig.transport.sent.length, n + 1);
    assert.equal(rig.mr.status().counters.beReceived, 1);
  });

  it('BA 144 with the HA clock: adopts the offset and resends at once', async () => {
    const rig = makeRig();
    const { p } = await activate(rig);
    const haNow = rig.clock.now() + 60_000;
    rig.transport.deliver(
      bindingAckFor(rig.transport.sent[0]!, {
        status: BaStatus.MIPV6_ID_MISMATCH,
        timestamp: haNow,
        lifetimeSeconds: 0,
      }),
    );
    assert.equal(rig.transport.sent.length, 2);
    const replay = rig.transport.last().bu.options.find((option) => option.type === 'replayProtection');
    assert.ok(replay?.type === 'replayProtection');
    assert.ok(Math.abs(ntpTimestampToMs(replay.timestamp) - haNow) < 2);
    rig.transport.deliver(bindingAckFor(rig.transport.sent[1]!));
    await p;
  });
});

describe('MobileRouter ignores bad input and counts it, state unchanged', () => {
  const cases: Array<[string, (rig: Rig) => void, string]> = [
    [
      'a BA signed with another key',
      (r) =>
        r.transport.deliver(
          bindingAckFor(r.transport.sent[0]!, { signWith: { ...SA, key: Buffer.alloc(16, 7) } }),
        ),
      'ignoredAuth',
    ],
    [
      'an unsigned BA',
      (r) => r.transport.deliver(bindingAckFor(r.transport.sent[0]!, { signWith: null })),
      'ignoredAuth',
    ],
    [
      'an unsigned 146',
      (r) => r.transport.deliver(bindingAckFor(r.transport.sent[0]!, { status: 146, signWith: null })),
      'ignoredAuth',
    ],
    [
      'a BA for a sequence never sent',
      (r) =>
        r.transport.deliver(
          bindingAckFor(r.transport.sent[0]!, { sequence: (r.transport.last().bu.sequence + 100) & 0xffff }),
        ),
      'ignoredUnsolicited',
    ],
    [
      'a BA not echoing the BU timestamp (replayed)',
      (r) => r.transport.deliver(bindingAckFor(r.transport.sent[0]!, { timestamp: 1 })),
      'ignoredReplay',
    ],
    [
      'a BA authenticated for another CoA',
      (r) => r.transport.deliver(bindingAckFor(r.transport.sent[0]!, { coa: '2001:db8:b::9' })),
      'ignoredAuth',
    ],
    [
      'garbage',
      (r) => r.transport.deliver(Buffer.from('not a mobility header at all, at all')),
      'ignoredMalformed',
    ],
    [
      'a truncated BA',
      (r) => r.transport.deliver(bindingAckFor(r.transport.sent[0]!).subarray(0, 50)),
      'ignoredMalformed',
    ],
    [
      'a BA whose inner source is not the HA',
      (r) => r.transport.deliver(bindingAckFor(r.transport.sent[0]!, { innerSrc: '2001:db8:bad::1' })),
      'ignoredForeign',
    ],
    [
      'a BA from another port',
      (r) => r.transport.deliver(bindingAckFor(r.transport.sent[0]!), HA, 4444),
      'ignoredForeign',
    ],
    [
      'a 135 signed with another key',
      (r) =>
        r.transport.deliver(
          bindingAckFor(r.transport.sent[0]!, {
            status: 135,
            sequence: 9,
            signWith: { ...SA, key: Buffer.alloc(16, 1) },
          }),
        ),
      'ignoredAuth',
    ],
  ];
  for (const [what, deliver, counter] of cases) {
    it(`${what} → ${counter}`, async () => {
      const rig = makeRig();
      await activate(rig);
      const sentBefore = rig.transport.sent.length;
      deliver(rig);
      await runPendingWork();
      const st = rig.mr.status();
      assert.equal(st.state, 'registering');
      assert.equal((st.counters as unknown as Record<string, number>)[counter], 1);
      assert.equal(rig.transport.sent.length, sentBefore, 'nothing sent in reaction');
      assert.equal(st.counters.baAccepted, 0);
      assert.equal(st.lastBaStatus, undefined);
      // and the genuine answer still works afterwards
      rig.transport.deliver(bindingAckFor(rig.transport.sent[0]!));
      await runPendingWork();
      assert.equal(rig.mr.state, 'active');
    });
  }

  it('a genuine BA while standby is ignored as unsolicited', async () => {
    const rig = makeRig();
    await activate(rig);
    const ba = bindingAckFor(rig.transport.sent[0]!);
    const deliver = (() => {
      // capture the handler before standby closes the socket
      const t = rig.transport as unknown as { handler: (d: unknown) => void };
      return t.handler;
    })();
    await rig.mr.standby();
    deliver({ data: Buffer.from(ba), address: HA, port: SIGNALING_PORT });
    assert.equal(rig.mr.state, 'standby');
    assert.equal(rig.mr.status().counters.ignoredUnsolicited, 1);
  });
});
