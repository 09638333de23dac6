// IPv4 Address Acknowledgement (RFC 5555 §3.2.1, option type 30, in a BA): status 8 (IPv4AckStatus),
// prefix length 6 bits, reserved 2, IPv4 home address 32; option length 6, alignment 4n. The HA's
// answer to one IPv4 Home Address option: the address or prefix bound, and the prefix length allocated.
import { OptionType } from '../constants.ts';
import { DecodeError, EncodeError, OptionValueError } from '../errors.ts';
import type { MobilityOption } from '../types.ts';
import { checkUint, readIPv4, readU8, writeIPv4 } from '../wire.ts';

export type IPv4AddressAcknowledgement = Extract<MobilityOption, { type: 'ipv4AddressAcknowledgement' }>;

export const alignment = { multiple: 4, plus: 0 } as const;
const DATA_LENGTH = 6;

export function encodingLength(_v: IPv4AddressAcknowledgement): number {
  return 2 + DATA_LENGTH;
}

export function encode(v: IPv4AddressAcknowledgement, buf: Uint8Array, offset: number): Uint8Array {
  checkUint('IPv4 Address Acknowledgement status', v.status, 8);
  // RFC 5555 §3.2.1: 0 (and ignored) on failure, the allocated length on success.
  if (!Number.isInteger(v.prefixLength) || v.prefixLength < 0 || v.prefixLength > 32) {
    throw new EncodeError(
      `IPv4 Address Acknowledgement prefix length must be 0..32, got ${String(v.prefixLength)}`,
    );
  }
  writeIPv4('IPv4 home address', buf, offset + 4, v.homeAddress);
  buf[offset] = OptionType.IPv4AddressAcknowledgement;
  buf[offset + 1] = DATA_LENGTH;
  buf[offset + 2] = v.status;
  buf[offset + 3] = v.prefixLength << 2;
  return buf;
}

export function decode(buf: Uint8Array, offset: number, end: number): IPv4AddressAcknowledgement {
  const length = end - offset - 2;
  if (length !== DATA_LENGTH) {
    throw new DecodeError(`IPv4 Address Acknowledgement length is ${length}, not 6`);
  }
  const prefixLength = readU8(buf, offset + 3) >> 2;
  if (prefixLength > 32) {
    throw new OptionValueError(`IPv4 Address Acknowledgement prefix length ${prefixLength} > 32`);
  }
  return {
    type: 'ipv4AddressAcknowledgement',
    status: readU8(buf, offset + 2),
    homeAddress: readIPv4(buf, offset + 4),
    prefixLength,
  };
}
