// MN-HA authentication of Mobility Header messages (RFC 4285 §5, docs/architecture.md, signaling) and the NTP-format
// timestamps of the Replay Protection option (RFC 4285 §6, RFC 5905 §6).
import { createHmac, timingSafeEqual } from 'node:crypto';
import { OfflinkError } from '../errors.ts';
import { parseIPv6 } from './address.ts';
import type { AuthAlgorithm, SecurityAssociation } from './types.ts';

const algorithms: Record<AuthAlgorithm, { hash: string; length: number }> = {
  'hmac-sha1': { hash: 'sha1', length: 12 }, // RFC 4285 §5.2: First(96, HMAC_SHA1(...))
  'hmac-sha256': { hash: 'sha256', length: 16 }, // docs/architecture.md, signaling: first 128 bits
};

function algorithm(alg: AuthAlgorithm): { hash: string; length: number } {
  const a = algorithms[alg];
  if (!a) throw new OfflinkError('ERR_INVALID_ALGORITHM', `unknown authentication algorithm ${String(alg)}`);
  return a;
}

/** Authenticator octets for an algorithm: 12 for hmac-sha1, 16 for hmac-sha256. */
export function authenticatorLength(alg: AuthAlgorithm): number {
  return algorithm(alg).length;
}

/**
 * Truncated HMAC(key, CoA ‖ HoA ‖ MH data) where MH data is the Mobility Header up to and including the
 * SPI field of the authentication option, with the MH checksum field counted as zero (RFC 4285 §5.2).
 * The checksum field of `mhUpToSpi` may hold anything; it is zeroed here.
 */
export function computeAuthenticator(
  sa: SecurityAssociation,
  coa: string,
  hoa: string,
  mhUpToSpi: Uint8Array,
): Uint8Array {
  const { hash, length } = algorithm(sa.algorithm);
  const hmac = createHmac(hash, sa.key);
  hmac.update(parseIPv6(coa));
  hmac.update(parseIPv6(hoa));
  if (mhUpToSpi.length >= 6) {
    hmac.update(mhUpToSpi.subarray(0, 4));
    hmac.update(new Uint8Array(2));
    hmac.update(mhUpToSpi.subarray(6));
  } else {
    hmac.update(mhUpToSpi);
  }
  return new Uint8Array(hmac.digest().subarray(0, length));
}

/** Constant-time check of a received authenticator; a wrong length is false, not an exception. */
export function verifyAuthenticator(
  sa: SecurityAssociation,
  coa: string,
  hoa: string,
  mhUpToSpi: Uint8Array,
  authenticator: Uint8Array,
): boolean {
  const expected = computeAuthenticator(sa, coa, hoa, mhUpToSpi);
  if (authenticator.length !== expected.length) return false;
  return timingSafeEqual(expected, authenticator);
}

/** Seconds from 1900-01-01 (NTP era 0) to 1970-01-01 (RFC 5905 §6). */
const NTP_UNIX_OFFSET = 2_208_988_800;
const TWO32 = 2 ** 32;

/**
 * Unix milliseconds as a 64-bit NTP timestamp: seconds since 1900 in the high 32 bits (modulo 2^32, so
 * after 2036 the next era's values), fraction of a second in the low 32 bits.
 */
export function ntpTimestamp(ms: number): bigint {
  let seconds = Math.floor(ms / 1000);
  let fraction = Math.round(((ms - seconds * 1000) / 1000) * TWO32);
  if (fraction >= TWO32) {
    seconds += 1;
    fraction -= TWO32;
  }
  const ntpSeconds = (((seconds + NTP_UNIX_OFFSET) % TWO32) + TWO32) % TWO32;
  return (BigInt(ntpSeconds) << 32n) | BigInt(fraction);
}

/**
 * A 64-bit NTP timestamp as Unix milliseconds (fractional). RFC 4330 §3: seconds with the top bit clear
 * belong to era 1 (from 2036-02-07), so the range is 1968–2104.
 */
export function ntpTimestampToMs(ts: bigint): number {
  const seconds = Number((ts >> 32n) & 0xffff_ffffn);
  const fraction = Number(ts & 0xffff_ffffn);
  const unixSeconds = seconds - NTP_UNIX_OFFSET + (seconds < 0x8000_0000 ? TWO32 : 0);
  return unixSeconds * 1000 + (fraction * 1000) / TWO32;
}
