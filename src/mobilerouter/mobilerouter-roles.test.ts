// The mobile router with fakes: failures and its roles in a handover (registration: mobilerouter.test.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ntpTimestamp } from '../protocol/auth.ts';
import { BaStatus } from '../protocol/constants.ts';
import { RegistrationRejectedError } from './errors.ts';
import { activateRig, bindingAckFor, COA, makeRig, registeredRig, runPendingWork } from './testkit.ts';

const activate = activateRig;
const registered = registeredRig;

describe('MobileRouter failures', () => {
  it('a rejection surfaces its status name, removes routes and retries after retransmit.maxMs', async () => {
    const rig = makeRig();
    const failures: RegistrationRejectedError[] = [];
    rig.mr.on('registrationFailed', (e) => failures.push(e as RegistrationRejectedError));
    const { p } = await activate(rig);
    rig.transport.deliver(
      bindingAckFor(rig.transport.sent[0]!, {
        status: BaStatus.NOT_AUTHORIZED_FOR_PREFIX,
        lifetimeSeconds: 0,
      }),
    );
    await assert.rejects(
      p,
      (e: unknown) => e instanceof RegistrationRejectedError && e.statusName === 'NOT_AUTHORIZED_FOR_PREFIX',
    );
    await runPendingWork();
    assert.equal(rig.mr.state, 'failed');
    assert.equal(failures[0]?.status, 142);
    assert.match(rig.mr.status().lastError ?? '', /NOT_AUTHORIZED_FOR_PREFIX \(142\)/);
    assert.equal(rig.mr.status().lastBaStatusName, 'NOT_AUTHORIZED_FOR_PREFIX');
    assert.equal(rig.dataplane.active.size, 0);
    assert.equal(rig.guestLink.advertising, false);
    const n = rig.transport.sent.length;
    rig.clock.advance(31_999);
    await runPendingWork();
    assert.equal(rig.transport.sent.length, n);
    rig.clock.advance(1);
    await runPendingWork();
    assert.equal(rig.transport.sent.length, n + 1);
    assert.equal(rig.mr.state, 'registering');
  });

  it('a BA without the R flag is a failure (RFC 3963 §5.3)', async () => {
    const rig = makeRig();
    const { p } = await activate(rig);
    rig.transport.deliver(bindingAckFor(rig.transport.sent[0]!, { flags: 0 }));
    await assert.rejects(p, /MOBILE_ROUTER_OPERATION_NOT_PERMITTED/);
  });

  it('a data plane failure fails the activation', async () => {
    const rig = makeRig();
    rig.dataplane.failActivate = true;
    const p = rig.mr.activate();
    await assert.rejects(p, /setting up failed/);
    await runPendingWork();
    assert.equal(rig.mr.state, 'failed');
  });
});

describe('MobileRouter roles', () => {
  it('standby() sends nothing, stops radvd, removes routes and cancels every timer', async () => {
    const rig = makeRig();
    await registered(rig, { lifetimeSeconds: 100 });
    const n = rig.transport.sent.length;
    const h = await rig.mr.standby();
    assert.equal(h.lastSequence, rig.transport.last().bu.sequence);
    assert.ok(h.lifetimeRemainingMs > 0);
    assert.equal(rig.mr.state, 'standby');
    assert.equal(rig.guestLink.advertising, false);
    assert.equal(rig.dataplane.active.size, 0);
    assert.equal(rig.transport.listening, false);
    rig.clock.advance(1_000_000);
    await runPendingWork();
    assert.equal(rig.transport.sent.length, n);
    assert.equal(rig.clock.pending, 0);
  });

  it('prepareHandover() stops BUs but keeps routes until standby()', async () => {
    const rig = makeRig();
    await registered(rig, { lifetimeSeconds: 100 });
    const n = rig.transport.sent.length;
    const h = await rig.mr.prepareHandover();
    assert.equal(rig.mr.state, 'handingOver');
    assert.equal(rig.dataplane.active.size, 1);
    rig.clock.advance(1_000_000);
    assert.equal(rig.transport.sent.length, n);
    const h2 = await rig.mr.standby();
    assert.equal(h2.lastSequence, h.lastSequence);
    assert.equal(rig.mr.state, 'standby');
  });

  it('make-before-break between two routers: the new one sends last + 1', async () => {
    const a = makeRig();
    await registered(a);
    const h = await a.mr.prepareHandover();
    const b = makeRig({ coa: '2001:db8:b::2' });
    const { p } = await activate(b, { lastSequence: h.lastSequence! });
    assert.equal(b.transport.last().bu.sequence, (h.lastSequence! + 1) & 0xffff);
    assert.equal(b.transport.last().from, '2001:db8:b::2');
    b.transport.deliver(bindingAckFor(b.transport.sent[0]!));
    const reg = await p;
    assert.equal(reg.kind, 'reregistration');
    await a.mr.standby();
  });

  it('deregister() sends lifetime 0, waits for the BA and ends in standby', async () => {
    const rig = makeRig();
    await registered(rig);
    const d = rig.mr.deregister();
    await runPendingWork();
    const { bu } = rig.transport.last();
    assert.equal(bu.lifetime, 0);
    assert.equal(rig.mr.state, 'deregistering');
    assert.equal(rig.dataplane.active.size, 0, 'routes go while waiting');
    rig.clock.advance(3);
    rig.transport.deliver(bindingAckFor(rig.transport.sent.at(-1)!));
    const r = await d;
    assert.deepEqual(r, { acknowledged: true, status: 0, sequence: bu.sequence, buToBaMs: 3 });
    assert.equal(rig.mr.state, 'standby');
    assert.equal(rig.clock.pending, 0);
  });

  it('deregister() retransmits and gives up after its timeout', async () => {
    const rig = makeRig();
    await registered(rig);
    const n = rig.transport.sent.length;
    const d = rig.mr.deregister({ timeoutMs: 5000 });
    await runPendingWork();
    rig.clock.advance(5000);
    const r = await d;
    assert.equal(r.acknowledged, false);
    assert.equal(rig.transport.sent.length - n, 3, 'at 0, 1 and 3 s');
    assert.equal(rig.mr.state, 'standby');
  });

  it('waits for a care-of address instead of failing, then registers', async () => {
    const rig = makeRig({ coa: null });
    const { p } = await activate(rig);
    assert.equal(rig.mr.state, 'waitingForCoa');
    assert.equal(rig.transport.sent.length, 0);
    rig.clock.advance(100_000);
    assert.equal(rig.transport.sent.length, 0);
    rig.coa.set(COA);
    await runPendingWork();
    assert.equal(rig.transport.sent.length, 1);
    rig.transport.deliver(bindingAckFor(rig.transport.sent[0]!));
    await p;
    assert.equal(rig.mr.state, 'active');
  });

  it('a CoA change re-registers from the new address and re-points the routes', async () => {
    const rig = makeRig();
    await registered(rig);
    const n = rig.transport.sent.length;
    const next = rig.mr.whenRegistered({ acceptCurrent: false });
    rig.coa.set('2001:db8:a::77');
    await runPendingWork();
    assert.equal(rig.transport.sent.length, n + 1);
    assert.equal(rig.transport.last().from, '2001:db8:a::77');
    assert.ok(rig.dataplane.calls.includes('initHost 2001:db8:a::77'));
    assert.equal(rig.dataplane.active.get('net1')?.coa, '2001:db8:a::77');
    rig.transport.deliver(bindingAckFor(rig.transport.sent.at(-1)!));
    const reg = await next;
    assert.equal(reg.coa, '2001:db8:a::77');
    assert.equal(reg.kind, 'reregistration');
    assert.equal(rig.mr.status().counters.coaChanges, 1);
  });

  it('replay timestamps strictly increase even within one millisecond', async () => {
    const rig = makeRig();
    await activate(rig, { lastSequence: 1 });
    rig.transport.deliver(
      bindingAckFor(rig.transport.sent[0]!, { status: 135, sequence: 50, lifetimeSeconds: 0 }),
    );
    const [a, b] = rig.transport
      .bus()
      .map((x) => x.bu.options.find((option) => option.type === 'replayProtection'));
    assert.ok(a?.type === 'replayProtection' && b?.type === 'replayProtection');
    assert.ok(b.timestamp > a.timestamp);
    void ntpTimestamp;
  });

  it('prepare() readies host, socket and egress routes on standby; standby() or a CoA change releases them', async () => {
    const rig = makeRig();
    assert.equal(await rig.mr.prepare(), COA);
    // the egress routes are in place before the handover (bench/profiles/outage.md)
    assert.deepEqual(rig.dataplane.calls, [`initHost ${COA}`, `activate net1 ${COA}`]);
    assert.equal(rig.transport.listening, true);
    assert.equal(rig.mr.state, 'standby');
    rig.coa.set('2001:db8:a::9');
    await runPendingWork();
    assert.equal(rig.transport.listening, false);
    assert.equal(rig.dataplane.calls.at(-1), `deactivate net1 ${COA}`);
    await rig.mr.prepare();
    assert.equal(rig.transport.listening, true);
    await rig.mr.standby();
    assert.equal(rig.transport.listening, false);
    assert.equal(rig.dataplane.calls.at(-1), 'deactivate net1 2001:db8:a::9');
    assert.equal(rig.transport.sent.length, 0);
  });

  it('activate() after prepare() sends the BU without another neighbour flush or route install', async () => {
    const rig = makeRig();
    await rig.mr.prepare();
    const before = rig.dataplane.calls.length;
    const flushes = rig.guestLink.calls.filter((call) => call === 'flushNeighbours').length;
    const reg = rig.mr.activate({ lastSequence: 10 });
    await runPendingWork();
    assert.equal(rig.transport.sent.length, 1);
    assert.deepEqual(rig.dataplane.calls.slice(before), []);
    assert.equal(rig.guestLink.calls.filter((call) => call === 'flushNeighbours').length, flushes);
    rig.transport.deliver(bindingAckFor(rig.transport.sent[0]!));
    assert.equal((await reg).sequence, 11);
  });

  it('stop() is final', async () => {
    const rig = makeRig();
    await registered(rig);
    await rig.mr.stop();
    assert.equal(rig.mr.state, 'stopped');
    await assert.rejects(rig.mr.activate(), /stopped/);
  });
});
