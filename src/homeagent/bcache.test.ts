import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Binding, BindingCache } from './bcache.ts';

function b(hoa: string, expiresAt: number, id: number, over: Partial<Binding> = {}): Binding {
  return {
    hoa,
    coa: '2001:db8:a::2',
    prefixes: ['2001:db8:100::/64'],
    sequence: 1,
    lifetimeSeconds: 100,
    expiresAt,
    mode: 'explicit',
    lastTimestamp: 1n,
    id,
    registeredAt: 0,
    updatedAt: 0,
    ...over,
  };
}

describe('BindingCache', () => {
  test('ids are allocated upwards, not reused at once', () => {
    const c = new BindingCache();
    assert.equal(c.peekFreeId(), 1);
    c.apply({ op: 'put', binding: b('::1', 10, c.peekFreeId()) });
    c.apply({ op: 'put', binding: b('::2', 10, c.peekFreeId()) });
    assert.equal(c.get('::2')!.id, 2);
    c.apply({ op: 'delete', hoa: '::1' });
    assert.equal(c.peekFreeId(), 3);
    c.apply({ op: 'put', binding: b('::5', 10, 41) });
    assert.equal(c.peekFreeId(), 42);
  });

  test('expiry order, refresh moves the expiry, delete removes it', () => {
    const c = new BindingCache();
    c.apply({ op: 'put', binding: b('::1', 300, 1) });
    c.apply({ op: 'put', binding: b('::2', 100, 2) });
    c.apply({ op: 'put', binding: b('::3', 200, 3) });
    assert.equal(c.nextExpiry(), 100);
    c.apply({ op: 'put', binding: b('::2', 400, 2) }); // refresh
    assert.equal(c.nextExpiry(), 200);
    assert.deepEqual(
      c.expired(300).map((x) => x.hoa),
      ['::3', '::1'],
    );
    c.apply({ op: 'delete', hoa: '::3' });
    c.apply({ op: 'delete', hoa: '::1' });
    assert.equal(c.nextExpiry(), 400);
    assert.deepEqual(c.expired(399), []);
    c.apply({ op: 'delete', hoa: '::2' });
    assert.equal(c.nextExpiry(), undefined);
  });

  test('an expiry moved away and back is reported once', () => {
    const c = new BindingCache();
    c.apply({ op: 'put', binding: b('::1', 100, 1) });
    c.apply({ op: 'put', binding: b('::1', 200, 1) });
    c.apply({ op: 'put', binding: b('::1', 100, 1) });
    assert.equal(c.expired(150).length, 1);
  });

  test('replay timestamps outlive the binding and only move forward', () => {
    const c = new BindingCache();
    c.apply({ op: 'put', binding: b('::1', 100, 1, { lastTimestamp: 50n }) });
    c.apply({ op: 'delete', hoa: '::1' });
    assert.equal(c.lastTimestamp('::1'), 50n);
    c.restoreTimestamp('::1', 40n);
    assert.equal(c.lastTimestamp('::1'), 50n);
  });

  test('100k bindings refreshed many times: heap stays bounded, expiry is exact', () => {
    const c = new BindingCache();
    const n = 100_000;
    for (let i = 0; i < n; i++) c.apply({ op: 'put', binding: b(`h${i}`, 1000 + i, i + 1) });
    for (let round = 1; round <= 5; round++) {
      for (let i = 0; i < n; i++) c.apply({ op: 'put', binding: b(`h${i}`, 1000 + round * n + i, i + 1) });
    }
    const heap = (c as unknown as { heap: unknown[] }).heap;
    assert.ok(heap.length <= 2 * n + 1024 + 1, `heap ${heap.length}`);
    assert.equal(c.nextExpiry(), 1000 + 5 * n);
    assert.equal(c.expired(1000 + 5 * n + 9).length, 10);
  });

  test('compaction keeps a valid heap when expiries come in any order', () => {
    const c = new BindingCache();
    const n = 5000;
    let x = 12345;
    const rand = () => {
      x = (x * 1103515245 + 12345) % 2 ** 31;
      return x % 1_000_000;
    };
    for (let round = 0; round < 6; round++) {
      for (let i = 0; i < n; i++) c.apply({ op: 'put', binding: b(`h${i}`, rand(), i + 1) });
    }
    const want = c
      .all()
      .map((e) => e.expiresAt)
      .sort((p, q) => p - q);
    const cut = want[1234]!;
    const got = c.expired(cut).map((e) => e.expiresAt);
    assert.deepEqual(
      got.sort((p, q) => p - q),
      want.filter((t) => t <= cut),
    );
    assert.equal(c.nextExpiry(), want[0]);
  });
});
