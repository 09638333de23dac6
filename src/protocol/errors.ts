// Errors of the wire codec (STYLE §3, GoBGP): a decode error already carries what to answer.
import { OfflinkError } from '../errors.ts';
import type { DecodedSignalingPacket } from './packet.ts';

/**
 * What the receiver should do about a message that failed to decode. RFC 6275 §9.2: a bad checksum or
 * length is dropped silently; an unknown MH type is answered with a Binding Error (status 2); a BA
 * status is for problems the home agent's processing level detects.
 */
export type DecodeAnswer =
  | { kind: 'drop' }
  | { kind: 'bindingError'; status: number }
  | { kind: 'bindingAcknowledgement'; status: number }
  /**
   * A whole Binding Update with a value its receiver must refuse (RFC 3963 §6.1.2: a Mobile Network
   * Prefix longer than 128 → 141). `packet` is the message as sent, the offending option kept as its
   * octets (`raw`), so its authentication can be verified. The answer is a signed BA with `status`, and
   * only once that verifies: an unauthenticated BU gets what any does (an unsigned 146).
   */
  | { kind: 'authenticatedRefusal'; status: number; packet: DecodedSignalingPacket };

/** The only error decoding ever throws. */
export class DecodeError extends OfflinkError {
  override readonly code = 'ERR_DECODE' as const;
  readonly answer: DecodeAnswer;
  constructor(message: string, answer: DecodeAnswer = { kind: 'drop' }) {
    super('ERR_DECODE', message);
    this.answer = answer;
  }
}

/**
 * An option whose octets are well formed but whose value is invalid (`status` says why, as a BA status).
 * The option list keeps such an option raw when its caller collects them (`InvalidValue[]`), so the
 * packet decoder can hand a BU over whole (`authenticatedRefusal`); anywhere else it is dropped.
 */
export class InvalidValueError extends DecodeError {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/**
 * An option whose octets are well formed but whose value is invalid, where the RFC answers that option
 * on its own instead of refusing the message (RFC 5555 §3.2.1: an IPv4 home address or prefix is refused
 * in the IPv4 Address Acknowledgement, the IPv6 binding is not). Inside a message such an option is kept
 * raw and the rest decoded, so a receiver that does not use it skips it as it skips an unknown option
 * (RFC 6275 §6.2.1); decoded on its own, it is refused with this error.
 */
export class OptionValueError extends DecodeError {}

/** An invalid value found while decoding (InvalidValueError), collected instead of thrown. */
export interface InvalidValue {
  status: number;
  reason: string;
}

/** A value that cannot be put on the wire (out-of-range field, message too long). A caller bug. */
export class EncodeError extends OfflinkError {
  override readonly code = 'ERR_ENCODE' as const;
  constructor(message: string) {
    super('ERR_ENCODE', message);
  }
}
