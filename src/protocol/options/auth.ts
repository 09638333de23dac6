// Mobility Message Authentication (RFC 4285 §5): subtype 8, SPI 32, authenticator; alignment 4n+1
// so the SPI is 4-octet aligned. RFC 4285 §5: it must be the last option of the message.
import { OptionType } from '../constants.ts';
import { DecodeError, EncodeError } from '../errors.ts';
import type { MobilityOption } from '../types.ts';
import { checkUint, copyBytes, readU8, readU32, writeU32 } from '../wire.ts';

export type Auth = Extract<MobilityOption, { type: 'auth' }>;

export const alignment = { multiple: 4, plus: 1 } as const;
/** Octets from the option's type octet to the first octet of the authenticator. */
export const AUTHENTICATOR_OFFSET = 7;

export function encodingLength(v: Auth): number {
  return AUTHENTICATOR_OFFSET + v.authenticator.length;
}

export function encode(v: Auth, buf: Uint8Array, offset: number): Uint8Array {
  checkUint('authentication subtype', v.subtype, 8);
  checkUint('SPI', v.spi, 32);
  const dataLength = 5 + v.authenticator.length;
  if (dataLength > 255)
    throw new EncodeError(`authenticator of ${v.authenticator.length} octets is too long`);
  buf[offset] = OptionType.MobilityMessageAuthentication;
  buf[offset + 1] = dataLength;
  buf[offset + 2] = v.subtype;
  writeU32(buf, offset + 3, v.spi);
  buf.set(v.authenticator, offset + AUTHENTICATOR_OFFSET);
  return buf;
}

export function decode(buf: Uint8Array, offset: number, end: number): Auth {
  if (end - offset - 2 < 5) throw new DecodeError('Mobility Message Authentication option shorter than 5');
  return {
    type: 'auth',
    subtype: readU8(buf, offset + 2),
    spi: readU32(buf, offset + 3),
    authenticator: copyBytes(buf, offset + AUTHENTICATOR_OFFSET, end),
  };
}
