// Message data codecs by MH type (RFC 6275 §6.1.1: the MH type selects the message data format).
import { MhType } from '../constants.ts';
import type { InvalidValue } from '../errors.ts';
import type { MobilityMessage } from '../types.ts';
import * as bindingAcknowledgement from './bindingAcknowledgement.ts';
import * as bindingError from './bindingError.ts';
import * as bindingRefreshRequest from './bindingRefreshRequest.ts';
import * as bindingUpdate from './bindingUpdate.ts';

export interface MessageCodec {
  readonly mhType: number;
  /** Octets of fixed fields after the 6-octet MH header; the message's minimum length is 6 + this. */
  readonly FIXED_LENGTH: number;
  /** MH offset of the first option. */
  readonly OPTIONS_AT: number;
  encodingLength(m: MobilityMessage): number;
  encode(m: MobilityMessage, buf: Uint8Array, offset: number): Uint8Array;
  /** With `invalid`, options with an invalid value are collected there (and kept raw) instead of thrown. */
  decode(buf: Uint8Array, offset: number, end: number, invalid?: InvalidValue[]): MobilityMessage;
}

const entry = (mhType: number, codec: object) => ({ mhType, ...codec }) as MessageCodec;

/** By decoded message type. */
export const messageCodecs: Record<MobilityMessage['type'], MessageCodec> = {
  bindingRefreshRequest: entry(MhType.BindingRefreshRequest, bindingRefreshRequest),
  bindingUpdate: entry(MhType.BindingUpdate, bindingUpdate),
  bindingAcknowledgement: entry(MhType.BindingAcknowledgement, bindingAcknowledgement),
  bindingError: entry(MhType.BindingError, bindingError),
};

/** By MH type octet; a type missing here is answered with Binding Error status 2 (RFC 6275 §9.2). */
export const messageCodecsByMhType: ReadonlyMap<number, MessageCodec> = new Map(
  Object.values(messageCodecs).map((codec) => [codec.mhType, codec]),
);
