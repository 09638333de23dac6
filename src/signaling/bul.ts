// Binding update list entry (RFC 6275 §11.1, UMIP `bul`): the mobile node's record of one binding it
// holds at its home agent — the sequence numbers it sent, the retransmission back-off while a BU waits
// for its BA (§11.8), and the refresh and expiry of the granted lifetime (§11.7.1, §11.7.3).
// It owns the timers and nothing else: what to send when a timer fires is the caller's business.
import type { Clock, TimerHandle } from '../clock.ts';

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
  /** clock.now() when sent. */
  sentAt: number;
  /** Retransmission number in its exchange: 0 for the first transmission. */
  attempt: number;
  /** Replay Protection timestamp it carried (RFC 4285 §6); the HA echoes it in the BA. */
  timestamp?: bigint;
}

export interface BindingUpdateListHandlers {
  /** The retransmission timer ran out: send the BU again (with a new sequence number). */
  retransmit(): void;
  /** Time to refresh the binding (REFRESH_FRACTION of the lifetime, or the Binding Refresh Advice). */
  refresh(): void;
  /** The granted lifetime ended without a newer BA: the HA no longer holds the binding. */
  expire(): void;
}

/** How many sent BUs are remembered for matching BAs (a retransmitted exchange sends several). */
const SENT_HISTORY = 32;

export class BindingUpdateListEntry {
  private lastSequence: number | undefined;
  private readonly sent: SentBindingUpdate[] = [];
  private exchange: { kind: ExchangeKind; interval: number; attempt: number } | undefined;
  private retransmitTimer: TimerHandle | undefined;
  private refreshTimer: TimerHandle | undefined;
  private expiryTimer: TimerHandle | undefined;
  private expiresAt: number | undefined;
  private refreshAt: number | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly retransmit: RetransmitOptions,
    private readonly handlers: BindingUpdateListHandlers,
  ) {}

  /** Sequence number of the last BU sent (or handed over), undefined before the first. */
  get sequence(): number | undefined {
    return this.lastSequence;
  }

  /** Continue from `n`: the next BU carries n + 1 (handover from another host, or a BA 135 resync). */
  setLastSequence(n: number): void {
    this.lastSequence = n & 0xffff;
  }

  /** The sequence number for the next BU; records it as the last one sent. */
  allocateSequence(): number {
    this.lastSequence = this.lastSequence === undefined ? 0 : (this.lastSequence + 1) & 0xffff;
    return this.lastSequence;
  }

  /** Whether a BU is waiting for its BA. */
  get pending(): boolean {
    return this.exchange !== undefined;
  }

  /** Kind of the exchange in progress, if any. */
  get pendingKind(): ExchangeKind | undefined {
    return this.exchange?.kind;
  }

  /** Start an exchange (a BU is about to be sent and will wait for a BA); replaces one in progress. */
  begin(kind: ExchangeKind): void {
    this.stopRetransmission();
    const interval = kind === 'first' ? this.retransmit.initialFirstMs : this.retransmit.initialMs;
    this.exchange = { kind, interval, attempt: 0 };
  }

  /**
   * Record a BU just sent and (re)arm the retransmission timer with the exchange's current interval.
   * Returns the recorded entry. Outside an exchange (e.g. a one-shot answer) no timer is armed.
   */
  recordSent(bu: Omit<SentBindingUpdate, 'sentAt' | 'attempt'>): SentBindingUpdate {
    const entry: SentBindingUpdate = {
      ...bu,
      sentAt: this.clock.now(),
      attempt: this.exchange?.attempt ?? 0,
    };
    this.sent.push(entry);
    if (this.sent.length > SENT_HISTORY) this.sent.shift();
    this.armRetransmission();
    return entry;
  }

  /**
   * (Re)arm the retransmission timer with the exchange's current interval without recording a BU: used
   * when a BU could not be sent (no care-of address yet) so the exchange keeps its back-off running.
   */
  armRetransmission(): void {
    const ex = this.exchange;
    if (!ex) return;
    this.retransmitTimer?.cancel();
    this.retransmitTimer = this.clock.setTimer(ex.interval, () => {
      this.retransmitTimer = undefined;
      // RFC 6275 §11.8: exponential back-off, capped at MAX_BINDACK_TIMEOUT.
      ex.interval = Math.min(ex.interval * 2, this.retransmit.maxMs);
      ex.attempt += 1;
      this.handlers.retransmit();
    });
  }

  /** The BU with this sequence number if it was sent by this entry (recently). */
  find(sequence: number): SentBindingUpdate | undefined {
    for (let i = this.sent.length - 1; i >= 0; i--)
      if (this.sent[i]!.sequence === sequence) return this.sent[i];
    return undefined;
  }

  /** The most recent BU sent. */
  get lastSent(): SentBindingUpdate | undefined {
    return this.sent[this.sent.length - 1];
  }

  /** End the exchange without a binding (rejected, deregistered, abandoned). Refresh/expiry untouched. */
  stopRetransmission(): void {
    this.retransmitTimer?.cancel();
    this.retransmitTimer = undefined;
    this.exchange = undefined;
  }

  /**
   * An accepted BA for `bu`: stop retransmitting; the binding lives `grantedSeconds` from when `bu` was
   * sent. Refresh at `refreshSeconds` after the BA when the HA sent a Binding Refresh Advice shorter than
   * the lifetime (RFC 6275 §11.7.3), else at REFRESH_FRACTION of the lifetime.
   */
  acknowledged(bu: SentBindingUpdate, grantedSeconds: number, refreshSeconds?: number): void {
    this.stopRetransmission();
    this.cancelLifetime();
    const now = this.clock.now();
    const expiresAt = bu.sentAt + grantedSeconds * 1000;
    const byFraction = bu.sentAt + grantedSeconds * 1000 * REFRESH_FRACTION;
    const byAdvice =
      refreshSeconds !== undefined && refreshSeconds > 0 && refreshSeconds < grantedSeconds
        ? now + refreshSeconds * 1000
        : undefined;
    const refreshAt = byAdvice ?? byFraction;
    this.expiresAt = expiresAt;
    this.refreshAt = refreshAt;
    this.refreshTimer = this.clock.setTimer(refreshAt - now, () => {
      this.refreshTimer = undefined;
      this.refreshAt = undefined;
      this.handlers.refresh();
    });
    this.expiryTimer = this.clock.setTimer(expiresAt - now, () => {
      this.expiryTimer = undefined;
      this.expiresAt = undefined;
      this.handlers.expire();
    });
  }

  /** Milliseconds left of the granted lifetime (0 when nothing is registered). */
  lifetimeRemainingMs(): number {
    return this.expiresAt === undefined ? 0 : Math.max(0, this.expiresAt - this.clock.now());
  }

  /** When the next refresh is due (clock ms), if one is scheduled. */
  get refreshDueAt(): number | undefined {
    return this.refreshAt;
  }

  /** Forget the granted lifetime (standby, deregistration, rejection): no refresh, no expiry. */
  cancelLifetime(): void {
    this.refreshTimer?.cancel();
    this.expiryTimer?.cancel();
    this.refreshTimer = undefined;
    this.expiryTimer = undefined;
    this.expiresAt = undefined;
    this.refreshAt = undefined;
  }

  /** Cancel every timer. The sequence number is kept (a later activation continues from it). */
  cancel(): void {
    this.stopRetransmission();
    this.cancelLifetime();
  }
}
