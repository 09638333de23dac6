// Binding update list entry (RFC 6275 §11.1, UMIP `bul`): the mobile node's record of one binding it
// holds at its home agent — the sequence numbers it sent, the retransmission back-off while a BU waits
// for its BA (§11.8), and the refresh and expiry of the granted lifetime (§11.7.1, §11.7.3).
// Plain data and pure functions: the deadlines are values (`retransmitAt`, `refreshAt`, `expiresAt`);
// whoever owns the entry arms timers for them and calls back when one is due.

/** Retransmission intervals (RFC 6275 §13: InitialBindackTimeoutFirstReg, INITIAL_BINDACK_TIMEOUT, MAX_BINDACK_TIMEOUT). */
export interface RetransmitOptions {
  /** First interval of a first registration (the HA may run DAD): 1500 ms. */
  initialFirstMs: number;
  /** First interval of any other BU (refresh, CoA change, handover, deregistration): 1000 ms. */
  initialMs: number;
  /** The doubling stops here: 32000 ms. */
  maxMs: number;
}

export const DEFAULT_RETRANSMIT: RetransmitOptions = { initialFirstMs: 1500, initialMs: 1000, maxMs: 32000 };

/**
 * Fraction of the granted lifetime after which the binding is refreshed, counted from when the BU was
 * sent (RFC 6275 §11.7.3 counts the lifetime from there). 80 % leaves a fifth of the lifetime for the
 * 1, 2, 4, 8 s retransmissions of the refresh before the HA drops the binding.
 */
export const REFRESH_FRACTION = 0.8;

/** `first`: nothing is registered yet (1.5 s back-off); `reregistration`: a binding exists (1 s). */
export type ExchangeKind = 'first' | 'reregistration';

/** One BU as sent: what is needed to match and verify its BA. */
export interface SentBindingUpdate {
  sequence: number;
  /** Care-of address the BU was sent from: the BA's authenticator covers it (RFC 4285 §5). */
  coa: string;
  /** Requested lifetime in seconds; 0 = deregistration. */
  lifetimeSeconds: number;
  /** Clock ms when sent. */
  sentAt: number;
  /** Retransmission number in its exchange: 0 for the first transmission. */
  attempt: number;
  /** Replay Protection timestamp it carried (RFC 4285 §6); the HA echoes it in the BA. */
  timestamp?: bigint;
  /** The exchange it was sent in (`Exchange.id`): a BA for a BU of an earlier exchange answers nothing now. */
  exchange?: number;
}

/** A BU waiting for its BA, and where its back-off stands. */
export interface Exchange {
  /** Numbers the exchanges of this list, so a BA can be told to answer this one or an earlier one. */
  id: number;
  kind: ExchangeKind;
  /** The next retransmission interval. */
  interval: number;
  /** Retransmissions so far. */
  attempt: number;
}

export interface BindingUpdateList {
  /** Sequence number of the last BU sent (or handed over), undefined before the first. */
  lastSequence: number | undefined;
  /** The BUs sent recently (oldest first), to match BAs against. */
  sent: readonly SentBindingUpdate[];
  exchange: Exchange | undefined;
  /** Exchanges begun so far (the last one's id). */
  exchanges: number;
  /** Clock ms when the BU is sent again, while an exchange waits. */
  retransmitAt: number | undefined;
  /** Clock ms when the binding is refreshed. */
  refreshAt: number | undefined;
  /** Clock ms when the granted lifetime ends. */
  expiresAt: number | undefined;
}

/** How many sent BUs are remembered for matching BAs (a retransmitted exchange sends several). */
const SENT_HISTORY = 32;

export function emptyBindingUpdateList(): BindingUpdateList {
  return {
    lastSequence: undefined,
    sent: [],
    exchange: undefined,
    exchanges: 0,
    retransmitAt: undefined,
    refreshAt: undefined,
    expiresAt: undefined,
  };
}

/** Continue from `n`: the next BU carries n + 1 (handover from another host, or a BA 135 resync). */
export function withLastSequence(l: BindingUpdateList, n: number): BindingUpdateList {
  return { ...l, lastSequence: n & 0xffff };
}

/** The sequence number for the next BU, recorded as the last one sent. */
export function allocateSequence(l: BindingUpdateList): [BindingUpdateList, number] {
  const n = l.lastSequence === undefined ? 0 : (l.lastSequence + 1) & 0xffff;
  return [{ ...l, lastSequence: n }, n];
}

/** Start an exchange (a BU is about to be sent and will wait for a BA); replaces one in progress. */
export function beginExchange(
  l: BindingUpdateList,
  kind: ExchangeKind,
  options: RetransmitOptions,
): BindingUpdateList {
  const interval = kind === 'first' ? options.initialFirstMs : options.initialMs;
  const id = l.exchanges + 1;
  return { ...l, exchange: { id, kind, interval, attempt: 0 }, exchanges: id, retransmitAt: undefined };
}

/** Record a BU just sent and arm its retransmission with the exchange's current interval. */
export function recordSent(
  l: BindingUpdateList,
  bu: Omit<SentBindingUpdate, 'sentAt' | 'attempt'>,
  now: number,
): [BindingUpdateList, SentBindingUpdate] {
  const entry: SentBindingUpdate = {
    ...bu,
    sentAt: now,
    attempt: l.exchange?.attempt ?? 0,
    exchange: l.exchange?.id,
  };
  const sent = [...l.sent, entry].slice(-SENT_HISTORY);
  return [armRetransmission({ ...l, sent }, now), entry];
}

/**
 * (Re)arm the retransmission with the exchange's current interval without recording a BU: when a BU
 * could not be sent (no care-of address yet) the exchange keeps its back-off running.
 */
export function armRetransmission(l: BindingUpdateList, now: number): BindingUpdateList {
  return l.exchange ? { ...l, retransmitAt: now + l.exchange.interval } : l;
}

/** The retransmission is due: RFC 6275 §11.8 exponential back-off, capped at MAX_BINDACK_TIMEOUT. */
export function retransmissionDue(l: BindingUpdateList, options: RetransmitOptions): BindingUpdateList {
  const ex = l.exchange;
  if (!ex) return { ...l, retransmitAt: undefined };
  return {
    ...l,
    retransmitAt: undefined,
    exchange: { ...ex, interval: Math.min(ex.interval * 2, options.maxMs), attempt: ex.attempt + 1 },
  };
}

/** The BU with this sequence number if it was sent (recently). */
export function findSent(l: BindingUpdateList, sequence: number): SentBindingUpdate | undefined {
  for (let i = l.sent.length - 1; i >= 0; i--) if (l.sent[i]!.sequence === sequence) return l.sent[i];
  return undefined;
}

/** Whether `bu` was sent in the exchange in progress. */
export function inExchange(l: BindingUpdateList, bu: SentBindingUpdate): boolean {
  return l.exchange !== undefined && bu.exchange === l.exchange.id;
}

/** The BU waiting for its BA: the last one sent in the exchange in progress, if any was. */
export function outstanding(l: BindingUpdateList): SentBindingUpdate | undefined {
  const last = l.sent.at(-1);
  return last && inExchange(l, last) ? last : undefined;
}

/** End the exchange without a binding (rejected, deregistered, abandoned). Refresh/expiry untouched. */
export function stopRetransmission(l: BindingUpdateList): BindingUpdateList {
  return { ...l, exchange: undefined, retransmitAt: undefined };
}

/**
 * An accepted BA for `bu`: no more retransmission; the binding lives `grantedSeconds` from when `bu` was
 * sent. Refresh at `refreshSeconds` after the BA when the HA sent a Binding Refresh Advice shorter than
 * the lifetime (RFC 6275 §11.7.3), else at REFRESH_FRACTION of the lifetime.
 */
export function acknowledged(
  l: BindingUpdateList,
  bu: SentBindingUpdate,
  grantedSeconds: number,
  refreshSeconds: number | undefined,
  now: number,
): BindingUpdateList {
  const byAdvice =
    refreshSeconds !== undefined && refreshSeconds > 0 && refreshSeconds < grantedSeconds
      ? now + refreshSeconds * 1000
      : undefined;
  return {
    ...stopRetransmission(l),
    expiresAt: bu.sentAt + grantedSeconds * 1000,
    refreshAt: byAdvice ?? bu.sentAt + grantedSeconds * 1000 * REFRESH_FRACTION,
  };
}

/** Forget the granted lifetime (standby, deregistration, rejection): no refresh, no expiry. */
export function cancelLifetime(l: BindingUpdateList): BindingUpdateList {
  return { ...l, refreshAt: undefined, expiresAt: undefined };
}

/** No exchange and no lifetime; the sequence number is kept (a later activation continues from it). */
export function cancelAll(l: BindingUpdateList): BindingUpdateList {
  return cancelLifetime(stopRetransmission(l));
}

/** Milliseconds left of the granted lifetime (0 when nothing is registered). */
export function lifetimeRemainingMs(l: BindingUpdateList, now: number): number {
  return l.expiresAt === undefined ? 0 : Math.max(0, l.expiresAt - now);
}
