// IPv4 Home Address (RFC 5555 §3.1.1, option type 29, in a BU): prefix length 6 bits, P flag 1,
// reserved 9, IPv4 home address 32; option length 6, alignment 4n, so the address is 4-octet aligned.
// A mobile router registers each IPv4 mobile network prefix with one of these, the P flag set and the
// prefix in the address field (RFC 5555 §3.1.1: "P ... the mobile node requests a mobile network
// prefix"), not with RFC 3963's Mobile Network Prefix option, whose prefix field is IPv6 only
// (docs/architecture.md, signaling).
import { OptionType } from '../constants.ts';
import { DecodeError, EncodeError, OptionValueError } from '../errors.ts';
import type { MobilityOption } from '../types.ts';
import { readIPv4, readU8, writeIPv4 } from '../wire.ts';

export type IPv4HomeAddress = Extract<MobilityOption, { type: 'ipv4HomeAddress' }>;

export const alignment = { multiple: 4, plus: 0 } as const;
const DATA_LENGTH = 6;
/** The P flag, in the octet whose top 6 bits are the prefix length. */
const P_FLAG = 0x02;

export function encodingLength(_v: IPv4HomeAddress): number {
  return 2 + DATA_LENGTH;
}

export function encode(v: IPv4HomeAddress, buf: Uint8Array, offset: number): Uint8Array {
  if (!Number.isInteger(v.prefixLength) || v.prefixLength < 1 || v.prefixLength > 32) {
    throw new EncodeError(`IPv4 Home Address prefix length must be 1..32, got ${String(v.prefixLength)}`);
  }
  writeIPv4('IPv4 home address', buf, offset + 4, v.homeAddress);
  buf[offset] = OptionType.IPv4HomeAddress;
  buf[offset + 1] = DATA_LENGTH;
  buf[offset + 2] = (v.prefixLength << 2) | (v.requestPrefix ? P_FLAG : 0);
  buf[offset + 3] = 0;
  return buf;
}

export function decode(buf: Uint8Array, offset: number, end: number): IPv4HomeAddress {
  const length = end - offset - 2;
  if (length !== DATA_LENGTH) throw new DecodeError(`IPv4 Home Address length is ${length}, not 6`);
  const octet = readU8(buf, offset + 2);
  const prefixLength = octet >> 2;
  // RFC 5555 §3.1.1: zero "is invalid and MUST be considered an error"; an IPv4 prefix has at most 32 bits.
  if (prefixLength === 0 || prefixLength > 32) {
    throw new OptionValueError(`IPv4 Home Address prefix length ${prefixLength} is not 1..32`);
  }
  return {
    type: 'ipv4HomeAddress',
    homeAddress: readIPv4(buf, offset + 4),
    prefixLength,
    requestPrefix: (octet & P_FLAG) !== 0,
  };
}
