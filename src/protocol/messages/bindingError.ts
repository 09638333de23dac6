// Binding Error message data (RFC 6275 §6.1.9): status 8, reserved 8, home address 128, then options
// from MH offset 24. `offset` is where the message data starts, which is MH offset 6 (RFC 6275 §6.1.1).
import { formatIPv6, parseIPv6 } from '../address.ts';
import { DecodeError, type InvalidValue } from '../errors.ts';
import { decodeOptions, encodeOptions, optionsEncodingLength } from '../options/index.ts';
import type { BindingError } from '../types.ts';
import { checkUint, readU8 } from '../wire.ts';

export const FIXED_LENGTH = 18;
export const OPTIONS_AT = 6 + FIXED_LENGTH;

export function encodingLength(m: BindingError): number {
  return FIXED_LENGTH + optionsEncodingLength(m.options, OPTIONS_AT);
}

export function encode(m: BindingError, buf: Uint8Array, offset: number): Uint8Array {
  checkUint('BE status', m.status, 8);
  const home = parseIPv6(m.homeAddress);
  buf[offset] = m.status;
  buf[offset + 1] = 0;
  buf.set(home, offset + 2);
  return encodeOptions(m.options, buf, offset + FIXED_LENGTH, OPTIONS_AT);
}

export function decode(buf: Uint8Array, offset: number, end: number, invalid?: InvalidValue[]): BindingError {
  if (end - offset < FIXED_LENGTH) throw new DecodeError('Binding Error shorter than its fixed fields');
  return {
    type: 'bindingError',
    status: readU8(buf, offset),
    homeAddress: formatIPv6(buf, offset + 2),
    options: decodeOptions(buf, offset + FIXED_LENGTH, end, OPTIONS_AT, invalid),
  };
}
