// The Mobility Header (RFC 6275 §6.1.1): payload proto 8, header length 8 (8-octet units beyond the
// first 8), MH type 8, reserved 8, checksum 16, message data. Its checksum covers the IPv6 pseudo-header
// (RFC 2460 §8.1) with next header 135.
import { parseIPv6 } from './address.ts';
import { IPPROTO_MH, IPPROTO_NONE } from './constants.ts';
import { DecodeError, EncodeError, type InvalidValue } from './errors.ts';
import { messageCodecs, messageCodecsByMhType } from './messages/index.ts';
import type { MobilityMessage } from './types.ts';
import { checkRoom, readU8, readU16, writeU16 } from './wire.ts';

/** Octets before the message data. */
export const MH_HEADER_LENGTH = 6;
/** The header length octet can describe at most (255 + 1) × 8 octets. */
export const MH_MAX_LENGTH = 2048;

/** Addresses of the enclosing IPv6 header, as text or as 16 octets. */
export interface PseudoHeader {
  src: string | Uint8Array;
  dst: string | Uint8Array;
}

function addressBytes(a: string | Uint8Array): Uint8Array {
  if (typeof a === 'string') return parseIPv6(a);
  if (a.length !== 16) throw new EncodeError('pseudo-header address must be 16 octets');
  return a;
}

/** Sum of the 16-bit big-endian words of buf[start..end), an odd last octet padded with zero. */
function sumWords(buf: Uint8Array, start: number, end: number): number {
  let s = 0;
  let i = start;
  for (; i + 1 < end; i += 2) s += (readU8(buf, i) << 8) | readU8(buf, i + 1);
  if (i < end) s += readU8(buf, i) << 8;
  return s;
}

/**
 * The MH checksum of `mh` (the whole Mobility Header) between `src` and `dst`: one's complement of the
 * one's complement sum of the pseudo-header and the MH, its checksum field counted as zero.
 */
export function mhChecksum(mh: Uint8Array, src: string | Uint8Array, dst: string | Uint8Array): number {
  const s16 = addressBytes(src);
  const d16 = addressBytes(dst);
  const len = mh.length;
  // RFC 2460 §8.1 pseudo-header: src, dst, 32-bit upper-layer length, 24 zero bits, next header.
  let s =
    sumWords(s16, 0, 16) + sumWords(d16, 0, 16) + Math.floor(len / 0x10000) + (len & 0xffff) + IPPROTO_MH;
  s += sumWords(mh, 0, Math.min(4, len)) + sumWords(mh, 6, len);
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return ~s & 0xffff;
}

function checksumValid(mh: Uint8Array, pseudo: PseudoHeader): boolean {
  const stored = readU16(mh, 4);
  const computed = mhChecksum(mh, pseudo.src, pseudo.dst);
  // 0x0000 and 0xffff are the two one's complement zeros; a sender may write either.
  return stored === computed || (computed === 0 && stored === 0xffff);
}

export const mobilityHeader = {
  /** Whole MH length: a multiple of 8, since the options are padded out (RFC 6275 §6.1.1). */
  encodingLength(msg: MobilityMessage): number {
    const codec = messageCodecs[msg.type];
    if (!codec) throw new EncodeError(`unknown message type ${String(msg.type)}`);
    return MH_HEADER_LENGTH + codec.encodingLength(msg);
  },

  /** Writes the MH at `offset` with its checksum for the given pseudo-header addresses. */
  encode(msg: MobilityMessage, buf: Uint8Array, offset: number, pseudo: PseudoHeader): Uint8Array {
    const len = mobilityHeader.encodingLength(msg);
    if (len > MH_MAX_LENGTH)
      throw new EncodeError(`Mobility Header of ${len} octets exceeds ${MH_MAX_LENGTH}`);
    checkRoom(buf, offset, len);
    const codec = messageCodecs[msg.type];
    buf[offset] = IPPROTO_NONE;
    buf[offset + 1] = len / 8 - 1;
    buf[offset + 2] = codec.mhType;
    buf[offset + 3] = 0;
    writeU16(buf, offset + 4, 0);
    codec.encode(msg, buf, offset + MH_HEADER_LENGTH);
    const mh = buf.subarray(offset, offset + len);
    writeU16(buf, offset + 4, mhChecksum(mh, pseudo.src, pseudo.dst));
    return buf;
  },

  /**
   * Decodes the MH that fills `offset..end` exactly. With `pseudo` the checksum is verified. Follows
   * RFC 6275 §9.2: bad length, checksum or payload proto → drop; unknown MH type → Binding Error 2.
   */
  decode(
    buf: Uint8Array,
    offset: number,
    end: number,
    pseudo?: PseudoHeader,
    invalid?: InvalidValue[],
  ): MobilityMessage {
    if (
      !(
        Number.isInteger(offset) &&
        Number.isInteger(end) &&
        offset >= 0 &&
        offset <= end &&
        end <= buf.length
      )
    ) {
      throw new DecodeError(`bad bounds ${offset}..${end} for a buffer of ${buf.length}`);
    }
    const available = end - offset;
    if (available < 8) throw new DecodeError(`Mobility Header of ${available} octets is shorter than 8`);
    const len = (readU8(buf, offset + 1) + 1) * 8;
    if (len !== available) {
      throw new DecodeError(`MH header length says ${len} octets but ${available} are there`);
    }
    const mh = buf.subarray(offset, end);
    if (pseudo && !checksumValid(mh, pseudo)) throw new DecodeError('MH checksum mismatch');
    if (buf[offset] !== IPPROTO_NONE) throw new DecodeError(`MH payload proto ${buf[offset]} is not 59`);
    const mhType = readU8(buf, offset + 2);
    const codec = messageCodecsByMhType.get(mhType);
    if (!codec) throw new DecodeError(`unrecognized MH type ${mhType}`, { kind: 'bindingError', status: 2 });
    if (len < MH_HEADER_LENGTH + codec.FIXED_LENGTH) {
      throw new DecodeError(`MH header length ${len} is too small for MH type ${mhType}`);
    }
    return codec.decode(buf, offset + MH_HEADER_LENGTH, end, invalid);
  },
};
