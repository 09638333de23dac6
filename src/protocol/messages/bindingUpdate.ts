// Binding Update message data (RFC 6275 §6.1.7, RFC 3963 §4.1): sequence 16, flags 16 (A H L K M R and
// reserved bits, kept as sent), lifetime 16 in units of 4 s, then options from MH offset 12.
// `offset` is where the message data starts, which is MH offset 6 (RFC 6275 §6.1.1).
import { DecodeError, type InvalidValue } from '../errors.ts';
import { decodeOptions, encodeOptions, optionsEncodingLength } from '../options/index.ts';
import type { BindingUpdate } from '../types.ts';
import { checkUint, readU16, writeU16 } from '../wire.ts';

/** Length of the fixed fields before the options. */
export const FIXED_LENGTH = 6;
/** MH offset of the first option. */
export const OPTIONS_AT = 6 + FIXED_LENGTH;

export function encodingLength(m: BindingUpdate): number {
  return FIXED_LENGTH + optionsEncodingLength(m.options, OPTIONS_AT);
}

export function encode(m: BindingUpdate, buf: Uint8Array, offset: number): Uint8Array {
  checkUint('BU sequence', m.sequence, 16);
  checkUint('BU flags', m.flags, 16);
  checkUint('BU lifetime', m.lifetime, 16);
  writeU16(buf, offset, m.sequence);
  writeU16(buf, offset + 2, m.flags);
  writeU16(buf, offset + 4, m.lifetime);
  return encodeOptions(m.options, buf, offset + FIXED_LENGTH, OPTIONS_AT);
}

export function decode(
  buf: Uint8Array,
  offset: number,
  end: number,
  invalid?: InvalidValue[],
): BindingUpdate {
  if (end - offset < FIXED_LENGTH) throw new DecodeError('Binding Update shorter than its fixed fields');
  return {
    type: 'bindingUpdate',
    sequence: readU16(buf, offset),
    flags: readU16(buf, offset + 2),
    lifetime: readU16(buf, offset + 4),
    options: decodeOptions(buf, offset + FIXED_LENGTH, end, OPTIONS_AT, invalid),
  };
}
