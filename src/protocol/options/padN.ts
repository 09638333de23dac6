// PadN (RFC 6275 §6.2.2): type, length, then `length` zero octets. Received contents are ignored.

import { OptionType } from '../constants.ts';
import type { MobilityOption } from '../types.ts';
import { checkUint } from '../wire.ts';

export type PadN = Extract<MobilityOption, { type: 'padN' }>;

export function encodingLength(v: PadN): number {
  return 2 + v.length;
}

export function encode(v: PadN, buf: Uint8Array, offset: number): Uint8Array {
  checkUint('PadN length', v.length, 8);
  buf[offset] = OptionType.PadN;
  buf[offset + 1] = v.length;
  buf.fill(0, offset + 2, offset + 2 + v.length);
  return buf;
}

/** `offset..end` is the whole option; the index decoder has checked it fits. */
export function decode(_buf: Uint8Array, offset: number, end: number): PadN {
  return { type: 'padN', length: end - offset - 2 };
}
