import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, describe, test } from 'node:test';
import { pino } from 'pino';
import {
  type BuSpec,
  MrClient,
  makeBindingUpdate,
  type ReceivedBa,
} from '../../test/helpers/homeagent-mr.ts';
import { FakeClock } from '../clock.ts';
import type { BindingChange, HomeAgentDataplane, TunnelBinding } from '../dataplane/types.ts';
import { createLogger, type Logger, silentLogger } from '../log.ts';
import { BuFlag } from '../protocol/constants.ts';
import { decodeSignalingPacket } from '../protocol/packet.ts';
import type { SecurityAssociation } from '../protocol/types.ts';
import { UdpTransport } from '../signaling/udp.ts';
import type { CacheOp } from './bcache.ts';
import type { HomeAgentConfig } from './config.ts';
import { HomeAgent } from './daemon.ts';
import { PrefixTable } from './prefixtable.ts';
import { BindingStore, type BindingStoreLike, WorkerBindingStore } from './store.ts';

const HA = '2001:db8:ffff::1';
const HOA = '2001:db8:ffff::101';
const HOA2 = '2001:db8:ffff::102';
const SA: SecurityAssociation = { spi: 1001, key: Buffer.alloc(20, 0x11), algorithm: 'hmac-sha1' };
const SA2: SecurityAssociation = { spi: 1002, key: Buffer.alloc(32, 0x22), algorithm: 'hmac-sha256' };
const dir = mkdtempSync(join(tmpdir(), 'offlink-ha-daemon-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Records every call; `failNext` makes the next update throw. */
class RecordingDataplane implements HomeAgentDataplane {
  calls: string[] = [];
  updates: BindingChange[][] = [];
  reconciled: TunnelBinding[][] = [];
  failNext = false;
  async init() {
    this.calls.push('init');
  }
  async reconcile(bindings: readonly TunnelBinding[]) {
    this.calls.push('reconcile');
    this.reconciled.push([...bindings]);
  }
  async update(changes: readonly BindingChange[]) {
    this.calls.push('update');
    if (this.failNext) {
      this.failNext = false;
      throw new Error('ip: RTNETLINK answers: No such device');
    }
    this.updates.push([...changes]);
  }
  async flush() {
    this.calls.push('flush');
  }
}

class SpyStore implements BindingStoreLike {
  failNext = false;
  constructor(
    private readonly inner: BindingStoreLike,
    private readonly events: string[],
  ) {}
  load() {
    return this.inner.load();
  }
  write(ops: readonly CacheOp[]) {
    if (ops.length === 0) return;
    if (this.failNext) {
      this.failNext = false;
      throw new Error('SQLITE_FULL');
    }
    this.inner.write(ops);
    this.events.push('write');
  }
  close() {
    this.inner.close();
  }
}

/**
 * Commits only when the test says: each write waits in `held` until `release()` (committed to the inner
 * store, then resolved) or `fail()` (rejected, nothing committed), like a slow or failing fsync.
 */
class HeldStore implements BindingStoreLike {
  readonly held: { ops: CacheOp[]; release(): void; fail(): void }[] = [];
  private notify: (() => void) | undefined;
  private unheld = false;
  constructor(
    readonly inner: BindingStore,
    private readonly events: string[],
  ) {}
  load() {
    return this.inner.load();
  }
  write(ops: readonly CacheOp[]): Promise<void> | undefined {
    if (ops.length === 0) return;
    this.events.push('write');
    let settled = false;
    const p = new Promise<void>((resolve, reject) => {
      this.held.push({
        ops: [...ops],
        release: () => {
          if (settled) return;
          settled = true;
          this.inner.write(ops);
          this.events.push('commit');
          resolve();
        },
        fail: () => {
          if (settled) return;
          settled = true;
          this.events.push('fail');
          reject(new Error('SQLITE_IOERR_FSYNC'));
        },
      });
    });
    if (this.unheld) this.held.at(-1)!.release();
    this.notify?.();
    return p;
  }
  /** Commit everything held and whatever comes (a failed test must not leave the daemon waiting). */
  unhold() {
    this.unheld = true;
    for (const h of this.held) h.release();
  }
  /** The next held write (the n-th since the store was made, 0-based), once the daemon has made it. */
  async nth(n: number) {
    while (this.held.length <= n) await new Promise<void>((r) => (this.notify = r));
    return this.held[n]!;
  }
  close() {
    this.inner.close();
  }
}

class SpyTransport extends UdpTransport {
  constructor(private readonly events: string[]) {
    super();
  }
  override send(data: Uint8Array, address: string, port: number) {
    this.events.push('send');
    return super.send(data, address, port);
  }
}

function config(database: string, over: Partial<HomeAgentConfig['homeAgent']> = {}): HomeAgentConfig {
  return {
    homeAgent: {
      address: HA,
      uplink: 'ha-mr',
      listen: { address: '::1', port: 0 },
      status: { host: '127.0.0.1', port: 0 },
      database,
      runDir: '/run/offlink',
      dataplane: { backend: 'auto', table: 200, mss: 1400 },
      maxLifetimeSeconds: 3600,
      refreshAdviceSeconds: undefined,
      replayWindowSeconds: 7,
      retainOnStop: true,
      ...over,
    },
    mobileRouters: [
      { name: 'mr1', homeAddress: HOA, prefixes: ['2001:db8:100::/64', '2001:db8:101::/64'], ...SA },
      { name: 'mr2', homeAddress: HOA2, prefixes: ['2001:db8:200::/64'], ...SA2 },
    ],
  };
}

interface Rig {
  ha: HomeAgent;
  clock: FakeClock;
  dp: RecordingDataplane;
  mr: MrClient;
  events: string[];
  store: BindingStoreLike;
  bu(spec: Partial<BuSpec> & { sequence: number }): Promise<ReceivedBa>;
}

const rigs: Rig[] = [];
afterEach(async () => {
  for (const r of rigs.splice(0)) {
    r.mr.close();
    if (r.store instanceof HeldStore) r.store.unhold();
    await r.ha.stop();
  }
});

async function rig(
  options: {
    database?: string;
    clock?: FakeClock;
    dp?: RecordingDataplane;
    over?: Partial<HomeAgentConfig['homeAgent']>;
    logger?: Logger;
    /** Store and the event list it records into (default: a SpyStore on `database`). */
    store?: { store: BindingStoreLike; events: string[] };
  } = {},
): Promise<Rig> {
  const clock = options.clock ?? new FakeClock(Date.now());
  const dp = options.dp ?? new RecordingDataplane();
  const events: string[] = options.store?.events ?? [];
  const database = options.database ?? ':memory:';
  const store = options.store?.store ?? new SpyStore(new BindingStore(database), events);
  const ha = new HomeAgent(
    {
      clock,
      logger:
        options.logger ?? (process.env.DEBUG_HA ? createLogger('ha', { level: 'debug' }) : silentLogger()),
      dataplane: dp,
      transport: new SpyTransport(events),
      store,
    },
    config(database, options.over),
  );
  await ha.start();
  const mr = new MrClient({ coa: '::1', hoa: HOA, ha: HA, sa: SA, haTarget: '::1', haPort: ha.port });
  await mr.open('::1');
  let stamp = 0;
  const r: Rig = {
    ha,
    clock,
    dp,
    mr,
    events,
    store,
    // Distinct replay timestamps even while the fake clock stands still (microsecond steps).
    bu: (spec) =>
      mr.bu({ timestampMs: clock.now() + ++stamp / 1000, prefixes: ['2001:db8:100::/64'], ...spec }),
  };
  rigs.push(r);
  return r;
}

/** Another MR socket on the rig's HA (a second HoA, or the same HoA from another port). */
async function client(r: Rig, hoa: string, sa: SecurityAssociation): Promise<MrClient> {
  const mr = new MrClient({ coa: '::1', hoa, ha: HA, sa, haTarget: '::1', haPort: r.ha.port });
  await mr.open('::1');
  clients.push(mr);
  return mr;
}
const clients: MrClient[] = [];
afterEach(() => {
  for (const client of clients.splice(0)) client.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; !cond(); i++) {
    if (i > 200) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

function heldRig(over: Parameters<typeof rig>[0] = {}): Promise<Rig & { held: HeldStore }> {
  const events: string[] = [];
  const held = new HeldStore(new BindingStore(over.database ?? ':memory:'), events);
  return rig({ ...over, store: { store: held, events } }).then((r) => Object.assign(r, { held }));
}

async function counter(ha: HomeAgent, name: string): Promise<number> {
  const m = await ha.metrics.registry.getSingleMetricAsString(name);
  return Number(/ (\d+)$/m.exec(m)?.[1]);
}

// biome-ignore lint/suspicious/noExplicitAny: JSON from /status, checked field by field
async function getJson(url: string): Promise<any> {
  const res = await fetch(url);
  assert.equal(res.status, 200);
  return res.json();
}

describe('HomeAgent daemon', () => {
  test('registers over real UDP: signed BA, data plane set, /status and /metrics', async () => {
    const r = await rig();
    assert.deepEqual(r.dp.calls, ['init', 'reconcile']);
    const { ba, authentic } = await r.bu({ sequence: 1, lifetime: 25 });
    assert.equal(ba.status, 0);
    assert.equal(ba.lifetime, 25);
    assert.ok(authentic, 'BA signed with the MR SA over (CoA, HoA)');
    assert.deepEqual(r.dp.updates, [
      [{ op: 'set', binding: { hoa: HOA, coa: '::1', prefixes: ['2001:db8:100::/64'], id: 1 } }],
    ]);
    const status = await getJson(`${r.ha.statusUrl}/status`);
    assert.equal(status.bindings.length, 1);
    assert.equal(status.bindings[0].hoa, HOA);
    assert.equal(status.bindings[0].mobileRouter, 'mr1');
    assert.equal(status.bindings[0].remainingSeconds, 100);
    const metrics = await (await fetch(`${r.ha.statusUrl}/metrics`)).text();
    assert.match(metrics, /offlink_ha_bindings 1/);
    assert.match(metrics, /offlink_ha_binding_updates_total\{status="0",name="ACCEPTED"\} 1/);
    assert.match(metrics, /offlink_ha_ba_latency_seconds_count 1/);
  });

  test('metrics: the longest event-loop hold-up since the previous scrape', async () => {
    const r = await rig();
    const scrape = async () => {
      const text = await (await fetch(`${r.ha.statusUrl}/metrics`)).text();
      return Number(/^offlink_ha_event_loop_delay_max_seconds (\S+)$/m.exec(text)?.[1]);
    };
    await scrape(); // resets
    const until = performance.now() + 80;
    while (performance.now() < until) {} // the daemon runs in this thread: its loop is held up 80 ms
    await new Promise((res) => setTimeout(res, 20));
    const held = await scrape();
    assert.ok(held >= 0.07 && held < 5, `held up ${held} s`);
    await new Promise((res) => setTimeout(res, 30));
    assert.ok((await scrape()) < 0.07, 'reset by the previous scrape');
  });

  test('the accepting BA is sent only after the store write', async () => {
    const r = await rig();
    await r.bu({ sequence: 1 });
    assert.deepEqual(r.events, ['write', 'send']);
    // A failed write: nothing cached, nothing installed, BA 130.
    (r.store as SpyStore).failNext = true;
    r.mr.opts.hoa = HOA2;
    r.mr.opts.sa = SA2;
    const { ba } = await r.bu({ sequence: 1, hoa: HOA2, sa: SA2, prefixes: ['2001:db8:200::/64'] });
    assert.equal(ba.status, 130);
    assert.equal(r.ha.cache.get(HOA2), undefined);
    assert.equal(r.dp.updates.length, 1);
  });

  test('expiry removes the binding and its routes', async () => {
    const r = await rig();
    await r.bu({ sequence: 1, lifetime: 2 });
    r.clock.advance(7999);
    await r.ha.idle();
    assert.ok(r.ha.cache.get(HOA));
    r.clock.advance(1);
    await r.ha.idle();
    assert.equal(r.ha.cache.get(HOA), undefined);
    assert.deepEqual(r.dp.updates.at(-1), [
      { op: 'delete', binding: { hoa: HOA, coa: '::1', prefixes: ['2001:db8:100::/64'], id: 1 } },
    ]);
    assert.equal((await r.store.load()).bindings.length, 0);
  });

  test('refresh postpones expiry', async () => {
    const r = await rig();
    await r.bu({ sequence: 1, lifetime: 2 });
    r.clock.advance(6000);
    await r.bu({ sequence: 2, lifetime: 2 });
    r.clock.advance(6000);
    await r.ha.idle();
    assert.ok(r.ha.cache.get(HOA), 'still there 12 s after the first BU');
    r.clock.advance(2000);
    await r.ha.idle();
    assert.equal(r.ha.cache.get(HOA), undefined);
  });

  test('data plane failure: 143, binding rolled back, kernel reconciled', async () => {
    const r = await rig();
    await r.bu({ sequence: 1 });
    r.dp.failNext = true;
    const before = r.ha.cache.get(HOA);
    const { ba } = await r.bu({ sequence: 2, prefixes: ['2001:db8:100::/64', '2001:db8:101::/64'] });
    assert.equal(ba.status, 143);
    assert.deepEqual(r.ha.cache.get(HOA), before);
    assert.deepEqual((await r.store.load()).bindings, [before]);
    assert.equal(r.dp.calls.at(-1), 'reconcile');
    // The MR goes on with the next sequence.
    assert.equal((await r.bu({ sequence: 3 })).ba.status, 0);
  });

  test('malformed and mutated packets: counted exactly, the binding survives', async () => {
    const r = await rig();
    const ts = r.clock.now() + 0.5;
    await r.bu({ sequence: 1, timestampMs: ts });
    // Mutations of the very BU that registered: whatever still decodes is a replay (144) or fails auth.
    const good = makeBindingUpdate({
      hoa: HOA,
      ha: HA,
      coa: '::1',
      sa: SA,
      sequence: 1,
      timestampMs: ts,
      prefixes: ['2001:db8:100::/64'],
    });
    let expectMalformed = 0;
    let sent = 0;
    const received0 = await counter(r.ha, 'offlink_ha_datagrams_total');
    for (let i = 0; i <= 500; i++) {
      let bad = Buffer.from(good);
      bad[(i * 7) % bad.length]! ^= 1 + (i % 255);
      if (i % 5 === 0) bad = bad.subarray(0, i % 60);
      try {
        decodeSignalingPacket(bad);
      } catch {
        expectMalformed++;
      }
      await r.mr.send(bad);
      sent++;
      // Paced, so the loopback socket buffer never overflows and every datagram is counted.
      if (sent % 50 === 0 || i === 500) {
        for (
          let w = 0;
          w < 100 && (await counter(r.ha, 'offlink_ha_datagrams_total')) - received0 < sent;
          w++
        ) {
          await new Promise((res) => setTimeout(res, 5));
        }
      }
    }
    await r.ha.idle();
    assert.equal((await counter(r.ha, 'offlink_ha_datagrams_total')) - received0, sent);
    assert.equal(await counter(r.ha, 'offlink_ha_malformed_packets_total'), expectMalformed);
    assert.ok(expectMalformed > 100);
    assert.equal(r.ha.cache.get(HOA)!.sequence, 1);
    assert.equal(r.ha.cache.get(HOA)!.coa, '::1');
    assert.equal(r.ha.cache.size, 1);
  });

  test('restart: stored bindings are reconciled before serving; expired ones removed', async () => {
    const database = join(dir, 'restart.sqlite');
    const clock = new FakeClock(Date.now());
    const r1 = await rig({ database, clock });
    await r1.bu({ sequence: 1, lifetime: 25 });
    r1.mr.opts.hoa = HOA2;
    r1.mr.opts.sa = SA2;
    await r1.bu({ sequence: 1, lifetime: 2, hoa: HOA2, sa: SA2, prefixes: ['2001:db8:200::/64'] });
    rigs.splice(rigs.indexOf(r1), 1);
    r1.mr.close();
    await r1.ha.stop();
    assert.ok(!r1.dp.calls.includes('flush'), 'retainOnStop leaves the kernel alone');

    clock.advance(10_000); // HOA2 expired while down
    const dp = new RecordingDataplane();
    const r2 = await rig({ database, clock, dp });
    assert.deepEqual(dp.calls, ['init', 'reconcile']);
    assert.deepEqual(dp.reconciled[0], [{ hoa: HOA, coa: '::1', prefixes: ['2001:db8:100::/64'], id: 1 }]);
    assert.equal(r2.ha.cache.size, 1);
    // The replay and sequence state came back too.
    assert.equal((await r2.bu({ sequence: 1 })).ba.status, 135);
    assert.equal((await r2.bu({ sequence: 2 })).ba.status, 0);
  });

  test('restart: a dual-stack binding (an IPv4 prefix beside the MNP) is kept, not dropped as unauthorized', async () => {
    // With store: etcd a drop at start deletes the binding for the whole cluster: a restarted HA of a
    // dual-stack lab took the other HA's forwarding with it.
    const database = join(dir, 'restart-v4.sqlite');
    const clock = new FakeClock(Date.now());
    const store = new BindingStore(database);
    const t = clock.now();
    const binding = {
      hoa: HOA,
      coa: '::1',
      prefixes: ['2001:db8:100::/64', '10.1.0.0/24'],
      sequence: 7,
      lifetimeSeconds: 600,
      expiresAt: t + 600_000,
      mode: 'explicit' as const,
      lastTimestamp: 1n,
      id: 1,
      registeredAt: t,
      updatedAt: t,
    };
    store.write([{ op: 'put', binding }]);
    store.close();
    const v4 = config(database).mobileRouters.map((m) =>
      m.homeAddress === HOA ? { ...m, prefixes: [...m.prefixes, '10.1.0.0/24'] } : m,
    );
    const dp = new RecordingDataplane();
    const ha = new HomeAgent(
      {
        clock,
        logger: silentLogger(),
        dataplane: dp,
        transport: new SpyTransport([]),
        store: new BindingStore(database),
      },
      { ...config(database), mobileRouters: v4 },
    );
    await ha.start();
    try {
      assert.equal(ha.cache.size, 1, 'kept');
      assert.deepEqual(dp.reconciled[0]?.[0]?.prefixes, ['2001:db8:100::/64', '10.1.0.0/24']);
    } finally {
      await ha.stop();
    }
  });

  test('retainOnStop: false flushes the data plane on stop', async () => {
    const r = await rig({ over: { retainOnStop: false } });
    await r.ha.stop();
    assert.equal(r.dp.calls.at(-1), 'flush');
  });

  test('unauthenticated BU: unsigned 146, nothing changes', async () => {
    const r = await rig();
    await r.bu({ sequence: 1 });
    const res = await r.bu({
      sequence: 2,
      signWith: { ...SA, key: Buffer.alloc(20, 7) },
      flags: BuFlag.A | BuFlag.H | BuFlag.R,
    });
    assert.equal(res.ba.status, 146);
    assert.equal(res.authentic, false);
    assert.deepEqual(
      res.ba.options.filter((option) => option.type !== 'padN' && option.type !== 'pad1'),
      [],
    );
    assert.equal(r.ha.cache.get(HOA)!.sequence, 1);
    const m = await r.ha.metrics.registry.getSingleMetricAsString('offlink_ha_auth_failures_total');
    assert.match(m, / 1$/m);
  });

  test('an MNP with prefix length 129: signed BA 141 to its MR, unsigned 146 when forged; nothing changes', async () => {
    const r = await rig();
    await r.bu({ sequence: 1 });
    const before = r.ha.cache.get(HOA);
    const calls = r.dp.calls.length;
    const invalid = await r.bu({ sequence: 2, prefixes: ['2001:db8:100::/129'] });
    assert.equal(invalid.ba.status, 141);
    assert.equal(invalid.authentic, true);
    assert.equal(invalid.ba.sequence, 2);
    const forged = await r.bu({
      sequence: 3,
      prefixes: ['2001:db8:100::/129'],
      signWith: { ...SA, key: Buffer.alloc(20, 7) },
    });
    assert.equal(forged.ba.status, 146);
    assert.equal(forged.authentic, false);
    assert.deepEqual(r.ha.cache.get(HOA), before);
    assert.equal(r.dp.calls.length, calls);
    assert.equal(await counter(r.ha, 'offlink_ha_malformed_packets_total'), 2);
    // neither consumed the sequence number or the replay timestamp: the next genuine BU is accepted
    assert.equal((await r.bu({ sequence: 2 })).ba.status, 0);
  });
});

describe('HomeAgent commit path (durability order)', () => {
  const P1 = ['2001:db8:100::/64'];
  const P2 = ['2001:db8:200::/64'];

  test('an accepting BA waits for its commit, however long the commit takes', async () => {
    const r = await heldRig();
    let answered = false;
    const pending = r.bu({ sequence: 1 }).finally(() => (answered = true));
    const commit = await r.held.nth(0);
    await sleep(300);
    assert.equal(answered, false, 'no BA while the commit is held');
    assert.deepEqual(r.events, ['write']);
    assert.deepEqual(r.dp.updates, [], 'no routes before the commit either');
    commit.release();
    const { ba } = await pending;
    assert.equal(ba.status, 0);
    assert.deepEqual(r.events, ['write', 'commit', 'send']);
    assert.equal(r.held.inner.load().bindings[0]!.sequence, 1);
  });

  test('a failed commit: BA 130, nothing cached, installed or stored', async () => {
    const r = await heldRig();
    const pending = r.bu({ sequence: 1 });
    (await r.held.nth(0)).fail();
    const { ba, authentic } = await pending;
    assert.equal(ba.status, 130);
    assert.ok(authentic);
    assert.deepEqual(r.events, ['write', 'fail', 'send']);
    assert.equal(r.ha.cache.get(HOA), undefined);
    assert.deepEqual(r.dp.updates, []);
    assert.deepEqual(r.held.inner.load().bindings, []);
    // The store recovers: the MR's next BU is accepted.
    const next = r.bu({ sequence: 2 });
    (await r.held.nth(1)).release();
    assert.equal((await next).ba.status, 0);
  });

  test('while a commit is in flight, later BUs are processed and commit after it, in order', async () => {
    const r = await heldRig();
    const register = r.bu({ sequence: 1 });
    (await r.held.nth(0)).release();
    assert.equal((await register).ba.status, 0);

    // A refresh (no data plane change) commits; meanwhile the same MR (another socket) and a second MR.
    const refresh = r.bu({ sequence: 2 });
    const first = await r.held.nth(1);
    const again = (await client(r, HOA, SA)).bu({
      sequence: 3,
      timestampMs: r.clock.now() + 0.5,
      prefixes: P1,
    });
    const other = (await client(r, HOA2, SA2)).bu({ sequence: 1, timestampMs: r.clock.now(), prefixes: P2 });
    await until('both processed', () => r.ha.cache.get(HOA)?.sequence === 3 && !!r.ha.cache.get(HOA2));
    assert.equal(r.held.held.length, 2, 'the next group is not submitted while the first commits');
    assert.equal(r.held.inner.load().bindings[0]!.sequence, 1, 'nothing of them on disk yet');

    first.release();
    assert.equal((await refresh).ba.status, 0);
    const second = await r.held.nth(2);
    assert.deepEqual(
      second.ops.map((op) => (op.op === 'put' ? [op.binding.hoa, op.binding.sequence] : op)),
      [
        [HOA, 3],
        [HOA2, 1],
      ],
    );
    await sleep(100);
    assert.equal(r.events.filter((e) => e === 'send').length, 2, 'their BAs wait for their own commit');
    second.release();
    assert.equal((await again).ba.status, 0);
    assert.equal((await other).ba.status, 0);
    // The finished group's BA went out after the next group's commit had started.
    assert.deepEqual(r.events.slice(3), ['write', 'commit', 'write', 'send', 'commit', 'send', 'send']);
    assert.deepEqual(
      r.held.inner.load().bindings.map((b) => [b.hoa, b.sequence]),
      [
        [HOA, 3],
        [HOA2, 1],
      ],
    );
  });

  test('a failed commit also fails what was processed on top of it', async () => {
    const r = await heldRig();
    const register = r.bu({ sequence: 1 });
    (await r.held.nth(0)).release();
    await register;
    const before = r.ha.cache.get(HOA);

    const refresh = r.bu({ sequence: 2 });
    const first = await r.held.nth(1);
    const other = (await client(r, HOA2, SA2)).bu({ sequence: 1, timestampMs: r.clock.now(), prefixes: P2 });
    await until('processed', () => !!r.ha.cache.get(HOA2));
    first.fail();
    assert.equal((await refresh).ba.status, 130);
    assert.equal((await other).ba.status, 130);
    assert.equal(r.held.held.length, 2, 'the group on top was never submitted');
    assert.deepEqual(r.ha.cache.get(HOA), before);
    assert.equal(r.ha.cache.get(HOA2), undefined);
    assert.equal(r.dp.updates.length, 1, 'only the first registration was installed');
    assert.deepEqual(r.held.inner.load().bindings, [before]);
  });

  test('registrations arriving together share one group: one commit, one data plane update', async () => {
    const r = await heldRig();
    const [a, b] = [await client(r, HOA, SA), await client(r, HOA2, SA2)];
    const ts = r.clock.now();
    const both = Promise.all([
      a.bu({ sequence: 1, timestampMs: ts, prefixes: P1 }),
      b.bu({ sequence: 1, timestampMs: ts, prefixes: P2 }),
    ]);
    const commit = await r.held.nth(0);
    assert.equal(commit.ops.length, 2);
    commit.release();
    assert.deepEqual(
      (await both).map((x) => x.ba.status),
      [0, 0],
    );
    assert.equal(r.dp.updates.length, 1);
    assert.equal(r.dp.updates[0]!.length, 2);
  });

  test('a group with data plane changes is a barrier: nothing is processed on top until its BAs are out', async () => {
    const r = await heldRig();
    r.dp.failNext = true;
    const register = r.bu({ sequence: 1 });
    const first = await r.held.nth(0);
    const other = (await client(r, HOA2, SA2)).bu({ sequence: 1, timestampMs: r.clock.now(), prefixes: P2 });
    await sleep(100);
    assert.equal(r.ha.cache.get(HOA2), undefined, 'not processed while the registration commits');
    first.release(); // committed, then the data plane fails: rolled back, 143
    const undo = await r.held.nth(1); // the rollback's own commit, before the 143
    assert.deepEqual(undo.ops, [{ op: 'delete', hoa: HOA }]);
    undo.release();
    assert.equal((await register).ba.status, 143);
    (await r.held.nth(2)).release(); // the second MR, processed only now against the rolled-back cache
    assert.equal((await other).ba.status, 0);
    assert.equal(r.ha.cache.get(HOA), undefined);
    assert.deepEqual(
      r.held.inner.load().bindings.map((b) => b.hoa),
      [HOA2],
    );
  });

  test('stop() finishes the commit in flight and answers it before it returns', async () => {
    const database = join(dir, 'stop.sqlite');
    const r = await heldRig({ database });
    const pending = r.bu({ sequence: 1 });
    const commit = await r.held.nth(0);
    let stopped = false;
    const stopping = r.ha.stop().then(() => (stopped = true));
    await sleep(200);
    assert.equal(stopped, false);
    commit.release();
    assert.equal((await pending).ba.status, 0);
    await stopping;
    const reader = new BindingStore(database);
    assert.equal(reader.load().bindings.length, 1);
    reader.close();
  });

  test('committing in a worker thread (OFFLINK_HA_COMMIT_THREAD=1): the cache survives a restart', async () => {
    const database = join(dir, 'worker.sqlite');
    const clock = new FakeClock(Date.now());
    const make = () =>
      new HomeAgent(
        {
          clock,
          logger: silentLogger(),
          dataplane: new RecordingDataplane(),
          store: new WorkerBindingStore(database),
        },
        config(database),
      );
    const ha = make();
    await ha.start();
    const mr = new MrClient({ coa: '::1', hoa: HOA, ha: HA, sa: SA, haTarget: '::1', haPort: ha.port });
    await mr.open('::1');
    clients.push(mr);
    const ts = clock.now();
    assert.equal((await mr.bu({ sequence: 1, timestampMs: ts, prefixes: P1 })).ba.status, 0);
    // Answered, so durable: another connection sees it before the HA stops.
    const reader = new BindingStore(database);
    assert.equal(reader.load().bindings[0]?.sequence, 1);
    reader.close();
    const stopping = ha.stop();
    await stopping;
    const ha2 = make();
    await ha2.start();
    assert.equal(ha2.cache.get(HOA)?.sequence, 1);
    mr.opts.haPort = ha2.port;
    assert.equal((await mr.bu({ sequence: 2, timestampMs: ts + 1, prefixes: P1 })).ba.status, 0);
    await ha2.stop();
  });
});

describe('HomeAgent reload (SIGHUP)', () => {
  const reloaded = (
    over: Partial<HomeAgentConfig['homeAgent']>,
    mobileRouters: HomeAgentConfig['mobileRouters'],
  ) => {
    const next = { ...config(':memory:', over), mobileRouters };
    return { config: next, table: new PrefixTable(next.mobileRouters) };
  };
  const mr1 = config(':memory:').mobileRouters[0]!;
  const SA1_NEW: SecurityAssociation = { spi: 1011, key: Buffer.alloc(20, 0x33), algorithm: 'hmac-sha1' };

  test('a removed MR loses its binding; a rotated key keeps the binding untouched and signs from now on', async () => {
    const r = await rig();
    assert.equal((await r.bu({ sequence: 1 })).ba.status, 0);
    const mr2 = await client(r, HOA2, SA2);
    const at = r.clock.now();
    assert.equal(
      (await mr2.bu({ sequence: 1, timestampMs: at, prefixes: ['2001:db8:200::/64'] })).ba.status,
      0,
    );
    const before = r.ha.cache.get(HOA);
    const updates = r.dp.updates.length;

    const result = await r.ha.reload(reloaded({}, [{ ...mr1, ...SA1_NEW }]));

    assert.deepEqual(result, { mobileRouters: 1, removed: 1, kept: 1 });
    assert.equal(r.ha.cache.get(HOA2), undefined, "mr2's binding removed");
    assert.deepEqual(r.ha.cache.get(HOA), before, "mr1's binding untouched");
    assert.deepEqual(r.dp.updates.slice(updates), [
      [{ op: 'delete', binding: { hoa: HOA2, coa: '::1', prefixes: ['2001:db8:200::/64'], id: 2 } }],
    ]);
    assert.deepEqual(
      (await r.store.load()).bindings.map((b) => b.hoa),
      [HOA],
    );
    assert.equal(await counter(r.ha, 'offlink_ha_config_reloads_total'), 1);
    // The old key is refused, the new one accepted.
    assert.equal((await r.bu({ sequence: 2 })).ba.status, 146);
    assert.equal((await r.bu({ sequence: 2, sa: SA1_NEW })).ba.status, 0);
  });

  test('a prefix taken from an MR removes its binding; lifetimes apply from the next BU', async () => {
    const r = await rig();
    assert.equal((await r.bu({ sequence: 1, prefixes: ['2001:db8:101::/64'] })).ba.status, 0);
    const result = await r.ha.reload(
      reloaded({ maxLifetimeSeconds: 8 }, [{ ...mr1, prefixes: ['2001:db8:100::/64'] }]),
    );
    assert.deepEqual(result, { mobileRouters: 1, removed: 1, kept: 0 });
    const { ba } = await r.bu({ sequence: 2, lifetime: 100 });
    assert.equal(ba.status, 0);
    assert.equal(ba.lifetime, 2, 'lifetime capped by the reloaded maxLifetimeSeconds (8 s = 2 units)');
  });

  test('a setting only a restart changes is refused, naming it, and nothing changes', async () => {
    const r = await rig();
    assert.equal((await r.bu({ sequence: 1 })).ba.status, 0);
    await assert.rejects(
      r.ha.reload(reloaded({ address: '2001:db8:ffff::9', uplink: 'other0' }, [])),
      (err: Error & { code?: string }) =>
        err.code === 'ERR_RELOAD' && /homeAgent\.address, homeAgent\.uplink changed/.test(err.message),
    );
    assert.ok(r.ha.cache.get(HOA), 'binding kept');
    assert.equal((await r.bu({ sequence: 2 })).ba.status, 0, 'the old MRs and keys still apply');
    assert.equal(await counter(r.ha, 'offlink_ha_config_reloads_total'), 0);
  });
});

describe('HomeAgent logs', () => {
  /** A debug-level logger whose lines the test reads as [level name, msg]. */
  function captured(): { logger: Logger; lines: Array<Record<string, unknown>>; seen(): string[] } {
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s)) });
    const names: Record<number, string> = { 20: 'debug', 30: 'info', 40: 'warn', 50: 'error' };
    const seen = () =>
      lines
        .splice(0)
        .map(
          (l) =>
            `${names[l['level'] as number]} ${l['msg']}${l['suppressed'] ? ` (${l['suppressed']} suppressed)` : ''}`,
        );
    return { logger, lines, seen };
  }

  test('state changes at info, refreshes at debug', async () => {
    const log = captured();
    const r = await rig({ logger: log.logger });
    log.seen();
    await r.bu({ sequence: 1, lifetime: 2 });
    assert.deepEqual(log.seen(), ['info binding register']);
    await r.bu({ sequence: 2, lifetime: 2 });
    await r.bu({ sequence: 3, lifetime: 2 });
    assert.deepEqual(log.seen(), ['debug binding refresh', 'debug binding refresh']);
    await r.bu({ sequence: 4, lifetime: 2, prefixes: ['2001:db8:100::/64', '2001:db8:101::/64'] });
    assert.deepEqual(log.seen(), ['info binding update'], 'a prefix change is a state change');
    await r.bu({ sequence: 5, lifetime: 0 });
    assert.deepEqual(log.seen(), ['info binding deregister']);
    await r.bu({ sequence: 6, lifetime: 2 });
    r.clock.advance(8000);
    await r.ha.idle();
    assert.deepEqual(log.seen(), ['info binding register', 'info binding expired']);
  });

  test('rejections are warnings, at most 20 a second per status, then a count of those suppressed', async () => {
    const log = captured();
    const r = await rig({ logger: log.logger });
    await r.bu({ sequence: 1 });
    log.seen();
    const forged = { signWith: { ...SA, key: Buffer.alloc(20, 7) }, flags: BuFlag.A | BuFlag.H | BuFlag.R };
    // Answers to forged BUs are rate-limited too (50 a second): send 30, which all get an answer.
    for (let i = 0; i < 30; i++) await r.bu({ sequence: 2 + i, ...forged });
    const stale = await r.bu({ sequence: 1 }); // 135: another status, a budget of its own
    assert.equal(stale.ba.status, 135);
    const flood = log.seen();
    assert.deepEqual(flood, [
      ...Array(20).fill('warn binding update rejected'),
      'warn binding update rejected',
    ]);
    r.clock.advance(1000);
    await r.bu({ sequence: 40, ...forged });
    assert.deepEqual(log.seen(), ['warn binding update rejected (10 suppressed)']);
  });

  test('malformed packets: rate-limited warnings', async () => {
    const log = captured();
    const r = await rig({ logger: log.logger });
    log.seen();
    for (let i = 0; i < 50; i++) await r.mr.send(Uint8Array.from([0x60, 0, 0, 0, 0, 8, 135, 64]));
    for (let i = 0; (await counter(r.ha, 'offlink_ha_malformed_packets_total')) < 50; i++) {
      if (i > 200) throw new Error('the HA did not count 50 malformed packets');
      await sleep(5);
    }
    assert.deepEqual(log.seen(), Array(20).fill('warn malformed packet'));
  });
});

describe('HomeAgent metrics endpoint', () => {
  test('unsigned /metrics and /healthz: 503 until the store is open and the data plane initialised', async () => {
    let release!: () => void;
    class SlowDataplane extends RecordingDataplane {
      override async init() {
        await new Promise<void>((r) => (release = r));
        await super.init();
      }
    }
    const ha = new HomeAgent(
      { clock: new FakeClock(), logger: silentLogger(), dataplane: new SlowDataplane() },
      config(':memory:', { metrics: { host: '::1', port: 0 } }),
    );
    const starting = ha.start();
    try {
      await until('the exporter', () => ha.metricsUrl !== undefined && release !== undefined);
      let res = await fetch(`${ha.metricsUrl}/healthz`);
      assert.equal(res.status, 503);
      assert.deepEqual(await res.json(), {
        status: 'unavailable',
        state: 'starting',
        store: 'open',
        dataplane: 'not initialised',
        bindings: 0,
      });
      release();
      await starting;
      res = await fetch(`${ha.metricsUrl}/healthz`);
      assert.equal(res.status, 200);
      assert.equal(((await res.json()) as { status: string }).status, 'ok');
      const text = await (await fetch(`${ha.metricsUrl}/metrics`)).text();
      assert.match(text, /^offlink_ha_bindings 0$/m);
    } finally {
      // A failed assertion must not leave start() waiting on the data plane.
      for (let i = 0; i < 100 && release === undefined; i++) await sleep(10);
      release?.();
      await starting.catch(() => {});
      await ha.stop();
    }
    assert.equal(ha.metricsUrl, undefined, 'closed on stop');
  });
});
