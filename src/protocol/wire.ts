// Big-endian field access (network byte order, RFC 791 Appendix B), IPv4 address fields, encoder range checks.
import { isIPv4 } from 'node:net';
import { DecodeError, EncodeError } from './errors.ts';

/** The octet at `at`. Past the end is a truncated message: DecodeError, never `undefined` arithmetic. */
export function readU8(buf: Uint8Array, at: number): number {
  const octet = buf[at];
  if (octet === undefined) throw new DecodeError(`truncated: no octet at ${at} of ${buf.length}`);
  return octet;
}

export function readU16(buf: Uint8Array, at: number): number {
  return (readU8(buf, at) << 8) | readU8(buf, at + 1);
}

export function writeU16(buf: Uint8Array, at: number, v: number): void {
  buf[at] = v >>> 8;
  buf[at + 1] = v & 0xff;
}

export function readU32(buf: Uint8Array, at: number): number {
  return ((readU8(buf, at) << 24) >>> 0) + ((readU8(buf, at + 1) << 16) | readU16(buf, at + 2));
}

export function writeU32(buf: Uint8Array, at: number, v: number): void {
  writeU16(buf, at, v >>> 16);
  writeU16(buf, at + 2, v & 0xffff);
}

/** Throws EncodeError unless `v` is an integer that fits in `bits` unsigned bits. */
export function checkUint(name: string, v: number, bits: number): void {
  if (!Number.isInteger(v) || v < 0 || v >= 2 ** bits) {
    throw new EncodeError(`${name} must be an integer in 0..${2 ** bits - 1}, got ${String(v)}`);
  }
}

/** Throws EncodeError unless `buf` has room for `length` octets at `offset`. */
export function checkRoom(buf: Uint8Array, offset: number, length: number): void {
  if (!Number.isInteger(offset) || offset < 0 || offset + length > buf.length) {
    throw new EncodeError(`buffer too small: need ${length} octets at offset ${offset}, have ${buf.length}`);
  }
}

/** A copy of `buf[start..end)` as a plain Uint8Array (Buffer#slice would share memory). */
export function copyBytes(buf: Uint8Array, start: number, end: number): Uint8Array {
  return new Uint8Array(buf.subarray(start, end));
}

/** Writes dotted-quad IPv4 text (node:net isIPv4: four decimal octets, no leading zeros) as 4 octets. */
export function writeIPv4(name: string, buf: Uint8Array, at: number, text: string): void {
  if (typeof text !== 'string' || !isIPv4(text)) {
    throw new EncodeError(`${name} must be dotted-quad IPv4 text, got ${JSON.stringify(text)}`);
  }
  buf.set(text.split('.').map(Number), at);
}

/** The 4 octets at `at` as dotted-quad text. */
export function readIPv4(buf: Uint8Array, at: number): string {
  return `${readU8(buf, at)}.${readU8(buf, at + 1)}.${readU8(buf, at + 2)}.${readU8(buf, at + 3)}`;
}
