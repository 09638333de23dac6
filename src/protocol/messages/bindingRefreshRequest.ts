// Binding Refresh Request message data (RFC 6275 §6.1.2): reserved 16, then options from MH offset 8.
// `offset` is where the message data starts, which is MH offset 6 (RFC 6275 §6.1.1).
import { DecodeError, type InvalidValue } from '../errors.ts';
import { decodeOptions, encodeOptions, optionsEncodingLength } from '../options/index.ts';
import type { BindingRefreshRequest } from '../types.ts';

export const FIXED_LENGTH = 2;
export const OPTIONS_AT = 6 + FIXED_LENGTH;

export function encodingLength(m: BindingRefreshRequest): number {
  return FIXED_LENGTH + optionsEncodingLength(m.options, OPTIONS_AT);
}

export function encode(m: BindingRefreshRequest, buf: Uint8Array, offset: number): Uint8Array {
  buf[offset] = 0;
  buf[offset + 1] = 0;
  return encodeOptions(m.options, buf, offset + FIXED_LENGTH, OPTIONS_AT);
}

export function decode(
  buf: Uint8Array,
  offset: number,
  end: number,
  invalid?: InvalidValue[],
): BindingRefreshRequest {
  if (end - offset < FIXED_LENGTH)
    throw new DecodeError('Binding Refresh Request shorter than its fixed fields');
  return {
    type: 'bindingRefreshRequest',
    options: decodeOptions(buf, offset + FIXED_LENGTH, end, OPTIONS_AT, invalid),
  };
}
