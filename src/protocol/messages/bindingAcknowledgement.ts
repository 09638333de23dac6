// Binding Acknowledgement message data (RFC 6275 §6.1.8, RFC 3963 §4.2): status 8, flags 8 (K R and
// reserved bits, kept as sent), sequence 16, lifetime 16 in units of 4 s, then options from MH offset 12.
// `offset` is where the message data starts, which is MH offset 6 (RFC 6275 §6.1.1).
import { DecodeError, type InvalidValue } from '../errors.ts';
import { decodeOptions, encodeOptions, optionsEncodingLength } from '../options/index.ts';
import type { BindingAcknowledgement } from '../types.ts';
import { checkUint, readU8, readU16, writeU16 } from '../wire.ts';

export const FIXED_LENGTH = 6;
export const OPTIONS_AT = 6 + FIXED_LENGTH;

export function encodingLength(m: BindingAcknowledgement): number {
  return FIXED_LENGTH + optionsEncodingLength(m.options, OPTIONS_AT);
}

export function encode(m: BindingAcknowledgement, buf: Uint8Array, offset: number): Uint8Array {
  checkUint('BA status', m.status, 8);
  checkUint('BA flags', m.flags, 8);
  checkUint('BA sequence', m.sequence, 16);
  checkUint('BA lifetime', m.lifetime, 16);
  buf[offset] = m.status;
  buf[offset + 1] = m.flags;
  writeU16(buf, offset + 2, m.sequence);
  writeU16(buf, offset + 4, m.lifetime);
  return encodeOptions(m.options, buf, offset + FIXED_LENGTH, OPTIONS_AT);
}

export function decode(
  buf: Uint8Array,
  offset: number,
  end: number,
  invalid?: InvalidValue[],
): BindingAcknowledgement {
  if (end - offset < FIXED_LENGTH)
    throw new DecodeError('Binding Acknowledgement shorter than its fixed fields');
  return {
    type: 'bindingAcknowledgement',
    status: readU8(buf, offset),
    flags: readU8(buf, offset + 1),
    sequence: readU16(buf, offset + 2),
    lifetime: readU16(buf, offset + 4),
    options: decodeOptions(buf, offset + FIXED_LENGTH, end, OPTIONS_AT, invalid),
  };
}
