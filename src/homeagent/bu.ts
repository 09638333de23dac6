// Binding Update processing at the home agent (RFC 6275 §9.5.1 and §10.3.1–10.3.2, RFC 3963 §6.1–6.2,
// RFC 4285 §5–6, docs/architecture.md, signaling). A pure function (STYLE 4, GoBGP's table): it reads the cache, returns the
// BA to send, the data-plane intents and the cache ops, and never touches the OS. Every rejection leaves
// through `reject()` with exactly one status (UMIP), and a rejected BU changes nothing.
//
// Order of checks: authentication first (nothing unauthenticated is looked at further), then replay
// protection, then the RFC 6275 / RFC 3963 checks.
//
// Unauthenticated BUs (no MN-HA option, unknown SPI, wrong authenticator) get a BA with status 146 that
// is NOT signed: for an unknown SPI there is no key, and signing an answer to a forged BU would hand an
// attacker a genuine HA signature over a sequence number of its choice that it could replay to the real
// MR. An MR cannot verify such a BA and treats it as a diagnostic only. It is no larger than the BU, so it
// amplifies nothing, and the daemon rate-limits it.
//
// Replay protection option in the BA (RFC 4285 §6): an accepted or otherwise rejected BU has its
// timestamp echoed; 144 and 145 carry the home agent's current time so the MR can resynchronise.
import type { BindingChange } from '../dataplane/types.ts';
import { isIPv4Text, prefixContains } from '../protocol/address.ts';
import { ntpTimestamp, ntpTimestampToMs } from '../protocol/auth.ts';
import {
  BaFlag,
  BaStatus,
  BuFlag,
  IPv4AckStatus,
  LIFETIME_UNIT_SECONDS,
  OptionType,
} from '../protocol/constants.ts';
import type { DecodedSignalingPacket, SignWith } from '../protocol/packet.ts';
import { verifyPacketAuth } from '../protocol/packet.ts';
import { seqNewer } from '../protocol/sequence.ts';
import type {
  BindingAcknowledgement,
  BindingUpdate,
  MobilityOption,
  SignalingPacket,
} from '../protocol/types.ts';
import { type Binding, type BindingCacheView, type CacheOp, toTunnelBinding } from './bcache.ts';
import type { MobileRouterEntry, PrefixTable } from './prefixtable.ts';

export interface BuContext {
  /** The HA address: inner destination of BUs, inner source of BAs. */
  haAddress: string;
  table: PrefixTable;
  cache: BindingCacheView;
  maxLifetimeSeconds: number;
  refreshAdviceSeconds?: number | undefined;
  replayWindowSeconds: number;
}

export interface BuInput {
  packet: DecodedSignalingPacket;
  /** Outer source address of the UDP datagram: the care-of address. */
  source: string;
  /**
   * What the decoder found invalid in this otherwise whole BU (DecodeError `authenticatedRefusal`, e.g.
   * RFC 3963 §6.1.2's MNP longer than 128): refused with that status once the BU authenticates.
   */
  refusal?: { status: number; reason: string } | undefined;
}

export type BuEvent = 'register' | 'refresh' | 'move' | 'update' | 'deregister' | 'reject';

export interface BaReply {
  /** Inner packet: HA address → home address. */
  packet: SignalingPacket & { message: BindingAcknowledgement };
  /** Undefined for the unsigned 146 answer to an unauthenticated BU. */
  sign: SignWith | undefined;
}

export interface BuResult {
  status: number;
  event: BuEvent;
  /** Home address as claimed by the BU (inner source). */
  hoa: string;
  /** Name of the mobile router whose SA authenticated the BU, if any. */
  mobileRouter: string | undefined;
  /** The BA. Always built, so a later failure (store, data plane) can still be answered. */
  reply: BaReply;
  /** Whether to send `reply`: every rejection, and an acceptance the BU asked for (A flag). */
  acknowledge: boolean;
  intents: BindingChange[];
  cacheOps: CacheOp[];
  /** The binding as it is after the BU (accepted registrations), or as it was (deregistration). */
  binding: Binding | undefined;
  /** Why, for logs. */
  reason: string;
}

export function processBindingUpdate(ctx: BuContext, input: BuInput, now: number): BuResult {
  const { packet, source: coa } = input;
  const bu = packet.message as BindingUpdate;
  if (bu.type !== 'bindingUpdate') throw new TypeError('processBindingUpdate: not a Binding Update');
  const hoa = packet.src;
  const hasR = (bu.flags & BuFlag.R) !== 0;
  let mr: MobileRouterEntry | undefined;
  let timestamp: bigint | undefined;

  const reply = (status: number, sequence: number, lifetime: number, options: MobilityOption[]): BaReply => ({
    packet: {
      src: ctx.haAddress,
      dst: hoa,
      message: {
        type: 'bindingAcknowledgement',
        status,
        flags: hasR ? BaFlag.R : 0,
        sequence,
        lifetime,
        options,
      },
    },
    sign: mr ? { sa: mr.sa, coa, hoa } : undefined,
  });

  // The one exit for every rejection.
  const reject = (status: number, reason: string, sequence = bu.sequence): BuResult => {
    const ts =
      status === BaStatus.MIPV6_ID_MISMATCH ||
      status === BaStatus.MIPV6_MESG_ID_REQD ||
      timestamp === undefined
        ? ntpTimestamp(now)
        : timestamp;
    const options: MobilityOption[] = mr ? [{ type: 'replayProtection', timestamp: ts }] : [];
    return {
      status,
      event: 'reject',
      hoa,
      mobileRouter: mr?.name,
      reply: reply(status, sequence, 0, options),
      acknowledge: true,
      intents: [],
      cacheOps: [],
      binding: undefined,
      reason,
    };
  };

  // RFC 4285 §5: the MN-HA authentication option, last; SPI names the SA, the authenticator covers CoA ‖ HoA ‖ MH.
  const auth = bu.options.at(-1);
  if (auth?.type !== 'auth' || packet.authOffset === undefined)
    return reject(BaStatus.MIPV6_AUTH_FAIL, 'no MN-HA authentication option last');
  const candidate = ctx.table.bySpi(auth.spi);
  if (!candidate) return reject(BaStatus.MIPV6_AUTH_FAIL, `unknown SPI ${auth.spi}`);
  if (!verifyPacketAuth(packet, candidate.sa, coa, hoa))
    return reject(BaStatus.MIPV6_AUTH_FAIL, 'wrong authenticator');
  mr = candidate;

  // The SA is bound to one home address (docs/architecture.md, signaling).
  if (hoa !== mr.homeAddress) {
    return ctx.table.byHomeAddress(hoa)
      ? reject(BaStatus.MIPV6_AUTH_FAIL, `SPI ${auth.spi} belongs to ${mr.homeAddress}, not ${hoa}`)
      : reject(BaStatus.NOT_HOME_AGENT_FOR_THIS_MN, `${hoa} is not a configured home address`);
  }

  // RFC 4285 §6: timestamp within the window of our clock and newer than the last accepted one.
  const replay = bu.options.find((option) => option.type === 'replayProtection');
  if (replay?.type !== 'replayProtection')
    return reject(BaStatus.MIPV6_MESG_ID_REQD, 'no replay protection option');
  timestamp = replay.timestamp;
  const tsMs = ntpTimestampToMs(timestamp);
  if (Math.abs(tsMs - now) > ctx.replayWindowSeconds * 1000) {
    return reject(BaStatus.MIPV6_ID_MISMATCH, `timestamp ${Math.round(tsMs - now)} ms off our clock`);
  }
  const last = ctx.cache.lastTimestamp(hoa);
  if (last !== undefined && !timestampNewer(timestamp, last)) {
    return reject(BaStatus.MIPV6_ID_MISMATCH, 'timestamp not newer than the last accepted (replay)');
  }

  // RFC 6275 §10.3.1: only home registrations are served here.
  if ((bu.flags & BuFlag.H) === 0) return reject(BaStatus.HOME_REGISTRATION_NOT_SUPPORTED, 'H flag not set');
  if (packet.dst !== ctx.haAddress)
    return reject(BaStatus.NOT_HOME_AGENT_FOR_THIS_MN, `sent to ${packet.dst}`);

  // RFC 6275 §9.5.1: sequence must be newer than the stored one; the BA carries the stored number.
  const existing = ctx.cache.get(hoa);
  if (existing && !seqNewer(bu.sequence, existing.sequence)) {
    return reject(
      BaStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW,
      `sequence ${bu.sequence} not newer than ${existing.sequence}`,
      existing.sequence,
    );
  }

  // RFC 3963 §6.2: an existing binding's R flag may not change; this HA serves mobile routers only.
  if (existing && !hasR)
    return reject(BaStatus.REGISTRATION_TYPE_CHANGE_DISALLOWED, 'R flag cleared on an existing binding');
  if (!hasR) return reject(BaStatus.MOBILE_ROUTER_OPERATION_NOT_PERMITTED, 'R flag not set');

  // The decoder's refusal (an invalid prefix: 141), here where the RFC 3963 §6.1 checks begin, and before
  // a deregistration could be taken from a malformed BU.
  if (input.refusal) return reject(input.refusal.status, input.refusal.reason);

  // RFC 6275 §9.5.1: lifetime 0, or CoA equal to the HoA, is a deregistration.
  if (bu.lifetime === 0 || coa === hoa) {
    // RFC 6275 §10.3.2: no home registration to remove → 133.
    if (!existing) return reject(BaStatus.NOT_HOME_AGENT_FOR_THIS_MN, 'deregistration without a binding');
    return {
      status: BaStatus.ACCEPTED,
      event: 'deregister',
      hoa,
      mobileRouter: mr.name,
      reply: reply(BaStatus.ACCEPTED, bu.sequence, 0, [{ type: 'replayProtection', timestamp }]),
      acknowledge: (bu.flags & BuFlag.A) !== 0,
      intents: [{ op: 'delete', binding: toTunnelBinding(existing) }],
      cacheOps: [{ op: 'delete', hoa }],
      binding: existing,
      reason: 'lifetime 0',
    };
  }

  // RFC 3963 §6.1: explicit mode authorizes each Mobile Network Prefix option; implicit uses the table.
  const mnps = bu.options.filter((option) => option.type === 'mobileNetworkPrefix');
  const prefixes: string[] = [];
  for (const mnp of mnps) {
    const check = ctx.table.authorize(mr, mnp.prefix, mnp.prefixLength);
    if (!check.ok) return reject(check.status, `prefix ${mnp.prefix}/${mnp.prefixLength} refused`);
    if (!prefixes.includes(check.prefix)) prefixes.push(check.prefix);
  }
  const mode = mnps.length > 0 ? 'explicit' : 'implicit';
  if (mode === 'implicit') prefixes.push(...mr.prefixes.filter((p) => !isIPv4Text(p)));
  if (prefixes.length === 0) return reject(BaStatus.FORWARDING_SETUP_FAILED, 'no prefixes for implicit mode');
  // A CoA inside its own MNP would tunnel the tunnel into itself.
  if (prefixes.some((p) => prefixContains(p, coa))) {
    return reject(BaStatus.ADMINISTRATIVELY_PROHIBITED, `care-of address ${coa} lies in the mobile network`);
  }

  // RFC 5555 §4: the IPv4 side, after the IPv6 one is known to stand; its refusals are in the acknowledgements.
  const v4 = ipv4Prefixes(ctx.table, mr, bu.options);
  for (const p of v4.prefixes) if (!prefixes.includes(p)) prefixes.push(p);

  // RFC 6275 §10.3.1: the granted lifetime may be shorter than requested; expiry matches what the BA says.
  const units = Math.min(bu.lifetime, Math.floor(ctx.maxLifetimeSeconds / LIFETIME_UNIT_SECONDS));
  const lifetimeSeconds = units * LIFETIME_UNIT_SECONDS;
  // Strings and arrays the cache already holds are reused (the configured HoA and prefixes, the previous
  // binding's CoA and prefixes): 100k bindings would otherwise each keep copies (bench/profiles/ha-core.md).
  const samePrefixSet = existing !== undefined && samePrefixes(existing.prefixes, prefixes);
  const binding: Binding = {
    hoa: mr.homeAddress,
    coa: existing?.coa === coa ? existing.coa : coa,
    prefixes: samePrefixSet ? existing.prefixes : sameList(prefixes, mr.prefixes) ? mr.prefixes : prefixes,
    sequence: bu.sequence,
    lifetimeSeconds,
    expiresAt: now + lifetimeSeconds * 1000,
    mode,
    lastTimestamp: timestamp,
    id: existing?.id ?? ctx.cache.peekFreeId(),
    registeredAt: existing?.registeredAt ?? now,
    updatedAt: now,
  };
  const moved = existing !== undefined && existing.coa !== coa;
  const changed = existing !== undefined && !samePrefixSet;
  const event: BuEvent = !existing ? 'register' : moved ? 'move' : changed ? 'update' : 'refresh';

  const options: MobilityOption[] = [];
  // RFC 6275 §6.2.4: Binding Refresh Advice, only when shorter than the granted lifetime.
  const advice = ctx.refreshAdviceSeconds;
  if (advice !== undefined && advice < lifetimeSeconds) {
    options.push({
      type: 'bindingRefreshAdvice',
      interval: Math.max(1, Math.floor(advice / LIFETIME_UNIT_SECONDS)),
    });
  }
  options.push(...v4.acks, { type: 'replayProtection', timestamp });

  return {
    status: BaStatus.ACCEPTED,
    event,
    hoa,
    mobileRouter: mr.name,
    // RFC 6275 §10.3.1: an accepted BU is acknowledged when it asked (A flag).
    reply: reply(BaStatus.ACCEPTED, bu.sequence, units, options),
    acknowledge: (bu.flags & BuFlag.A) !== 0,
    // A CoA or prefix change is a `set` with the same id: the data plane replaces routes in place.
    intents: event === 'refresh' ? [] : [{ op: 'set', binding: toTunnelBinding(binding) }],
    cacheOps: [{ op: 'put', binding }],
    binding,
    reason: event,
  };
}

/**
 * The IPv4 prefixes of an accepted BU and the IPv4 Address Acknowledgements that answer its IPv4 Home
 * Address options (RFC 5555 §3.1.1, §3.2.1, §4), one per option in their order. With the P flag the option
 * claims a mobile network prefix; without it, an IPv4 home address (a /32; 0.0.0.0 asks for one to be
 * assigned, which this HA does not do: 132). A refusal is in the acknowledgement only: the IPv6 binding
 * stands. Without any IPv4 option the MR's configured IPv4 prefixes apply, as implicit mode does for IPv6.
 * An option the decoder kept raw (type 29 with an invalid prefix length) is answered 131.
 */
function ipv4Prefixes(
  table: PrefixTable,
  mr: MobileRouterEntry,
  options: readonly MobilityOption[],
): { prefixes: string[]; acks: MobilityOption[] } {
  const requests = options.filter(
    (o) => o.type === 'ipv4HomeAddress' || (o.type === 'raw' && o.code === OptionType.IPv4HomeAddress),
  );
  if (requests.length === 0) return { prefixes: mr.prefixes.filter(isIPv4Text), acks: [] };
  const prefixes: string[] = [];
  const acks: MobilityOption[] = [];
  const ack = (status: number, homeAddress: string, prefixLength: number) =>
    acks.push({ type: 'ipv4AddressAcknowledgement', status, homeAddress, prefixLength });
  for (const o of requests) {
    if (o.type !== 'ipv4HomeAddress') {
      ack(IPv4AckStatus.INVALID_IPV4_ADDRESS, '0.0.0.0', 0);
      continue;
    }
    if (!o.requestPrefix && o.homeAddress === '0.0.0.0') {
      ack(IPv4AckStatus.DYNAMIC_IPV4_HOME_ADDRESS_ASSIGNMENT_NOT_AVAILABLE, o.homeAddress, 0);
      continue;
    }
    const length = o.requestPrefix ? o.prefixLength : 32;
    const check = table.authorizeIPv4(mr, o.homeAddress, length);
    if (!check.ok) {
      ack(check.status, o.homeAddress, 0);
      continue;
    }
    if (!prefixes.includes(check.prefix)) prefixes.push(check.prefix);
    ack(IPv4AckStatus.SUCCESS, o.homeAddress, length);
  }
  return { prefixes, acks };
}

function samePrefixes(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((p) => b.includes(p));
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((p, i) => p === b[i]);
}

/** NTP timestamps compared through time, so the 2036 era change does not reverse the order. */
function timestampNewer(a: bigint, b: bigint): boolean {
  const da = ntpTimestampToMs(a);
  const db = ntpTimestampToMs(b);
  return da > db || (da === db && a > b);
}
