// Binding Refresh Advice (RFC 6275 §6.2.4): 16-bit refresh interval in units of 4 s, alignment 2n.
import { OptionType } from '../constants.ts';
import { DecodeError } from '../errors.ts';
import type { MobilityOption } from '../types.ts';
import { checkUint, readU16, writeU16 } from '../wire.ts';

export type BindingRefreshAdvice = Extract<MobilityOption, { type: 'bindingRefreshAdvice' }>;

export const alignment = { multiple: 2, plus: 0 } as const;
const DATA_LENGTH = 2;

export function encodingLength(_v: BindingRefreshAdvice): number {
  return 2 + DATA_LENGTH;
}

export function encode(v: BindingRefreshAdvice, buf: Uint8Array, offset: number): Uint8Array {
  checkUint('Binding Refresh Advice interval', v.interval, 16);
  buf[offset] = OptionType.BindingRefreshAdvice;
  buf[offset + 1] = DATA_LENGTH;
  writeU16(buf, offset + 2, v.interval);
  return buf;
}

export function decode(buf: Uint8Array, offset: number, end: number): BindingRefreshAdvice {
  if (end - offset - 2 !== DATA_LENGTH) throw new DecodeError('Binding Refresh Advice length is not 2');
  return { type: 'bindingRefreshAdvice', interval: readU16(buf, offset + 2) };
}
