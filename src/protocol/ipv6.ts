// The inner IPv6 header of a signaling packet (RFC 8200 §3): version 4, traffic class 8, flow label 20,
// payload length 16, next header 8, hop limit 8, source 128, destination 128.
import { formatIPv6, parseIPv6 } from './address.ts';
import { DecodeError } from './errors.ts';
import { checkRoom, checkUint, readU8, readU16, writeU16 } from './wire.ts';

export const IPV6_HEADER_LENGTH = 40;

export interface Ipv6Header {
  trafficClass: number;
  flowLabel: number;
  payloadLength: number;
  nextHeader: number;
  hopLimit: number;
  src: string;
  dst: string;
}

export function encodingLength(_h: Ipv6Header): number {
  return IPV6_HEADER_LENGTH;
}

export function encode(h: Ipv6Header, buf: Uint8Array, offset: number): Uint8Array {
  checkUint('traffic class', h.trafficClass, 8);
  checkUint('flow label', h.flowLabel, 20);
  checkUint('payload length', h.payloadLength, 16);
  checkUint('next header', h.nextHeader, 8);
  checkUint('hop limit', h.hopLimit, 8);
  const src = parseIPv6(h.src);
  const dst = parseIPv6(h.dst);
  checkRoom(buf, offset, IPV6_HEADER_LENGTH);
  buf[offset] = 0x60 | (h.trafficClass >> 4);
  buf[offset + 1] = ((h.trafficClass & 0xf) << 4) | (h.flowLabel >> 16);
  writeU16(buf, offset + 2, h.flowLabel & 0xffff);
  writeU16(buf, offset + 4, h.payloadLength);
  buf[offset + 6] = h.nextHeader;
  buf[offset + 7] = h.hopLimit;
  buf.set(src, offset + 8);
  buf.set(dst, offset + 24);
  return buf;
}

/** Decodes the 40-octet header at `offset`; fewer octets or a version other than 6 → drop. */
export function decode(buf: Uint8Array, offset: number, end: number): Ipv6Header {
  if (end - offset < IPV6_HEADER_LENGTH || end > buf.length || offset < 0) {
    throw new DecodeError('shorter than an IPv6 header');
  }
  const version = readU8(buf, offset) >> 4;
  if (version !== 6) throw new DecodeError(`IP version ${version} is not 6`);
  return {
    trafficClass: ((readU8(buf, offset) & 0xf) << 4) | (readU8(buf, offset + 1) >> 4),
    flowLabel: ((readU8(buf, offset + 1) & 0xf) << 16) | readU16(buf, offset + 2),
    payloadLength: readU16(buf, offset + 4),
    nextHeader: readU8(buf, offset + 6),
    hopLimit: readU8(buf, offset + 7),
    src: formatIPv6(buf, offset + 8),
    dst: formatIPv6(buf, offset + 24),
  };
}
