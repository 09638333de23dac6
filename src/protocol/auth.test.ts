import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import { parseIPv6 } from './address.ts';
import {
  authenticatorLength,
  computeAuthenticator,
  ntpTimestamp,
  ntpTimestampToMs,
  verifyAuthenticator,
} from './auth.ts';
import type { SecurityAssociation } from './types.ts';

const COA = '2001:db8:a::2';
const HOA = '2001:db8:ffff::100';
const sha1: SecurityAssociation = {
  spi: 0x100,
  key: new TextEncoder().encode('secret key'),
  algorithm: 'hmac-sha1',
};
const sha256: SecurityAssociation = { ...sha1, algorithm: 'hmac-sha256' };
// Any MH prefix; octets 4–5 (the checksum) are deliberately non-zero.
const mh = Uint8Array.from([0x3b, 2, 5, 0, 0xab, 0xcd, 0x12, 0x34, 0xc4, 0, 0, 0x96, 9, 17, 1, 0, 0, 1, 0]);

function reference(alg: string, n: number): Uint8Array {
  const zeroed = mh.slice();
  zeroed[4] = 0;
  zeroed[5] = 0;
  const h = createHmac(alg, sha1.key).update(parseIPv6(COA)).update(parseIPv6(HOA)).update(zeroed);
  return new Uint8Array(h.digest().subarray(0, n));
}

describe('MN-HA authenticator (RFC 4285 §5)', () => {
  it('lengths: 96 bits for SHA-1, 128 for SHA-256', () => {
    assert.equal(authenticatorLength('hmac-sha1'), 12);
    assert.equal(authenticatorLength('hmac-sha256'), 16);
  });

  it('is the truncated HMAC over CoA ‖ HoA ‖ MH with the checksum zeroed', () => {
    assert.deepEqual(computeAuthenticator(sha1, COA, HOA, mh), reference('sha1', 12));
    assert.deepEqual(computeAuthenticator(sha256, COA, HOA, mh), reference('sha256', 16));
  });

  it('verifies in constant time; wrong key, data or length is false', () => {
    const good = computeAuthenticator(sha1, COA, HOA, mh);
    assert.equal(verifyAuthenticator(sha1, COA, HOA, mh, good), true);
    assert.equal(verifyAuthenticator({ ...sha1, key: new Uint8Array(10) }, COA, HOA, mh, good), false);
    assert.equal(verifyAuthenticator(sha1, '2001:db8:a::3', HOA, mh, good), false);
    const flipped = good.slice();
    flipped[11]! ^= 1;
    assert.equal(verifyAuthenticator(sha1, COA, HOA, mh, flipped), false);
    assert.equal(verifyAuthenticator(sha1, COA, HOA, mh, good.subarray(0, 11)), false);
    assert.equal(verifyAuthenticator(sha1, COA, HOA, mh, new Uint8Array(0)), false);
    assert.equal(verifyAuthenticator(sha256, COA, HOA, mh, good), false);
  });
});

describe('NTP timestamps (RFC 4285 §6, RFC 5905 §6)', () => {
  it('Unix epoch is 2208988800 s after the NTP epoch', () => {
    assert.equal(ntpTimestamp(0), 2208988800n << 32n);
    assert.equal(ntpTimestampToMs(2208988800n << 32n), 0);
  });

  it('known value: 2024-01-01T00:00:00.5Z', () => {
    const ms = Date.UTC(2024, 0, 1) + 500;
    assert.equal(ntpTimestamp(ms), 0xe93c7f00_80000000n);
    assert.equal(ntpTimestampToMs(0xe93c7f00_80000000n), ms);
  });

  it('round-trips to within a microsecond, across the 2036 era boundary', () => {
    for (const ms of [
      1,
      999,
      1_700_000_000_123,
      Date.UTC(2036, 1, 7, 6, 28, 15),
      Date.UTC(2036, 1, 7, 6, 28, 16),
      Date.UTC(2090, 5, 1),
    ]) {
      assert.ok(Math.abs(ntpTimestampToMs(ntpTimestamp(ms)) - ms) < 0.001, String(ms));
    }
    assert.equal(ntpTimestamp(Date.UTC(2036, 1, 7, 6, 28, 16)) >> 32n, 0n); // era 1 begins
  });

  it('a fraction that rounds up to a whole second carries', () => {
    const ts = ntpTimestamp(999.99999999999);
    assert.equal(ts & 0xffff_ffffn, 0n);
    assert.equal(ts >> 32n, 2208988801n);
  });
});
