import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeKey, encodeKey, possibleCpus } from './maps.ts';

test('LPM keys: prefix length in host order, then the address; round trip', () => {
  const k = encodeKey('2001:db8:100::/64');
  assert.equal(Buffer.from(k).toString('hex'), `40000000${'20010db80100'}${'00'.repeat(10)}`);
  for (const p of ['2001:db8:100::/64', '::/0', '2001:db8::1/128', 'fe80::/10'])
    assert.equal(decodeKey(encodeKey(p)), p);
});

test('IPv4 prefixes are IPv4-mapped keys (length + 96); host bits cleared', () => {
  const k = encodeKey('10.1.2.3/24');
  assert.equal(Buffer.from(k).toString('hex'), `78000000${'00'.repeat(10)}ffff0a010200`);
  assert.equal(decodeKey(k), '10.1.2.0/24');
  assert.equal(decodeKey(encodeKey('0.0.0.0/0')), '0.0.0.0/0');
});

test('a key is encoded at an offset without touching the rest of the buffer', () => {
  const buf = new Uint8Array(44).fill(0xee);
  encodeKey('2001:db8::/32', buf, 22);
  assert.deepEqual([...buf.subarray(0, 22)], Array(22).fill(0xee));
  assert.equal(decodeKey(buf.subarray(22, 42)), '2001:db8::/32');
  assert.deepEqual([...buf.subarray(42)], [0xee, 0xee]);
});

test('bad prefixes are refused', () => {
  for (const bad of ['10.1.2/24', '10.1.2.3/33', '300.1.1.1/8', '2001:db8::/129', 'x', '10.0.0.0/8x'])
    assert.throws(() => encodeKey(bad), /(not an|invalid) IPv[46] (prefix|address)/, bad);
});

test('possible CPUs from the kernel list', () => {
  assert.equal(possibleCpus('0-1\n'), 2);
  assert.equal(possibleCpus('0\n'), 1);
  assert.equal(possibleCpus('0-3,8-11\n'), 12);
});
