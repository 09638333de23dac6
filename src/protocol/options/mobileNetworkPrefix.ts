// Mobile Network Prefix (RFC 3963 §4.3): reserved 8, prefix length 8, prefix 128; alignment 8n+4 so
// the prefix itself is 8-octet aligned.
import { formatIPv6, parseIPv6 } from '../address.ts';
import { BaStatus, OptionType } from '../constants.ts';
import { DecodeError, EncodeError, InvalidValueError } from '../errors.ts';
import type { MobilityOption } from '../types.ts';
import { readU8 } from '../wire.ts';

export type MobileNetworkPrefix = Extract<MobilityOption, { type: 'mobileNetworkPrefix' }>;

export const alignment = { multiple: 8, plus: 4 } as const;
const DATA_LENGTH = 18;

export function encodingLength(_v: MobileNetworkPrefix): number {
  return 2 + DATA_LENGTH;
}

export function encode(v: MobileNetworkPrefix, buf: Uint8Array, offset: number): Uint8Array {
  if (!Number.isInteger(v.prefixLength) || v.prefixLength < 0 || v.prefixLength > 128) {
    throw new EncodeError(`Mobile Network Prefix length must be 0..128, got ${String(v.prefixLength)}`);
  }
  const prefix = parseIPv6(v.prefix);
  buf[offset] = OptionType.MobileNetworkPrefix;
  buf[offset + 1] = DATA_LENGTH;
  buf[offset + 2] = 0;
  buf[offset + 3] = v.prefixLength;
  buf.set(prefix, offset + 4);
  return buf;
}

export function decode(buf: Uint8Array, offset: number, end: number): MobileNetworkPrefix {
  if (end - offset - 2 !== DATA_LENGTH) throw new DecodeError('Mobile Network Prefix length is not 18');
  const prefixLength = readU8(buf, offset + 3);
  // RFC 3963 §6.1.2: a length over 128 is an invalid prefix, which the HA refuses with 141.
  if (prefixLength > 128)
    throw new InvalidValueError(
      `Mobile Network Prefix length ${prefixLength} > 128`,
      BaStatus.INVALID_PREFIX,
    );
  return { type: 'mobileNetworkPrefix', prefix: formatIPv6(buf, offset + 4), prefixLength };
}
