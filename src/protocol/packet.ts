// The UDP payload of the signaling profile (docs/architecture.md, signaling): an IPv6 header with next header 135, then the
// Mobility Header, optionally signed with an MN-HA Mobility Message Authentication option (RFC 4285 §5).
import { authenticatorLength, computeAuthenticator, verifyAuthenticator } from './auth.ts';
import { AuthSubtype, IPPROTO_MH } from './constants.ts';
import { DecodeError, EncodeError, type InvalidValue } from './errors.ts';
import * as ipv6 from './ipv6.ts';
import { messageCodecs } from './messages/index.ts';
import { mhChecksum, mobilityHeader } from './mh.ts';
import { AUTHENTICATOR_OFFSET } from './options/auth.ts';
import { lastOptionOffset } from './options/index.ts';
import type { MobilityMessage, SecurityAssociation, SignalingPacket } from './types.ts';
import { copyBytes, writeU16 } from './wire.ts';

export interface DecodedSignalingPacket extends SignalingPacket {
  /** The raw Mobility Header (a copy), for authenticator verification. */
  mh: Uint8Array;
  /** Offset in `mh` of the type octet of the last option, when that option is an authentication option. */
  authOffset: number | undefined;
}

export interface SignWith {
  sa: SecurityAssociation;
  /** Care-of address and home address that enter the authenticator (RFC 4285 §5.2). */
  coa: string;
  hoa: string;
}

const DEFAULT_HOP_LIMIT = 64;

/** Offset in `mh` of the last option's type octet if that option is an authentication option. */
function findAuthOffset(mh: Uint8Array, message: MobilityMessage): number | undefined {
  if (message.options.at(-1)?.type !== 'auth') return undefined;
  return lastOptionOffset(mh, messageCodecs[message.type].OPTIONS_AT, mh.length);
}

/**
 * Encodes the packet. With `sign`, an MN-HA authentication option with the SA's SPI is appended as the
 * last option, its authenticator computed over the MH with the checksum zeroed, and the checksum filled
 * in afterwards (docs/architecture.md, signaling).
 */
export function encodeSignalingPacket(p: SignalingPacket, sign?: SignWith): Uint8Array {
  let message = p.message;
  if (sign) {
    if (message.options.some((option) => option.type === 'auth')) {
      throw new EncodeError('message to sign already carries an authentication option');
    }
    const placeholder = new Uint8Array(authenticatorLength(sign.sa.algorithm));
    const authOption = {
      type: 'auth',
      subtype: AuthSubtype.MnHa,
      spi: sign.sa.spi,
      authenticator: placeholder,
    };
    message = { ...message, options: [...message.options, authOption] } as MobilityMessage;
  }
  const mhLength = mobilityHeader.encodingLength(message);
  const buf = new Uint8Array(ipv6.IPV6_HEADER_LENGTH + mhLength);
  const header = {
    trafficClass: 0,
    flowLabel: 0,
    payloadLength: mhLength,
    nextHeader: IPPROTO_MH,
    hopLimit: p.hopLimit ?? DEFAULT_HOP_LIMIT,
    src: p.src,
    dst: p.dst,
  };
  ipv6.encode(header, buf, 0);
  mobilityHeader.encode(message, buf, ipv6.IPV6_HEADER_LENGTH, p);
  if (sign) {
    const mh = buf.subarray(ipv6.IPV6_HEADER_LENGTH);
    const at = findAuthOffset(mh, message)! + AUTHENTICATOR_OFFSET;
    mh.set(computeAuthenticator(sign.sa, sign.coa, sign.hoa, mh.subarray(0, at)), at);
    writeU16(mh, 4, mhChecksum(mh, p.src, p.dst));
  }
  return buf;
}

/**
 * Decodes a UDP payload: IPv6 version 6, next header 135, payload length equal to the octets that follow
 * (trailing octets → drop), MH checksum over the inner addresses. Throws only DecodeError; a BU that is
 * whole but carries an invalid value comes back in it (`authenticatedRefusal`) for its receiver to
 * authenticate and refuse.
 */
export function decodeSignalingPacket(buf: Uint8Array): DecodedSignalingPacket {
  const header = ipv6.decode(buf, 0, buf.length);
  if (header.nextHeader !== IPPROTO_MH) throw new DecodeError(`next header ${header.nextHeader} is not 135`);
  const available = buf.length - ipv6.IPV6_HEADER_LENGTH;
  if (header.payloadLength !== available) {
    throw new DecodeError(`IPv6 payload length ${header.payloadLength} but ${available} octets follow`);
  }
  const pseudo = { src: buf.subarray(8, 24), dst: buf.subarray(24, 40) };
  const invalid: InvalidValue[] = [];
  const message = mobilityHeader.decode(buf, ipv6.IPV6_HEADER_LENGTH, buf.length, pseudo, invalid);
  const mh = copyBytes(buf, ipv6.IPV6_HEADER_LENGTH, buf.length);
  const packet = {
    src: header.src,
    dst: header.dst,
    hopLimit: header.hopLimit,
    message,
    mh,
    authOffset: findAuthOffset(mh, message),
  };
  const first = invalid[0];
  if (!first) return packet;
  // Only a BU is answered (RFC 3963 §6.1.2); anything else with an invalid value is dropped.
  if (message.type !== 'bindingUpdate') throw new DecodeError(first.reason);
  throw new DecodeError(first.reason, { kind: 'authenticatedRefusal', status: first.status, packet });
}

/**
 * Whether the packet's last option is a valid MN-HA authentication option for `sa` (right subtype,
 * SPI and authenticator, checked in constant time).
 */
export function verifyPacketAuth(
  decoded: DecodedSignalingPacket,
  sa: SecurityAssociation,
  coa: string,
  hoa: string,
): boolean {
  const last = decoded.message.options.at(-1);
  if (last?.type !== 'auth' || decoded.authOffset === undefined) return false;
  if (last.subtype !== AuthSubtype.MnHa || last.spi !== sa.spi) return false;
  const mhUpToSpi = decoded.mh.subarray(0, decoded.authOffset + AUTHENTICATOR_OFFSET);
  return verifyAuthenticator(sa, coa, hoa, mhUpToSpi, last.authenticator);
}
