// Mobility Message Replay Protection (RFC 4285 §6): a 64-bit NTP-format timestamp, alignment 8n+2.
import { OptionType } from '../constants.ts';
import { DecodeError, EncodeError } from '../errors.ts';
import type { MobilityOption } from '../types.ts';
import { readU8 } from '../wire.ts';

export type ReplayProtection = Extract<MobilityOption, { type: 'replayProtection' }>;

export const alignment = { multiple: 8, plus: 2 } as const;
const DATA_LENGTH = 8;
const U64_MAX = 0xffff_ffff_ffff_ffffn;

export function encodingLength(_v: ReplayProtection): number {
  return 2 + DATA_LENGTH;
}

export function encode(v: ReplayProtection, buf: Uint8Array, offset: number): Uint8Array {
  if (typeof v.timestamp !== 'bigint' || v.timestamp < 0n || v.timestamp > U64_MAX) {
    throw new EncodeError('replay protection timestamp must be a bigint in 0..2^64-1');
  }
  buf[offset] = OptionType.MobilityMessageReplayProtection;
  buf[offset + 1] = DATA_LENGTH;
  let t = v.timestamp;
  for (let i = 7; i >= 0; i--) {
    buf[offset + 2 + i] = Number(t & 0xffn);
    t >>= 8n;
  }
  return buf;
}

export function decode(buf: Uint8Array, offset: number, end: number): ReplayProtection {
  if (end - offset - 2 !== DATA_LENGTH) throw new DecodeError('Replay Protection option length is not 8');
  let t = 0n;
  for (let i = 0; i < 8; i++) t = (t << 8n) | BigInt(readU8(buf, offset + 2 + i));
  return { type: 'replayProtection', timestamp: t };
}
