// Any option type this codec does not know: kept as bytes and re-encoded unchanged, since receivers
// skip unknown options (RFC 6275 §6.2.1).
import { OptionType } from '../constants.ts';
import { EncodeError } from '../errors.ts';
import type { MobilityOption } from '../types.ts';
import { checkUint, copyBytes, readU8 } from '../wire.ts';

export type RawOption = Extract<MobilityOption, { type: 'raw' }>;

export function encodingLength(v: RawOption): number {
  return 2 + v.data.length;
}

export function encode(v: RawOption, buf: Uint8Array, offset: number): Uint8Array {
  checkUint('option type', v.code, 8);
  // Type 0 is Pad1, which has no length octet: a raw option of that type could not be decoded back.
  if (v.code === OptionType.Pad1) throw new EncodeError('a raw option cannot have type 0 (Pad1)');
  checkUint('option length', v.data.length, 8);
  buf[offset] = v.code;
  buf[offset + 1] = v.data.length;
  buf.set(v.data, offset + 2);
  return buf;
}

export function decode(buf: Uint8Array, offset: number, end: number): RawOption {
  return { type: 'raw', code: readU8(buf, offset), data: copyBytes(buf, offset + 2, end) };
}
