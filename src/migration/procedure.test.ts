import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OfflinkError } from '../errors.ts';
import { silentLogger } from '../log.ts';
import { IncomingNetwork } from './incoming.ts';
import { ControlError, type MigrationEvent, type Peer, type Procedure } from './messages.ts';
import { type MigrationContext, runMigration } from './procedure.ts';
import type { MigratingNetwork } from './router.ts';
import { FakeBinding, FakeDriver, FakeRouter, FakeWorld } from './testkit.ts';

const NET: MigratingNetwork = {
  name: 'net1',
  bridge: 'ofl-net1',
  guests: ['guest-1'],
  homeAddress: '2001:db8:ffff::101',
  prefixes: ['2001:db8:100::/64'],
};
const COA_A = '2001:db8:a::2';
const COA_B = '2001:db8:b::2';

async function setup(options: { network?: MigratingNetwork } = {}) {
  const network = options.network ?? NET;
  const binding = new FakeBinding();
  const world = new FakeWorld();
  for (const g of network.guests) world.where.set(g, 'host-a');
  const a = new FakeRouter(binding, COA_A);
  const b = new FakeRouter(binding, COA_B);
  await a.activate();
  binding.log.length = 0;
  a.calls.length = 0;
  const driverA = new FakeDriver(world, 'host-a');
  const driverB = new FakeDriver(world, 'host-b');
  let t = 0;
  const now = () => (t += 1);
  const incoming = new IncomingNetwork({
    host: 'host-b',
    network,
    router: b,
    driver: driverB,
    log: silentLogger(),
    now,
    registrationTimeoutMs: 50,
  });
  const peerCalls: string[] = [];
  let unreachable = 0;
  const peer: Peer & { unreachable: (n: number) => void } = {
    host: 'host-b',
    unreachable: (n) => {
      unreachable = n;
    },
    async prepare(req) {
      peerCalls.push('prepare');
      return incoming.prepare(structuredClone(req));
    },
    async handover(req) {
      peerCalls.push('handover');
      if (unreachable > 0) {
        unreachable--;
        throw new OfflinkError('ERR_PEER', 'http://host-b: ECONNREFUSED');
      }
      return incoming.handover(structuredClone(req));
    },
    async abort(req) {
      peerCalls.push('abort');
      return incoming.abort(structuredClone(req));
    },
  };
  const events: MigrationEvent[] = [];
  const migrate = (procedure: Procedure, extra: Partial<MigrationContext> = {}) =>
    runMigration({
      id: 'mig-00000001',
      procedure,
      from: 'host-a',
      network,
      router: a,
      driver: driverA,
      peer,
      log: silentLogger(),
      now,
      wallClock: () => 1_700_000_000_000,
      onEvent: (e) => events.push(e),
      ...extra,
    });
  return { binding, world, a, b, driverB, incoming, peer, peerCalls, events, migrate };
}

function phases(events: readonly MigrationEvent[]): string[] {
  return events.map((e) => (e.type === 'phase' ? `${e.phase} ${e.state}` : e.type));
}

describe('migration procedure (source side, with the destination side in-process)', () => {
  it('make-before-break: the destination continues the binding with last+1, the source never deregisters', async () => {
    const { binding, world, a, b, events, migrate } = await setup();
    const seqA = a.sequence!;
    const record = await migrate('make-before-break');
    assert.equal(record.outcome, 'succeeded', record.error);
    assert.deepEqual(binding.log, [`bind ${COA_B} seq ${(seqA + 1) & 0xffff}`]);
    // The destination accepts what the source forwards from its CoA; the source forwards to the
    // destination's CoA from the switchover until it leaves.
    assert.deepEqual(b.calls, [`prepare acceptFrom ${COA_A}`, `activate ${seqA}`]);
    assert.deepEqual(a.calls, ['prepareHandover', `forwardTo ${COA_B}`, 'standby']);
    assert.equal(a.state, 'standby');
    assert.equal(b.state, 'active');
    assert.equal(world.where.get('guest-1'), 'host-b');
    // Overlap: the handover ran while the guest was moving (after its switchover, before it arrived).
    const order = [...world.log];
    assert.ok(order.indexOf('host-a: switchover guest-1') < order.indexOf('host-a: moved guest-1 to host-b'));
    assert.deepEqual(phases(events), [
      'prepare start',
      'prepare done',
      'hypervisor start',
      'notification start',
      'hypervisor done',
      'notification done',
      'registration done',
      'standby start',
      'standby done',
    ]);
    const t = record.timings;
    for (const k of [
      'prepareMs',
      'hypervisorMs',
      'downtimeMs',
      'notificationMs',
      'buToBaMs',
      'totalMs',
    ] as const) {
      assert.equal(typeof t[k], 'number', k);
    }
    assert.equal(record.to, 'host-b');
    assert.equal(record.startedAt, '2023-11-14T22:13:20.000Z');
  });

  it('without overlap, the notification follows the move', async () => {
    const { world, binding, events, migrate } = await setup();
    const record = await migrate('make-before-break', { overlap: false });
    assert.equal(record.outcome, 'succeeded');
    assert.equal(binding.coa, COA_B);
    assert.deepEqual(phases(events).slice(2, 5), [
      'hypervisor start',
      'hypervisor done',
      'notification start',
    ]);
    assert.ok(world.log.includes('host-b: announce guest-1'));
  });

  it('break-before-make: the source deregisters and waits for the BA, then the destination registers', async () => {
    const { binding, a, b, events, migrate } = await setup();
    const record = await migrate('break-before-make');
    assert.equal(record.outcome, 'succeeded', record.error);
    assert.equal(binding.log.length, 2);
    assert.match(binding.log[0]!, /^deregister/);
    assert.match(binding.log[1]!, new RegExp(`^bind ${COA_B}`));
    assert.deepEqual(a.calls, ['deregister']);
    assert.equal(b.state, 'active');
    assert.deepEqual(phases(events), [
      'prepare start',
      'prepare done',
      'hypervisor start',
      'hypervisor done',
      'deregistration start',
      'deregistration done',
      'notification start',
      'notification done',
      'registration done',
    ]);
    assert.equal(typeof record.timings.deregistrationMs, 'number');
  });

  it('a destination that does not hold the network or cannot take the guests refuses prepare; nothing changes', async () => {
    const other = { ...NET, guests: ['guest-1', 'guest-9'] };
    const s1 = await setup({ network: other });
    // host-b's config lacks guest-9: simulate by a destination holding a different guest list
    const incoming = new IncomingNetwork({
      host: 'host-b',
      network: NET,
      router: s1.b,
      driver: s1.driverB,
      log: silentLogger(),
      now: () => 0,
    });
    await assert.rejects(
      incoming.prepare({
        migrationId: 'mig-00000002',
        network: 'net1',
        source: 'host-a',
        procedure: 'break-before-make',
        guests: ['guest-9'],
      }),
      /guest guest-9 is not in network net1 on host-b/,
    );

    const s2 = await setup();
    s2.driverB.refuseIncoming.add('guest-1');
    const record = await s2.migrate('make-before-break');
    assert.equal(record.outcome, 'failed');
    assert.equal(record.failedPhase, 'prepare');
    assert.match(record.error!, /host-b cannot take the guests: no bridge for guest-1/);
    assert.equal(s2.a.state, 'active');
    assert.deepEqual(s2.a.calls, []);
    assert.deepEqual(s2.binding.log, []);
    assert.equal(s2.world.where.get('guest-1'), 'host-a');

    const s3 = await setup();
    s3.b.coa = undefined;
    const r3 = await s3.migrate('make-before-break');
    assert.equal(r3.failedPhase, 'prepare');
    assert.match(r3.error!, /host-b has no care-of address yet/);

    const s4 = await setup();
    s4.b.state = 'active';
    const r4 = await s4.migrate('break-before-make');
    assert.match(r4.error!, /network net1 is active on host-b, not standby/);
    assert.equal(s4.a.state, 'active');
  });

  it('hypervisor failure before any handover: the source stays active, the destination forgets the prepare', async () => {
    const { world, binding, a, incoming, peerCalls, migrate } = await setup();
    world.failNext.add('guest-1');
    const record = await migrate('make-before-break', { overlap: false });
    assert.equal(record.outcome, 'failed');
    assert.equal(record.failedPhase, 'hypervisor');
    assert.match(record.error!, /moving guest-1 failed/);
    assert.match(record.recovery!, /host-b told to forget the migration; network still active on host-a/);
    assert.deepEqual(peerCalls, ['prepare', 'abort']);
    assert.equal(incoming.pendingMigration, undefined);
    assert.ok(world.log.includes('host-b: cancelIncoming guest-1'));
    assert.equal(a.state, 'active');
    assert.deepEqual(a.calls, []);
    assert.deepEqual(binding.log, []);
  });

  it('hypervisor failure after an overlapped handover: the destination steps back, the source registers again, newer', async () => {
    const { world, binding, a, b, migrate } = await setup();
    world.failNext.add('guest-1');
    const record = await migrate('make-before-break');
    assert.equal(record.outcome, 'failed');
    assert.equal(record.failedPhase, 'hypervisor');
    assert.match(record.recovery!, /host-a registered again/);
    assert.equal(b.state, 'standby');
    assert.equal(a.state, 'active');
    assert.equal(binding.coa, COA_A);
    assert.equal(world.where.get('guest-1'), 'host-a');
    // host-b bound with s+1, then host-a with (s+1)+1: always newer, no 135 round trip.
    const seqs = binding.log.map((l) => Number(l.split(' seq ')[1]));
    assert.equal(seqs.length, 2);
    assert.equal(seqs[1], (seqs[0]! + 1) & 0xffff);
  });

  it('a destination whose registration is refused: reported as failed registration, source in standby', async () => {
    const { binding, a, b, migrate } = await setup();
    binding.refuse.add(COA_B);
    const record = await migrate('make-before-break');
    assert.equal(record.outcome, 'failed');
    assert.equal(record.failedPhase, 'registration');
    assert.match(record.error!, /host-b is not registered yet: .*ADMINISTRATIVELY_PROHIBITED/);
    assert.match(record.recovery!, /keeps retrying/);
    assert.equal(a.state, 'standby');
    assert.equal(b.state, 'failed');
  });

  it('a destination that does not answer its BA in time: answered "registering"', async () => {
    const { binding, migrate } = await setup();
    binding.silent.add(COA_B);
    const record = await migrate('make-before-break');
    assert.equal(record.failedPhase, 'registration');
    assert.match(record.error!, /no accepting BA within 50 ms/);
  });

  it('an unreachable destination is retried with back-off; a repeated notification gets the same answer', async () => {
    const { binding, peer, peerCalls, incoming, migrate } = await setup();
    peer.unreachable(5);
    const slept: number[] = [];
    const record = await migrate('make-before-break', { sleep: async (ms) => void slept.push(ms) });
    assert.equal(record.outcome, 'succeeded', record.error);
    assert.deepEqual(peerCalls, ['prepare', ...Array(6).fill('handover')]);
    // Five immediate retries would all fall into one restart of the destination's agent.
    assert.deepEqual(slept, [250, 500, 1000, 2000, 4000]);
    assert.equal(binding.log.length, 1);
    const again = await incoming.handover({
      migrationId: 'mig-00000001',
      network: 'net1',
      source: 'host-a',
      procedure: 'make-before-break',
      hoa: NET.homeAddress,
      prefixes: [...NET.prefixes],
      lastSequence: 1,
      lifetimeRemaining: 1,
    });
    assert.equal(again.state, 'active');
    assert.equal(binding.log.length, 1, 'no second BU');
  });

  it('an unreachable destination after the move fails the notification and says where the guests are', async () => {
    const { a, peer, peerCalls, migrate } = await setup();
    peer.unreachable(100);
    const slept: number[] = [];
    const record = await migrate('make-before-break', {
      overlap: false,
      sleep: async (ms) => void slept.push(ms),
    });
    assert.equal(peerCalls.filter((call) => call === 'handover').length, 8);
    assert.deepEqual(slept, [250, 500, 1000, 2000, 4000, 4000, 4000]);
    assert.equal(record.failedPhase, 'notification');
    assert.match(record.error!, /ECONNREFUSED/);
    assert.match(
      record.recovery!,
      /guests are on host-b; host-a stopped refreshing the binding; host-a went to standby/,
    );
    // Not stuck in handingOver: the network can come back here later.
    assert.equal(a.state, 'standby');
  });

  it('the destination refuses a handover it was not prepared for, or with a foreign binding state', async () => {
    const { incoming } = await setup();
    const req = {
      migrationId: 'mig-00000009',
      network: 'net1',
      source: 'host-a',
      procedure: 'make-before-break' as const,
      hoa: NET.homeAddress,
      prefixes: [...NET.prefixes],
      lastSequence: 5,
      lifetimeRemaining: 100,
    };
    await assert.rejects(incoming.handover(req), (err: unknown) => {
      assert.ok(err instanceof ControlError);
      assert.equal(err.status, 409);
      assert.match(err.message, /not prepared for migration mig-00000009/);
      return true;
    });
    await incoming.prepare({
      migrationId: req.migrationId,
      network: 'net1',
      source: 'host-a',
      procedure: 'break-before-make',
      guests: [],
    });
    await assert.rejects(incoming.handover({ ...req, hoa: '2001:db8:ffff::999' }), /does not match net1/);
  });

  it('a network with several guests moves them all; the handover starts at the last one', async () => {
    const net = { ...NET, guests: ['guest-1', 'guest-2', 'guest-3'] };
    const { world, binding, migrate } = await setup({ network: net });
    const record = await migrate('make-before-break');
    assert.equal(record.outcome, 'succeeded', record.error);
    assert.deepEqual([...world.where.values()], ['host-b', 'host-b', 'host-b']);
    assert.equal(binding.log.length, 1);
    const bindAt = world.log.indexOf('host-a: switchover guest-3');
    assert.ok(world.log.indexOf('host-a: moved guest-2 to host-b') < bindAt);
  });

  it('a later guest fails to move: the ones that arrived are sent back, the network stays whole on the source', async () => {
    const net = { ...NET, guests: ['guest-1', 'guest-2', 'guest-3'] };
    const { world, binding, a, incoming, peerCalls, migrate } = await setup({ network: net });
    world.failNext.add('guest-3');
    const record = await migrate('make-before-break', { overlap: false });
    assert.equal(record.outcome, 'failed');
    assert.equal(record.failedPhase, 'hypervisor');
    assert.deepEqual([...world.where.values()], ['host-a', 'host-a', 'host-a']);
    assert.match(
      record.recovery!,
      /host-b told to forget the migration; guest-1, guest-2 sent back to host-a/,
    );
    assert.doesNotMatch(record.recovery!, /still on host-b/);
    assert.deepEqual(peerCalls, ['prepare', 'abort']);
    // host-a prepared for both before the abort; they moved host-b → host-a; host-b undid its prepare.
    const log = world.log;
    assert.ok(
      log.indexOf('host-a: prepareIncoming guest-2') < log.indexOf('host-b: moved guest-1 to host-a'),
    );
    assert.ok(log.includes('host-b: moved guest-2 to host-a'));
    assert.ok(log.includes('host-b: cancelIncoming guest-3'));
    assert.ok(log.includes('host-a: announce guest-1') && log.includes('host-a: announce guest-2'));
    assert.equal(incoming.pendingMigration, undefined);
    assert.equal(a.state, 'active');
    assert.deepEqual(binding.log, []);
  });

  it('the last guest fails after an overlapped handover: earlier guests come back, the source registers again', async () => {
    const net = { ...NET, guests: ['guest-1', 'guest-2'] };
    const { world, binding, a, b, migrate } = await setup({ network: net });
    world.failNext.add('guest-2');
    const record = await migrate('make-before-break');
    assert.equal(record.failedPhase, 'hypervisor');
    assert.deepEqual([...world.where.values()], ['host-a', 'host-a']);
    assert.match(record.recovery!, /guest-1 sent back to host-a; host-a registered again/);
    assert.equal(b.state, 'standby');
    assert.equal(a.state, 'active');
    assert.equal(binding.coa, COA_A);
  });

  it('a guest that cannot be sent back is reported where it is, and the source undoes its prepare', async () => {
    const net = { ...NET, guests: ['guest-1', 'guest-2'] };
    const { world, peer, migrate } = await setup({ network: net });
    world.failNext.add('guest-2');
    const abort = peer.abort.bind(peer);
    peer.abort = async (req) => {
      world.failNext.add('guest-1');
      return abort(req);
    };
    const record = await migrate('make-before-break', { overlap: false });
    assert.equal(record.failedPhase, 'hypervisor');
    assert.equal(world.where.get('guest-1'), 'host-b');
    assert.equal(world.where.get('guest-2'), 'host-a');
    assert.match(
      record.recovery!,
      /send guest-1 back FAILED \(host-b could not send back guest-1: moving guest-1 failed/,
    );
    assert.match(record.recovery!, /guest-1 is still on host-b/);
    assert.ok(world.log.includes('host-a: cancelIncoming guest-1'));
    assert.ok(
      world.log.includes('host-b: cancelIncoming guest-2'),
      'the destination still undid its prepare',
    );
  });

  it('the destination refuses to send back guests of another migration or another network, changing nothing', async () => {
    const net = { ...NET, guests: ['guest-1', 'guest-2'] };
    const { world, incoming } = await setup({ network: net });
    world.where.set('guest-1', 'host-b');
    const prepare = {
      migrationId: 'mig-00000002',
      network: 'net1',
      source: 'host-a',
      procedure: 'make-before-break' as const,
      guests: ['guest-1', 'guest-2'],
    };
    await incoming.prepare(prepare);
    const abort = { migrationId: 'mig-00000002', network: 'net1', source: 'host-a', reason: 'test' };
    await assert.rejects(
      incoming.abort({ ...abort, migrationId: 'mig-00000003', sendBack: { 'guest-1': {} } }),
      /holds no migration mig-00000003 of net1/,
    );
    await assert.rejects(
      incoming.abort({ ...abort, sendBack: { 'guest-1': {}, 'guest-9': {} } }),
      /guest guest-9 is not in network net1/,
    );
    assert.equal(incoming.pendingMigration, 'mig-00000002', 'still prepared');
    assert.equal(world.where.get('guest-1'), 'host-b');
    assert.ok(!world.log.some((l) => l.includes('cancelIncoming')));
  });
});

describe('destination: guests that arrive without a handover notification', () => {
  const PREPARE = {
    migrationId: 'mig-00000042',
    network: 'net1',
    source: 'host-a',
    procedure: 'break-before-make' as const,
    guests: ['guest-1'],
  };
  function destination(graceMs: number) {
    const binding = new FakeBinding();
    const world = new FakeWorld();
    world.where.set('guest-1', 'host-a');
    const router = new FakeRouter(binding, COA_B);
    const incoming = new IncomingNetwork({
      host: 'host-b',
      network: NET,
      router,
      driver: new FakeDriver(world, 'host-b'),
      log: silentLogger(),
      now: () => performance.now(),
      orphanTakeover: { pollMs: 5, graceMs },
    });
    return { binding, world, router, incoming };
  }
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it('the source died after moving them: registered after the grace time; a late notification gets that outcome', async () => {
    const { binding, world, router, incoming } = destination(40);
    await incoming.prepare(PREPARE);
    await sleep(60);
    assert.deepEqual(router.calls, ['prepare'], 'nothing while the guests are still on the source');
    world.where.set('guest-1', 'host-b');
    await sleep(20);
    assert.deepEqual(router.calls, ['prepare'], 'the grace time is not over');
    await sleep(100);
    assert.deepEqual(router.calls, ['prepare', 'activate'], 'registered without a last sequence');
    assert.equal(binding.coa, COA_B);
    const late = await incoming.handover({
      ...PREPARE,
      procedure: 'break-before-make',
      hoa: NET.homeAddress,
      prefixes: [...NET.prefixes],
      lastSequence: 3,
      lifetimeRemaining: 0,
    });
    assert.equal(late.state, 'active');
    assert.deepEqual(router.calls, ['prepare', 'activate'], 'no second registration');
  });

  it('a notification or an abort in time ends the watch', async () => {
    for (const end of ['handover', 'abort'] as const) {
      const { world, router, incoming } = destination(30);
      await incoming.prepare(PREPARE);
      world.where.set('guest-1', 'host-b');
      if (end === 'abort') await incoming.abort({ ...PREPARE, reason: 'test' });
      else
        await incoming.handover({
          ...PREPARE,
          hoa: NET.homeAddress,
          prefixes: [...NET.prefixes],
          lastSequence: 3,
          lifetimeRemaining: 0,
        });
      await sleep(100);
      assert.deepEqual(router.calls, end === 'abort' ? ['prepare'] : ['prepare', 'activate 3'], end);
      incoming.close();
    }
  });
});
