// What to send back for a datagram that failed to decode: the decoder's DecodeError says (GoBGP style)
// whether to drop it, answer a Binding Error, or answer a Binding Acknowledgement with a status. The reply
// goes to the inner source (docs/architecture.md, signaling) and is unsigned: nothing in a malformed packet can be verified.
import { formatIPv6 } from '../protocol/address.ts';
import { BaFlag, BuFlag, MhType } from '../protocol/constants.ts';
import type { DecodeAnswer } from '../protocol/errors.ts';
import type { SignalingPacket } from '../protocol/types.ts';

/** The reply packet, or undefined to drop silently. `data` is the whole UDP payload. */
export function decodeErrorReply(
  data: Uint8Array,
  answer: DecodeAnswer,
  haAddress: string,
): SignalingPacket | undefined {
  // An authenticatedRefusal is answered signed, after authentication, by BU processing; never from here.
  if (answer.kind === 'drop' || answer.kind === 'authenticatedRefusal' || data.length < 48) return undefined;
  const peer = formatIPv6(data, 8);
  if (answer.kind === 'bindingError') {
    // RFC 6275 §6.1.9: the Home Address field is unspecified when there is no Home Address option.
    return {
      src: haAddress,
      dst: peer,
      message: { type: 'bindingError', status: answer.status, homeAddress: '::', options: [] },
    };
  }
  // MH offset 2 is the type; a BU's sequence is at MH offset 6 and its flags at 8 (RFC 6275 §6.1.7).
  const isBu = data[42] === MhType.BindingUpdate && data.length >= 50;
  const flags = isBu ? (data[48]! << 8) | data[49]! : 0;
  return {
    src: haAddress,
    dst: peer,
    message: {
      type: 'bindingAcknowledgement',
      status: answer.status,
      flags: flags & BuFlag.R ? BaFlag.R : 0,
      sequence: isBu ? (data[46]! << 8) | data[47]! : 0,
      lifetime: 0,
      options: [],
    },
  };
}
