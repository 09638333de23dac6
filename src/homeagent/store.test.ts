import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ntpTimestamp } from '../protocol/auth.ts';
import type { Binding, CacheOp } from './bcache.ts';
import { BindingStore, WorkerBindingStore } from './store.ts';

const dir = mkdtempSync(join(tmpdir(), 'offlink-ha-store-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function binding(i: number, over: Partial<Binding> = {}): Binding {
  return {
    hoa: `2001:db8:ffff::${(0x100 + i).toString(16)}`,
    coa: `2001:db8:a::${i + 2}`,
    prefixes: [`2001:db8:${(0x100 + i).toString(16)}::/64`, `2001:db8:${(0x1100 + i).toString(16)}::/64`],
    sequence: 65535 - i,
    lifetimeSeconds: 400,
    expiresAt: 1_700_000_400_000 + i,
    mode: i % 2 === 0 ? 'explicit' : 'implicit',
    // Top bit set: the current NTP era does not fit a signed 64-bit column.
    lastTimestamp: ntpTimestamp(1_700_000_000_123 + i),
    id: i + 1,
    registeredAt: 1_699_999_000_000,
    updatedAt: 1_700_000_000_000 + i,
    ...over,
  };
}

describe('BindingStore', () => {
  test('round trip: put, update, delete survive reopening', () => {
    const path = join(dir, 'sub', 'ha.sqlite');
    const s1 = new BindingStore(path);
    s1.write([0, 1, 2].map((i) => ({ op: 'put' as const, binding: binding(i) })));
    s1.write([
      { op: 'put', binding: binding(1, { coa: '2001:db8:b::9', sequence: 3 }) },
      { op: 'delete', hoa: binding(2).hoa },
    ]);
    s1.close();
    const s2 = new BindingStore(path);
    const { bindings, timestamps } = s2.load();
    assert.deepEqual(bindings, [binding(0), binding(1, { coa: '2001:db8:b::9', sequence: 3 })]);
    // The deleted binding's replay timestamp is kept.
    assert.equal(timestamps.length, 3);
    assert.deepEqual(new Map(timestamps).get(binding(2).hoa), binding(2).lastTimestamp);
    s2.close();
  });

  test('a failing batch commits nothing', () => {
    const s = new BindingStore(join(dir, 'tx.sqlite'));
    s.write([{ op: 'put', binding: binding(0) }]);
    // Duplicate id for a different HoA violates UNIQUE: the whole transaction rolls back.
    assert.throws(() =>
      s.write([
        { op: 'put', binding: binding(1) },
        { op: 'put', binding: binding(2, { id: 1 }) },
      ]),
    );
    assert.deepEqual(
      s.load().bindings.map((b) => b.hoa),
      [binding(0).hoa],
    );
    s.close();
  });

  test('WAL mode and synchronous FULL', () => {
    const path = join(dir, 'pragma.sqlite');
    const s = new BindingStore(path);
    const db = (s as unknown as { db: { pragma(q: string, options: object): unknown } }).db;
    assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
    assert.equal(db.pragma('synchronous', { simple: true }), 2);
    s.close();
  });

  test('10k bindings in one transaction', () => {
    const s = new BindingStore(join(dir, 'bulk.sqlite'));
    const t0 = performance.now();
    s.write(Array.from({ length: 10_000 }, (_, i) => ({ op: 'put' as const, binding: binding(i) })));
    const writeMs = performance.now() - t0;
    assert.equal(s.load().bindings.length, 10_000);
    s.close();
    assert.ok(writeMs < 5000, `${writeMs} ms`);
  });
});

describe('WorkerBindingStore', () => {
  const puts = (...is: number[]): CacheOp[] => is.map((i) => ({ op: 'put', binding: binding(i) }));

  test("the worker's own connection: WAL and synchronous FULL", async () => {
    const s = new WorkerBindingStore(join(dir, 'w-pragma.sqlite'));
    assert.deepEqual(await s.ready, { journalMode: 'wal', synchronous: 2 });
    await s.close();
  });

  test('round trip: a resolved write is visible to another connection at once', async () => {
    const path = join(dir, 'w-sub', 'ha.sqlite');
    const s = new WorkerBindingStore(path);
    await s.write(puts(0, 1, 2));
    await s.write([
      { op: 'put', binding: binding(1, { coa: '2001:db8:b::9', sequence: 3 }) },
      { op: 'delete', hoa: binding(2).hoa },
    ]);
    const other = new BindingStore(path);
    assert.deepEqual(other.load().bindings, [binding(0), binding(1, { coa: '2001:db8:b::9', sequence: 3 })]);
    other.close();
    const { bindings, timestamps } = s.load();
    assert.equal(bindings.length, 2);
    assert.deepEqual(new Map(timestamps).get(binding(2).hoa), binding(2).lastTimestamp);
    await s.close();
  });

  test('writes commit in call order; close() waits for them', async () => {
    const path = join(dir, 'w-order.sqlite');
    const s = new WorkerBindingStore(path);
    const writes = [1, 2, 3, 4, 5].map((sequence) =>
      s.write([{ op: 'put', binding: binding(0, { sequence }) }]),
    );
    const closed = s.close();
    await Promise.all(writes);
    await closed;
    await assert.rejects(s.write(puts(1)), { code: 'ERR_STORE_CLOSED' });
    const other = new BindingStore(path);
    assert.equal(other.load().bindings[0]!.sequence, 5);
    other.close();
  });

  test("a failing transaction rejects with SQLite's code and commits nothing", async () => {
    const path = join(dir, 'w-tx.sqlite');
    const s = new WorkerBindingStore(path);
    await s.write(puts(0));
    await assert.rejects(s.write([...puts(1), { op: 'put', binding: binding(2, { id: 1 }) }]), {
      code: 'SQLITE_CONSTRAINT_UNIQUE',
    });
    assert.deepEqual(
      s.load().bindings.map((b) => b.hoa),
      [binding(0).hoa],
    );
    await s.write(puts(1)); // and goes on
    assert.equal(s.load().bindings.length, 2);
    await s.close();
  });

  test('a dead worker fails the waiting write; the next write starts a new one', async () => {
    const path = join(dir, 'w-dead.sqlite');
    const s = new WorkerBindingStore(path);
    await s.ready;
    const worker = (s as unknown as { worker: { terminate(): Promise<number> } }).worker;
    // Killed before it reads the message: whether a commit cut short by death happened is unknowable.
    const dying = worker.terminate();
    const waiting = s.write(puts(0));
    await dying;
    await assert.rejects(waiting, { code: 'ERR_STORE_WORKER' });
    await s.write(puts(1));
    assert.deepEqual(
      s.load().bindings.map((b) => b.hoa),
      [binding(1).hoa],
    );
    await s.close();
  });
});
