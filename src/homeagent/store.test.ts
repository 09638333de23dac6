import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
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

describe("BindingStore with checkpoints: 'thread'", () => {
  type Pragma = { db: { pragma(q: string, options?: object): unknown } };
  const pragma = (s: BindingStore, q: string) => (s as unknown as Pragma).db.pragma(q, { simple: true });
  const walPages = (path: string) => (existsSync(`${path}-wal`) ? statSync(`${path}-wal`).size / 4096 : 0);

  test('commits never checkpoint; the thread copies the WAL back and the WAL stays bounded', async () => {
    const path = join(dir, 'ckpt.sqlite');
    const checkpoints: { ms: number; pages: number }[] = [];
    const s = new BindingStore(path, {
      checkpoints: 'thread',
      checkpointIntervalMs: 20,
      onCheckpoint: (c) => checkpoints.push(c),
    });
    await s.checkpointerReady;
    assert.equal(pragma(s, 'wal_autocheckpoint'), 0);
    // 40 commits of 500 rows: ~4,000 pages of WAL with nobody checkpointing, more than SQLite's 1,000
    for (let round = 0; round < 40; round++) {
      s.write(
        Array.from({ length: 500 }, (_, i) => ({
          op: 'put' as const,
          binding: binding(i, { sequence: round, updatedAt: round }),
        })),
      );
      await new Promise((r) => setTimeout(r, 5));
    }
    const deadline = Date.now() + 5000;
    while (checkpoints.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(checkpoints.length > 0, 'the thread checkpointed');
    assert.ok(
      checkpoints.every((c) => c.pages > 0),
      'only checkpoints that copied pages are reported',
    );
    // a checkpoint every 20 ms copies something only while commits come, not on every tick after them
    await new Promise((r) => setTimeout(r, 150)); // what the last commits left is copied by now
    const reported = checkpoints.length;
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(checkpoints.length, reported, 'idle ticks report nothing');
    // the writer restarts the WAL once the thread has copied all of it: far below 40 rounds' worth
    assert.ok(walPages(path) < 2000, `WAL ${walPages(path)} pages`);
    await s.close();
    assert.equal(
      existsSync(`${path}-wal`),
      false,
      'the last connection to close checkpoints and removes the WAL',
    );
    const again = new BindingStore(path);
    assert.equal(again.load().bindings.length, 500);
    assert.ok(again.load().bindings.every((b) => b.sequence === 39));
    again.close();
  });

  test("a lost thread turns SQLite's automatic checkpoint back on", async () => {
    const path = join(dir, 'ckpt-lost.sqlite');
    let lost: Error | undefined;
    const s = new BindingStore(path, { checkpoints: 'thread', onCheckpointerLost: (err) => (lost = err) });
    await s.checkpointerReady;
    assert.equal(pragma(s, 'wal_autocheckpoint'), 0);
    await (s as unknown as { checkpointer: { terminate(): Promise<number> } }).checkpointer.terminate();
    await new Promise((r) => setImmediate(r));
    assert.equal((lost as { code?: string } | undefined)?.code, 'ERR_STORE_CHECKPOINTER');
    assert.equal(pragma(s, 'wal_autocheckpoint'), 1000);
    s.write([{ op: 'put', binding: binding(1) }]);
    await s.close();
  });

  test(':memory: is refused', () => {
    assert.throws(
      () => new BindingStore(':memory:', { checkpoints: 'thread' }),
      (err: Error & { code?: string }) =>
        err.code === 'ERR_STORE' && /needs a database file/.test(err.message),
    );
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
