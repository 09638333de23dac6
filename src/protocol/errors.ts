// Errors of the wire codec (STYLE §3, GoBGP): a decode error already carries what to answer.
import { OfflinkError } from '../errors.ts';

/**
 * What the receiver should do about a message that failed to decode. RFC 6275 §9.2: a bad checksum or
 * length is dropped silently; an unknown MH type is answered with a Binding Error (status 2); a BA
 * status is for problems the home agent's processing level detects.
 */
export type DecodeAnswer =
  | { kind: 'drop' }
  | { kind: 'bindingError'; status: number }
  | { kind: 'bindingAcknowledgement'; status: number };

/** The only error decoding ever throws. */
export class DecodeError extends OfflinkError {
  override readonly code = 'ERR_DECODE' as const;
  readonly answer: DecodeAnswer;
  constructor(message: string, answer: DecodeAnswer = { kind: 'drop' }) {
    super('ERR_DECODE', message);
    this.answer = answer;
  }
}

/** A value that cannot be put on the wire (out-of-range field, message too long). A caller bug. */
export class EncodeError extends OfflinkError {
  override readonly code = 'ERR_ENCODE' as const;
  constructor(message: string) {
    super('ERR_ENCODE', message);
  }
}
