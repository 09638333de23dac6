// What a message from the home agent does to the mobile router (RFC 6275 §11.7.3, §11.7.4, §11.3.6;
// RFC 3963 §5.3; RFC 4285 §6): a BA acts only when it answers a BU we sent, is authentic and fresh; BRR
// and BE are unauthenticated and can only ever cause one more authenticated BU.
import { ntpTimestampToMs } from '../protocol/auth.ts';
import { BaFlag, BaStatus, BeStatus, baStatusName } from '../protocol/constants.ts';
import type { DecodedSignalingPacket } from '../protocol/packet.ts';
import { verifyPacketAuth } from '../protocol/packet.ts';
import { seqNewer } from '../protocol/sequence.ts';
import type { BindingAcknowledgement, BindingError } from '../protocol/types.ts';
import {
  acknowledged,
  findSent,
  inExchange,
  outstanding,
  type SentBindingUpdate,
  stopRetransmission,
  withLastSequence,
} from '../signaling/bul.ts';
import { RegistrationRejectedError } from './errors.ts';
import type { Inbound } from './messages.ts';
import { refreshAdviceSeconds, replayTimestamp } from './messages.ts';
import { is, isResync, MAX_RESYNCS, type Step } from './model.ts';
import { MrState } from './state.ts';
import type { MrCounters, Registration } from './types.ts';

/** A message from the home agent (already sorted by classifyInbound). */
export function inbound(t: Step, m: Inbound): void {
  switch (m.kind) {
    case 'malformed':
      t.ignore('ignoredMalformed', m.reason);
      return;
    case 'foreign':
      t.ignore('ignoredForeign', m.reason);
      return;
    case 'unexpected':
      t.ignore('ignoredUnsolicited', m.reason);
      return;
    case 'bindingAcknowledgement':
      bindingAck(t, m.packet, m.ba);
      return;
    case 'bindingRefreshRequest':
      refreshRequest(t, m.packet);
      return;
    case 'bindingError':
      bindingError(t, m.be);
      return;
  }
}

/** RFC 6275 §11.7.3: a BA acts only when it answers a BU we sent, is authentic and fresh. */
function bindingAck(t: Step, packet: DecodedSignalingPacket, ba: BindingAcknowledgement): void {
  const match = matchAck(t, packet, ba);
  if ('counter' in match) {
    t.ignore(match.counter, match.reason);
    return;
  }
  const { sent } = match;
  if (!t.m.bul.exchange) {
    lateAck(t, sent, ba);
    return;
  }
  const dereg = is(t.m, MrState.deregistering);
  if (dereg !== (sent.lifetimeSeconds === 0)) {
    t.ignore('ignoredStale', `BA seq ${ba.sequence} answers an earlier exchange`);
    return;
  }
  t.set({ lastBaStatus: ba.status });
  const resync = isResync(ba.status);
  if (resync && t.m.resyncs < MAX_RESYNCS) resyncTo(t, ba, resync === 'clock');
  else if (dereg) deregistrationAnswered(t, sent, ba);
  else if (ba.status < 128 && ba.lifetime > 0 && (ba.flags & BaFlag.R) !== 0) accepted(t, sent, ba);
  else if (ba.status >= 128) rejected(t, ba.status);
  else {
    // RFC 3963 §5.3: a BA without R means the HA will not forward for our prefixes.
    const why =
      (ba.flags & BaFlag.R) === 0 ? 'BA without the R flag (RFC 3963 §5.3)' : 'zero lifetime granted';
    rejected(t, BaStatus.MOBILE_ROUTER_OPERATION_NOT_PERMITTED, why);
  }
}

type Match = { sent: SentBindingUpdate } | { counter: keyof MrCounters; reason: string };

function matchAck(t: Step, packet: DecodedSignalingPacket, ba: BindingAcknowledgement): Match {
  const what = `BA ${baStatusName(ba.status)} seq ${ba.sequence}`;
  if (!is(t.m, MrState.registering, MrState.active, MrState.deregistering))
    return { counter: 'ignoredUnsolicited', reason: `${what} in state ${t.m.state}` };
  const resync = isResync(ba.status);
  if (resync) return matchResync(t, packet, ba, resync, what);
  const sent = findSent(t.m.bul, ba.sequence);
  if (!sent) return { counter: 'ignoredUnsolicited', reason: `${what}: no such BU sent` };
  const forged = checkAuth(t, packet, ba, sent, what);
  if (forged) return forged;
  // RFC 4285 §6: the HA echoes the BU's timestamp.
  if (replayTimestamp(ba.options) !== sent.timestamp)
    return { counter: 'ignoredReplay', reason: `${what} does not echo the BU's timestamp` };
  // A BA for a BU of an earlier exchange (a recorded refusal, say) answers nothing while another is open.
  if (t.m.bul.exchange && !inExchange(t.m.bul, sent))
    return { counter: 'ignoredStale', reason: `${what} answers an earlier exchange` };
  return { sent };
}

/**
 * A resync (135, 144, 145) makes the next BU carry what the BA says, so it must answer the BU outstanding
 * now: a recorded one replayed later would otherwise force resyncs, and after MAX_RESYNCS a refusal
 * (routes gone for retransmit.maxMs). A 135 carries the HA's stored number, not ours, so the timestamp it
 * echoes (RFC 4285 §6) names the BU; a 144/145 carries the HA's clock instead, so its sequence does.
 */
function matchResync(
  t: Step,
  packet: DecodedSignalingPacket,
  ba: BindingAcknowledgement,
  resync: 'sequence' | 'clock',
  what: string,
): Match {
  const sent = outstanding(t.m.bul);
  if (!sent) return { counter: 'ignoredUnsolicited', reason: `${what}: no BU outstanding` };
  const forged = checkAuth(t, packet, ba, sent, what);
  if (forged) return forged;
  if (resync === 'sequence' && replayTimestamp(ba.options) !== sent.timestamp)
    return {
      counter: 'ignoredReplay',
      reason: `${what} does not echo the timestamp of the outstanding BU (seq ${sent.sequence})`,
    };
  if (resync === 'clock' && ba.sequence !== sent.sequence) {
    return findSent(t.m.bul, ba.sequence)
      ? {
          counter: 'ignoredStale',
          reason: `${what} answers a BU no longer outstanding (seq ${sent.sequence} is)`,
        }
      : { counter: 'ignoredUnsolicited', reason: `${what}: no such BU sent` };
  }
  return { sent };
}

/** RFC 4285 §5: the authenticator covers the CoA the BU was sent from; undefined when it verifies. */
function checkAuth(
  t: Step,
  packet: DecodedSignalingPacket,
  ba: BindingAcknowledgement,
  sent: SentBindingUpdate,
  what: string,
): { counter: 'ignoredAuth'; reason: string } | undefined {
  if (verifyPacketAuth(packet, t.s.sa, sent.coa, t.s.homeAddress)) return undefined;
  const how = packet.authOffset === undefined ? 'unsigned' : 'fails MN-HA authentication';
  const hint =
    ba.status === BaStatus.MIPV6_AUTH_FAIL ? ' (the HA could not verify our BU: check spi/key)' : '';
  return { counter: 'ignoredAuth', reason: `${what} ${how}${hint}` };
}

/** A BA after its exchange ended: a later retransmission's answer extends the binding, anything else is stale. */
function lateAck(t: Step, sent: SentBindingUpdate, ba: BindingAcknowledgement): void {
  const last = t.m.lastAcceptedSequence;
  const newer = last === undefined || seqNewer(ba.sequence, last);
  if (is(t.m, MrState.active) && ba.status < 128 && ba.lifetime > 0 && newer && sent.lifetimeSeconds > 0) {
    t.set({
      bul: acknowledged(t.m.bul, sent, ba.lifetime * 4, refreshAdviceSeconds(ba.options), t.env.now),
      lastAcceptedSequence: ba.sequence,
    });
    return;
  }
  t.ignore('ignoredStale', `BA ${baStatusName(ba.status)} seq ${ba.sequence} after its exchange ended`);
}

/** BA 135: continue from the HA's number (RFC 6275 §11.7.3); 144/145: adopt the HA's clock (RFC 4285 §6). */
function resyncTo(t: Step, ba: BindingAcknowledgement, clock: boolean): void {
  t.set({ resyncs: t.m.resyncs + 1 });
  if (clock) {
    const haTs = replayTimestamp(ba.options);
    if (haTs !== undefined) t.set({ clockOffsetMs: ntpTimestampToMs(haTs) - t.env.now });
    t.count('baTimestampResync');
    t.log('warn', 'replay timestamp refused: resyncing to the HA clock', {
      status: baStatusName(ba.status),
      offsetMs: t.m.clockOffsetMs,
    });
  } else {
    t.set({ bul: withLastSequence(t.m.bul, ba.sequence) });
    t.count('baSequenceResync');
    t.log('info', 'BA 135: resyncing to the HA sequence number', { stored: ba.sequence });
  }
  t.sendBu();
}

function accepted(t: Step, sent: SentBindingUpdate, ba: BindingAcknowledgement): void {
  const { now } = t.env;
  const advice = refreshAdviceSeconds(ba.options);
  const lifetimeSeconds = ba.lifetime * 4;
  const kind = t.m.bul.exchange?.kind ?? 'reregistration';
  t.set({
    bul: acknowledged(t.m.bul, sent, lifetimeSeconds, advice, now),
    lastAcceptedSequence: ba.sequence,
    lastError: undefined,
  });
  t.count('baAccepted');
  const reg: Registration = {
    network: t.s.name,
    homeAddress: t.s.homeAddress,
    coa: sent.coa,
    sequence: ba.sequence,
    lifetimeSeconds,
    refreshAdviceSeconds: advice,
    buToBaMs: now - sent.sentAt,
    exchangeMs: now - t.m.exchangeStartedAt,
    retransmissions: sent.attempt,
    kind,
  };
  t.log('info', 'registered', {
    sequence: reg.sequence,
    coa: reg.coa,
    lifetimeSeconds,
    buToBaMs: reg.buToBaMs,
    refreshAdviceSeconds: advice,
  });
  // RFC 5555 §4: an IPv4 prefix the HA refused is said in its acknowledgement; the IPv6 binding stands.
  for (const o of ba.options) {
    if (o.type === 'ipv4AddressAcknowledgement' && o.status !== 0)
      t.log('warn', 'IPv4 prefix refused by the home agent', { ipv4: o.homeAddress, status: o.status });
  }
  if (is(t.m, MrState.active)) t.registered(reg);
  else if (!t.m.routesReady) t.set({ acceptedEarly: reg });
  else t.becomeActive(reg);
}

/** Any refusal other than a resync: surfaced with its name; routes go; retried after retransmit.maxMs. */
function rejected(t: Step, status: number, detail?: string): void {
  t.count('baRejected');
  t.fail(new RegistrationRejectedError(t.s.name, status, detail));
}

function deregistrationAnswered(t: Step, sent: SentBindingUpdate, ba: BindingAcknowledgement): void {
  t.set({ bul: stopRetransmission(t.m.bul) });
  if (ba.status >= 128)
    t.log('warn', 'deregistration refused; leaving anyway', { status: baStatusName(ba.status) });
  t.actions.push({
    type: 'deregistrationAnswered',
    result: {
      acknowledged: true,
      status: ba.status,
      sequence: ba.sequence,
      buToBaMs: t.env.now - sent.sentAt,
    },
  });
}

/** RFC 6275 §11.7.4: the HA asks for a BU; answered only while we hold the binding. */
function refreshRequest(t: Step, packet: DecodedSignalingPacket): void {
  const reg = t.m.lastRegistration;
  if (packet.authOffset !== undefined && reg && !verifyPacketAuth(packet, t.s.sa, reg.coa, t.s.homeAddress)) {
    t.ignore('ignoredAuth', 'BRR fails MN-HA authentication');
    return;
  }
  if (!is(t.m, MrState.active) || t.m.bul.exchange) {
    t.count('brrIgnored');
    t.log('info', 'BRR ignored', { state: t.m.state, pending: t.m.bul.exchange !== undefined });
    return;
  }
  t.count('brrAnswered');
  t.log('info', 'BRR: re-registering');
  t.reregister();
}

/** RFC 6275 §11.3.6: a BE is unauthenticated, so it only ever triggers one more (authenticated) BU. */
function bindingError(t: Step, be: BindingError): void {
  t.count('beReceived');
  t.log('warn', 'binding error from the home agent', { status: be.status, homeAddress: be.homeAddress });
  if (be.status === BeStatus.UNKNOWN_HOME_ADDRESS_OPTION && is(t.m, MrState.active) && !t.m.bul.exchange)
    t.reregister();
}
