// The etcd binding store (issue 16) against a real 3-member etcd cluster on loopback (Debian's etcd-server):
// every cache op round trip, load after a restart, the compare-and-swap between two stores, a failed
// transaction committing nothing, the watch, and losing one member of three. No root needed.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Binding } from '../src/homeagent/bcache.ts';
import { BindingConflictError, EtcdBindingStore, type StoreChange } from '../src/homeagent/etcdstore.ts';
import { ntpTimestamp } from '../src/protocol/auth.ts';
import { EtcdCluster, hasEtcd } from './helpers/etcd.ts';
import { skipUnless } from './helpers/requirements.ts';

function binding(i: number, over: Partial<Binding> = {}): Binding {
  return {
    hoa: `2001:db8:ffff::${(0x100 + i).toString(16)}`,
    coa: `2001:db8:a::${i + 2}`,
    prefixes: [`2001:db8:${(0x100 + i).toString(16)}::/64`],
    sequence: 10 + i,
    lifetimeSeconds: 400,
    expiresAt: 1_700_000_400_000 + i,
    mode: i % 2 === 0 ? 'explicit' : 'implicit',
    lastTimestamp: ntpTimestamp(1_700_000_000_123 + i),
    id: i + 1,
    registeredAt: 1_699_999_000_000,
    updatedAt: 1_700_000_000_000 + i,
    ...over,
  };
}

const put = (b: Binding) => ({ op: 'put' as const, binding: b });
const del = (hoa: string) => ({ op: 'delete' as const, hoa });

let cluster: EtcdCluster;
let n = 0;
const stores: EtcdBindingStore[] = [];
/** A store on its own prefix per test (`same` shares the previous one's), on all three members. */
function store(options: { same?: boolean; name?: string; maxTxnOps?: number } = {}): EtcdBindingStore {
  if (!options.same) n++;
  const s = new EtcdBindingStore({
    endpoints: cluster.endpoints,
    prefix: `/offlink-test/${n}/`,
    timeoutMs: 3000,
    ...(options.name ? { name: options.name } : {}),
    ...(options.maxTxnOps ? { maxTxnOps: options.maxTxnOps } : {}),
  });
  stores.push(s);
  return s;
}

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('EtcdBindingStore on a 3-member etcd cluster', {
  skip: skipUnless(hasEtcd(), 'etcd (apt-get install etcd-server)'),
}, () => {
  before(async () => {
    cluster = await EtcdCluster.start(3);
  });
  after(async () => {
    for (const s of stores) await s.close();
    await cluster?.stop();
  });

  test('round trip of every cache op kind, read back by a new store (restart)', async () => {
    const s1 = store();
    assert.deepEqual(await s1.load(), { bindings: [], timestamps: [] });
    await s1.write([put(binding(0)), put(binding(1)), put(binding(2)), put(binding(3))]);
    const moved = binding(1, {
      coa: '2001:db8:b::9',
      sequence: 11 + 1,
      lastTimestamp: ntpTimestamp(1_700_000_001_000),
    });
    const again = binding(3, { sequence: 20, id: 9, lastTimestamp: ntpTimestamp(1_700_000_002_000) });
    await s1.write([
      put(moved), // update in place
      del(binding(2).hoa), // deregistration: its replay timestamp stays
      del(binding(3).hoa), // delete then put in one write: a re-registration
      put(again),
    ]);
    const added = binding(4);
    await s1.write([put(added), del(added.hoa)]); // put then delete in one write: only replay state stays
    await s1.close();

    const s2 = store({ same: true });
    const { bindings, timestamps } = await s2.load();
    assert.deepEqual(bindings, [binding(0), moved, again]);
    assert.deepEqual(
      new Map(timestamps),
      new Map([
        [binding(0).hoa, binding(0).lastTimestamp],
        [moved.hoa, moved.lastTimestamp],
        [binding(2).hoa, binding(2).lastTimestamp],
        [again.hoa, again.lastTimestamp],
        [added.hoa, added.lastTimestamp],
      ]),
    );
  });

  test('a restarted store writes on top of what it loaded (its revisions are the stored ones)', async () => {
    const s1 = store();
    await s1.load();
    await s1.write([put(binding(0))]);
    await s1.close();
    const s2 = store({ same: true });
    await s2.load();
    await s2.write([put(binding(0, { sequence: 99 }))]);
    await s2.write([del(binding(0).hoa)]);
    assert.deepEqual((await store({ same: true }).load()).bindings, []);
  });

  test('compare-and-swap: a second store that did not see the first one’s write is refused, nothing applied', async () => {
    const a = store({ name: 'ha-a' });
    const b = store({ same: true, name: 'ha-b' });
    await a.load();
    await b.load();
    await a.write([put(binding(0, { sequence: 1 }))]);
    await b.load(); // both now at the same revision of binding 0
    await a.write([put(binding(0, { sequence: 2, coa: '2001:db8:a::aa' }))]);
    // b processed its BU against sequence 1: its write must not replace sequence 2.
    const stale = binding(0, { sequence: 2, coa: '2001:db8:b::bb' });
    const err = await b.write([put(stale)]).then(
      () => assert.fail('stale write committed'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof BindingConflictError);
    assert.equal(err.code, 'ERR_STORE_CONFLICT');
    assert.equal(err.current.length, 1);
    const current = err.current[0] as Extract<StoreChange, { op: 'put' }>;
    assert.equal(current.op, 'put');
    assert.equal(current.binding.coa, '2001:db8:a::aa', 'the conflict reports the stored binding');
    const stored = (await store({ same: true }).load()).bindings;
    assert.deepEqual(stored, [binding(0, { sequence: 2, coa: '2001:db8:a::aa' })]);
    // Once b has adopted what is stored, its next write goes through.
    b.adopt(err.current);
    await b.write([put(binding(0, { sequence: 3, coa: '2001:db8:b::bb' }))]);
    assert.equal((await store({ same: true }).load()).bindings[0]!.sequence, 3);
  });

  test('two stores racing on one home address: exactly one write commits', async () => {
    const a = store({ name: 'ha-a' });
    const b = store({ same: true, name: 'ha-b' });
    await a.load();
    await b.load();
    for (let round = 0; round < 10; round++) {
      const seq = 100 + round;
      const results = await Promise.allSettled([
        a.write([put(binding(0, { sequence: seq, coa: '2001:db8:a::1' }))]),
        b.write([put(binding(0, { sequence: seq, coa: '2001:db8:b::1' }))]),
      ]);
      const won = results.filter((r) => r.status === 'fulfilled').length;
      assert.equal(won, 1, `round ${round}: ${won} writes committed`);
      const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      assert.ok(lost.reason instanceof BindingConflictError);
      const winner = results[0]!.status === 'fulfilled' ? '2001:db8:a::1' : '2001:db8:b::1';
      const stored = (await store({ same: true }).load()).bindings;
      assert.deepEqual(
        stored.map((x) => [x.sequence, x.coa]),
        [[seq, winner]],
      );
      // The loser catches up as the daemon would (adopting what the conflict reported).
      (results[0]!.status === 'fulfilled' ? b : a).adopt(lost.reason.current);
    }
  });

  test('a failed transaction commits nothing: one stale home address refuses the whole write', async () => {
    const a = store({ name: 'ha-a' });
    const b = store({ same: true, name: 'ha-b' });
    await a.load();
    await b.load();
    await a.write([put(binding(0))]);
    await assert.rejects(
      b.write([put(binding(1)), put(binding(2)), put(binding(0, { sequence: 50 })), del(binding(3).hoa)]),
      BindingConflictError,
    );
    assert.deepEqual((await store({ same: true }).load()).bindings, [binding(0)]);
  });

  test('a write larger than one etcd transaction is refused before sending, nothing applied', async () => {
    const s = store({ maxTxnOps: 4 });
    await s.load();
    assert.equal(s.maxOpsPerWrite, 2);
    await assert.rejects(s.write([0, 1, 2, 3, 4].map((i) => put(binding(i)))), {
      code: 'ERR_STORE_TOO_LARGE',
    });
    assert.deepEqual((await store({ same: true }).load()).bindings, []);
  });

  test('watch: another store’s puts and deletes are reported, the watcher’s own writes are not', async () => {
    const a = store({ name: 'ha-a' });
    const b = store({ same: true, name: 'ha-b' });
    await a.load();
    await b.load();
    const seen: StoreChange[] = [];
    const stop = b.watch((changes) => seen.push(...changes));
    try {
      await b.write([put(binding(5))]); // b's own
      await a.write([put(binding(0)), put(binding(1))]);
      await a.write([del(binding(0).hoa)]);
      await until('three changes', () => seen.length >= 3);
      await new Promise((r) => setTimeout(r, 200)); // nothing more arrives (b's own write)
      assert.deepEqual(
        seen.map((c) => (c.op === 'put' ? ['put', c.binding.hoa] : ['delete', c.hoa, c.lastTimestamp])),
        [
          ['put', binding(0).hoa],
          ['put', binding(1).hoa],
          ['delete', binding(0).hoa, binding(0).lastTimestamp],
        ],
      );
      const put1 = seen[1] as Extract<StoreChange, { op: 'put' }>;
      assert.deepEqual(put1.binding, binding(1));
      // Adopting the watched changes lets b write on top of a's binding 1.
      b.adopt(seen);
      await b.write([put(binding(1, { sequence: 77 })), put(binding(0, { sequence: 78 }))]);
    } finally {
      stop();
    }
  });

  test('watch from a compacted revision ends with ERR_ETCD_COMPACTED; snapshot() then catches up', async () => {
    const a = store({ name: 'ha-a' });
    const b = store({ same: true, name: 'ha-b' });
    await a.load();
    await b.load();
    await a.write([put(binding(0))]);
    const { revision: before } = await b.snapshot();
    await a.write([put(binding(0, { sequence: 30 }))]);
    await a.write([put(binding(1))]);
    const { revision: now } = await b.snapshot();
    const res = await fetch(`${cluster.endpoints[0]}/v3/kv/compaction`, {
      method: 'POST',
      body: JSON.stringify({ revision: String(now), physical: true }),
    });
    assert.equal(res.status, 200);
    const errors: Error[] = [];
    const stop = b.watch(
      () => assert.fail('no events from a compacted revision'),
      (err) => errors.push(err),
      before,
    );
    try {
      await until('the watch reports the compaction', () => errors.length > 0);
      assert.equal((errors[0] as Error & { code?: string }).code, 'ERR_ETCD_COMPACTED');
      await new Promise((r) => setTimeout(r, 800)); // not re-opened: the same error would come again
      assert.equal(errors.length, 1);
    } finally {
      stop();
    }
    const snap = await b.snapshot();
    assert.deepEqual(
      snap.changes.map((c) => (c.op === 'put' ? [c.binding.hoa, c.binding.sequence, c.by] : [])),
      [
        [binding(0).hoa, 30, 'ha-a'],
        [binding(1).hoa, 11, 'ha-a'],
      ],
    );
    assert.equal(snap.revision, now);
    // snapshot() leaves the compared revisions alone: b still writes on top of what it loaded (none).
    assert.equal(b.revisionOf(binding(0).hoa), 0);
  });

  test('a hung member (SIGSTOP, first in the list): reads and commits go on through the others', async () => {
    const leader = await cluster.leader();
    const victim = (leader + 1) % 3;
    // The hung member first: every store starts there.
    const endpoints = [victim, (victim + 1) % 3, (victim + 2) % 3].map((i) => cluster.endpoints[i]!);
    const prefix = `/offlink-test/${++n}/`;
    const open = () => {
      const s = new EtcdBindingStore({ endpoints, prefix, timeoutMs: 4000 });
      stores.push(s);
      return s;
    };
    cluster.pauseMember(victim, true);
    try {
      const t0 = performance.now();
      const reader = open();
      await reader.load(); // a read: the next member as soon as the hung one times out (2 s)
      const loadMs = performance.now() - t0;
      const writer = open();
      const t1 = performance.now();
      await writer.write([put(binding(0))]); // a transaction: uncertain, then sent to the next member
      const writeMs = performance.now() - t1;
      assert.ok(loadMs < 3500, `load took ${loadMs.toFixed(0)} ms`);
      assert.ok(writeMs < 3500, `commit took ${writeMs.toFixed(0)} ms`);
      const t2 = performance.now();
      await writer.write([put(binding(0, { sequence: 99 }))]); // starts at a member that answers
      assert.ok(performance.now() - t2 < 1000, 'the next commit does not wait for the hung member');
      assert.deepEqual(
        (await open().load()).bindings.map((b) => b.sequence),
        [99],
      );
    } finally {
      cluster.pauseMember(victim, false);
      await cluster.healthy();
    }
  });

  for (const role of ['a follower', 'the leader'] as const) {
    test(`losing ${role} of three members: writes still commit and read back`, async () => {
      const s = store();
      await s.load();
      await s.write([put(binding(0))]);
      const leader = await cluster.leader();
      const victim = role === 'the leader' ? leader : (leader + 1) % 3;
      await cluster.killMember(victim);
      try {
        const t0 = performance.now();
        // Sent at once: if the leader went, this write waits out the election inside the store.
        await s.write([put(binding(0, { sequence: 60 })), put(binding(1))]);
        const firstMs = performance.now() - t0;
        const t1 = performance.now();
        await s.write([put(binding(2))]);
        const nextMs = performance.now() - t1;
        // A follower's loss costs nothing; the leader's one election (~1 s, etcd's default timeouts).
        const bound = role === 'the leader' ? 4500 : 500;
        assert.ok(firstMs < bound, `first commit with ${role} down took ${firstMs.toFixed(0)} ms`);
        assert.ok(nextMs < 500, `next commit took ${nextMs.toFixed(0)} ms`);
        const { bindings } = await store({ same: true }).load();
        assert.deepEqual(
          bindings.map((b) => [b.hoa, b.sequence]),
          [
            [binding(0).hoa, 60],
            [binding(1).hoa, 11],
            [binding(2).hoa, 12],
          ],
        );
      } finally {
        cluster.startMember(victim);
        await cluster.healthy();
      }
    });
  }
});
