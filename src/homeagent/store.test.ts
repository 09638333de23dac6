import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ntpTimestamp } from '../protocol/auth.ts';
import type { Binding } from './bcache.ts';
import { BindingStore } from './store.ts';

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
    const db = (s as unknown as { db: { pragma(q: string, o: object): unknown } }).db;
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
