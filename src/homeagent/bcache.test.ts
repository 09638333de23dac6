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
    const cache = new BindingCache();
    assert.equal(cache.peekFreeId(), 1);
    cache.apply({ op: 'put', binding: b('::1', 10, cache.peekFreeId()) });
    cache.apply({ op: 'put', binding: b('::2', 10, cache.peekFreeId()) });
    assert.equal(cache.get('::2')!.id, 2);
    cache.apply({ op: 'delete', hoa: '::1' });
    assert.equal(cache.peekFreeId(), 3);
    cache.apply({ op: 'put', binding: b('::5', 10, 41) });
    assert.equal(cache.peekFreeId(), 42);
  });

  test('expiry order, refresh moves the expiry, delete removes it', () => {
    const cache = new BindingCache();
    cache.apply({ op: 'put', binding: b('::1', 300, 1) });
    cache.apply({ op: 'put', binding: b('::2', 100, 2) });
    cache.apply({ op: 'put', binding: b('::3', 200, 3) });
    assert.equal(cache.nextExpiry(), 100);
    cache.apply({ op: 'put', binding: b('::2', 400, 2) }); // refresh
    assert.equal(cache.nextExpiry(), 200);
    assert.deepEqual(
      cache.expired(300).map((x) => x.hoa),
      ['::3', '::1'],
    );
    cache.apply({ op: 'delete', hoa: '::3' });
    cache.apply({ op: 'delete', hoa: '::1' });
    assert.equal(cache.nextExpiry(), 400);
    assert.deepEqual(cache.expired(399), []);
    cache.apply({ op: 'delete', hoa: '::2' });
    assert.equal(cache.nextExpiry(), undefined);
  });

  test('an expiry moved away and back is reported once', () => {
    const cache = new BindingCache();
    cache.apply({ op: 'put', binding: b('::1', 100, 1) });
    cache.apply({ op: 'put', binding: b('::1', 200, 1) });
    cache.apply({ op: 'put', binding: b('::1', 100, 1) });
    assert.equal(cache.expired(150).length, 1);
  });

  test('replay timestamps outlive the binding and only move forward', () => {
    const cache = new BindingCache();
    cache.apply({ op: 'put', binding: b('::1', 100, 1, { lastTimestamp: 50n }) });
    cache.apply({ op: 'delete', hoa: '::1' });
    assert.equal(cache.lastTimestamp('::1'), 50n);
    cache.restoreTimestamp('::1', 40n);
    assert.equal(cache.lastTimestamp('::1'), 50n);
  });

  test('100k bindings refreshed many times: heap stays bounded, expiry is exact', () => {
    const cache = new BindingCache();
    const n = 100_000;
    for (let i = 0; i < n; i++) cache.apply({ op: 'put', binding: b(`h${i}`, 1000 + i, i + 1) });
    for (let round = 1; round <= 5; round++) {
      for (let i = 0; i < n; i++)
        cache.apply({ op: 'put', binding: b(`h${i}`, 1000 + round * n + i, i + 1) });
    }
    const heap = (cache as unknown as { heap: unknown[] }).heap;
    assert.ok(heap.length <= 2 * n + 1024 + 1, `heap ${heap.length}`);
    assert.equal(cache.nextExpiry(), 1000 + 5 * n);
    assert.equal(cache.expired(1000 + 5 * n + 9).length, 10);
  });

  test('compaction keeps a valid heap when expiries come in any order', () => {
    const cache = new BindingCache();
    const n = 5000;
    let x = 12345;
    const rand = () => {
      x = (x * 1103515245 + 12345) % 2 ** 31;
      return x % 1_000_000;
    };
    for (let round = 0; round < 6; round++) {
      for (let i = 0; i < n; i++) cache.apply({ op: 'put', binding: b(`h${i}`, rand(), i + 1) });
    }
    const want = cache
      .all()
      .map((e) => e.expiresAt)
      .sort((p, q) => p - q);
    const cut = want[1234]!;
    const got = cache.expired(cut).map((e) => e.expiresAt);
    assert.deepEqual(
      got.sort((p, q) => p - q),
      want.filter((t) => t <= cut),
    );
    assert.equal(cache.nextExpiry(), want[0]);
  });
});
