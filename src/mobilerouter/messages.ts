// What the mobile router puts on the wire and how it sorts what comes back (RFC 6275 §11.7.1–11.7.4,
// RFC 3963 §5, RFC 4285, docs/architecture.md, signaling). Pure: no timers, no sockets.
import { isIPv4Text } from '../protocol/address.ts';
import { ntpTimestamp } from '../protocol/auth.ts';
import { BuFlag, LIFETIME_UNIT_SECONDS } from '../protocol/constants.ts';
import { DecodeError } from '../protocol/errors.ts';
import {
  type DecodedSignalingPacket,
  decodeSignalingPacket,
  encodeSignalingPacket,
} from '../protocol/packet.ts';
import type {
  BindingAcknowledgement,
  BindingError,
  MobilityOption,
  SecurityAssociation,
} from '../protocol/types.ts';
import type { Datagram } from '../signaling/udp.ts';
import type { RegistrationMode } from './config.ts';

/** A home registration of a mobile router: acknowledge, home registration, mobile router (RFC 3963 §5.1). */
export const REGISTRATION_FLAGS = BuFlag.A | BuFlag.H | BuFlag.R;

export interface BindingUpdateSpec {
  hoa: string;
  haAddress: string;
  coa: string;
  sa: SecurityAssociation;
  mode: RegistrationMode;
  prefixes: readonly string[];
  sequence: number;
  /** Requested lifetime in seconds; 0 deregisters. Rounded up to units of 4 s, at most 0xffff units. */
  lifetimeSeconds: number;
  /** Unix ms for the Replay Protection option (RFC 4285 §6). */
  timestampMs: number;
}

export function lifetimeUnits(seconds: number): number {
  return Math.min(0xffff, Math.ceil(seconds / LIFETIME_UNIT_SECONDS));
}

/**
 * Signed BU as a UDP payload: inner source HoA, inner destination HA; MNP options in explicit mode (IPv4
 * prefixes as IPv4 Home Address options with the P flag, RFC 5555)
 * (RFC 3963 §5.2, also on deregistration so the mode stays the same), Replay Protection, then MN-HA
 * authentication last over CoA ‖ HoA ‖ MH.
 */
export function buildBindingUpdate(s: BindingUpdateSpec): Uint8Array {
  const options: MobilityOption[] = [];
  if (s.mode === 'explicit') {
    for (const p of s.prefixes) {
      const slash = p.indexOf('/');
      const [address, prefixLength] = [p.slice(0, slash), Number(p.slice(slash + 1))];
      // IPv4 prefixes of a dual-stack network: an IPv4 Home Address option with P (RFC 5555 §3.1.1).
      options.push(
        isIPv4Text(p)
          ? { type: 'ipv4HomeAddress', homeAddress: address, prefixLength, requestPrefix: true }
          : { type: 'mobileNetworkPrefix', prefix: address, prefixLength },
      );
    }
  }
  options.push({ type: 'replayProtection', timestamp: ntpTimestamp(s.timestampMs) });
  return encodeSignalingPacket(
    {
      src: s.hoa,
      dst: s.haAddress,
      message: {
        type: 'bindingUpdate',
        sequence: s.sequence,
        flags: REGISTRATION_FLAGS,
        lifetime: lifetimeUnits(s.lifetimeSeconds),
        options,
      },
    },
    { sa: s.sa, coa: s.coa, hoa: s.hoa },
  );
}

/** What arrived on the MR's signaling socket, sorted. */
export type Inbound =
  | { kind: 'malformed'; reason: string }
  | { kind: 'foreign'; reason: string }
  | { kind: 'bindingAcknowledgement'; packet: DecodedSignalingPacket; ba: BindingAcknowledgement }
  | { kind: 'bindingRefreshRequest'; packet: DecodedSignalingPacket }
  | { kind: 'bindingError'; packet: DecodedSignalingPacket; be: BindingError }
  | { kind: 'unexpected'; reason: string };

/**
 * Decode a datagram and check it comes from our HA and is addressed to our HoA: outer source port = the
 * HA's port, inner source = HA address, inner destination = HoA (RFC 6275 §11.7.3 first checks). The
 * outer source ADDRESS is not checked: an HA listening on `::` answers from whatever address the kernel
 * picks for the route back (its uplink address, not the HA address). What makes a BA count is its MN-HA
 * authentication, checked by the caller, who knows which CoA the answered BU was sent from; BRR and BE
 * are unauthenticated and can only ever make the router send one more authenticated BU.
 */
export function classifyInbound(
  d: Datagram,
  expect: { haAddress: string; haPort: number; hoa: string },
): Inbound {
  if (d.port !== expect.haPort) {
    return { kind: 'foreign', reason: `from [${d.address}]:${d.port}, not the home agent's port` };
  }
  let packet: DecodedSignalingPacket;
  try {
    packet = decodeSignalingPacket(d.data);
  } catch (err) {
    if (err instanceof DecodeError) return { kind: 'malformed', reason: err.message };
    throw err;
  }
  if (packet.src !== expect.haAddress || packet.dst !== expect.hoa) {
    return { kind: 'foreign', reason: `inner ${packet.src} → ${packet.dst}, not HA → HoA` };
  }
  const m = packet.message;
  switch (m.type) {
    case 'bindingAcknowledgement':
      return { kind: 'bindingAcknowledgement', packet, ba: m };
    case 'bindingRefreshRequest':
      return { kind: 'bindingRefreshRequest', packet };
    case 'bindingError':
      return { kind: 'bindingError', packet, be: m };
    default:
      return { kind: 'unexpected', reason: `${m.type} sent to a mobile router` };
  }
}

/** The Replay Protection timestamp of a message, if it carries one. */
export function replayTimestamp(options: readonly MobilityOption[]): bigint | undefined {
  const option = options.find((x) => x.type === 'replayProtection');
  return option?.type === 'replayProtection' ? option.timestamp : undefined;
}

/** Binding Refresh Advice interval in seconds, if present (RFC 6275 §6.2.4). */
export function refreshAdviceSeconds(options: readonly MobilityOption[]): number | undefined {
  const option = options.find((x) => x.type === 'bindingRefreshAdvice');
  return option?.type === 'bindingRefreshAdvice' ? option.interval * LIFETIME_UNIT_SECONDS : undefined;
}
