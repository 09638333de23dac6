// Pad1 (RFC 6275 §6.2.2): a single zero octet, no length field.
import type { MobilityOption } from '../types.ts';

export type Pad1 = Extract<MobilityOption, { type: 'pad1' }>;

export function encodingLength(_v: Pad1): number {
  return 1;
}

export function encode(_v: Pad1, buf: Uint8Array, offset: number): Uint8Array {
  buf[offset] = 0;
  return buf;
}

export function decode(_buf: Uint8Array, _offset: number, _end: number): Pad1 {
  return { type: 'pad1' };
}
