// The mobile router's state, the events that change it and the actions they call for (core.ts has the
// transition function): everything a mobile router knows is in MrModel, so the transitions are pure and
// are tested as tables (core.test.ts). Timers are not actions: the model's deadlines are (`deadlines`), and
// the shell arms a timer for each.
import { ntpTimestamp } from '../protocol/auth.ts';
import { BaStatus } from '../protocol/constants.ts';
import type { SecurityAssociation } from '../protocol/types.ts';
import {
  allocateSequence,
  type BindingUpdateList,
  beginExchange,
  cancelAll,
  type ExchangeKind,
  emptyBindingUpdateList,
  type RetransmitOptions,
  armRetransmission as rearm,
  recordSent,
} from '../signaling/bul.ts';
import { type RegistrationAbandonedError, RegistrationRejectedError } from './errors.ts';
import type { Inbound } from './messages.ts';
import { MrState, type MrStateValue, nextState } from './state.ts';
import { type MrCounters, type Registration, zeroCounters } from './types.ts';

/** What the core knows of its network (from the config; never changes). */
export interface MrSettings {
  name: string;
  homeAddress: string;
  sa: SecurityAssociation;
  lifetimeSeconds: number;
  retransmit: RetransmitOptions;
}

export interface MrModel {
  state: MrStateValue;
  bul: BindingUpdateList;
  /** Consecutive 135/144 resyncs in this exchange (a loop guard). */
  resyncs: number;
  exchangeStartedAt: number;
  exchangeLifetimeSeconds: number;
  lastAcceptedSequence: number | undefined;
  /** Replay Protection timestamps strictly increase (the HA refuses one not newer than the last). */
  lastTimestampMs: number;
  /** The HA's clock minus ours, once a BA 144/145 told us. */
  clockOffsetMs: number;
  /** The exchange to start once a care-of address appears. */
  waitingKind: ExchangeKind;
  /** Egress routes and advertisements are up for this activation. */
  routesReady: boolean;
  /** The CoA prepare() readied the host for (neighbours flushed, routes installed), until activation. */
  preparedFor: string | undefined;
  /** A BA accepted before the routes were installed: active once they are. */
  acceptedEarly: Registration | undefined;
  lastRegistration: Registration | undefined;
  lastBaStatus: number | undefined;
  lastError: string | undefined;
  lastIgnored: string | undefined;
  /** After a failure, when registration is tried again. */
  retryAt: number | undefined;
  counters: MrCounters;
}

export function initialModel(): MrModel {
  return {
    state: MrState.standby,
    bul: emptyBindingUpdateList(),
    resyncs: 0,
    exchangeStartedAt: 0,
    exchangeLifetimeSeconds: 0,
    lastAcceptedSequence: undefined,
    lastTimestampMs: 0,
    clockOffsetMs: 0,
    waitingKind: 'first',
    routesReady: false,
    preparedFor: undefined,
    acceptedEarly: undefined,
    lastRegistration: undefined,
    lastBaStatus: undefined,
    lastError: undefined,
    lastIgnored: undefined,
    retryAt: undefined,
    counters: zeroCounters(),
  };
}

/** What the shell tells the core about the world with every event. */
export interface MrEnv {
  now: number;
  /** The uplink's current care-of address. */
  coa: string | undefined;
  /** The address the signaling socket is bound to. */
  listening: string | undefined;
}

export type TimerName = 'retransmit' | 'refresh' | 'expiry' | 'retry';

export type MrEvent =
  /** Begin registering (activate(), a retry, a CoA appearing): `reason` is logged. */
  | { type: 'startRegistration'; kind: ExchangeKind; reason: string }
  /** activate() on a router that is not registering yet: continue from `lastSequence`, or `random`. */
  | { type: 'setSequence'; lastSequence: number | undefined; random: number }
  /** The host is ready (socket on the CoA, host data plane, neighbours): send the first BU. */
  | { type: 'readyToSend' }
  /** Egress routes and advertisements are installed. */
  | { type: 'routesInstalled' }
  /** Setting up for a registration failed (the data plane). */
  | { type: 'setupFailed'; error: Error }
  | { type: 'prepared'; coa: string }
  | { type: 'preparedReleased' }
  /** prepareHandover(), standby(), deregister(), stop(): no more BUs; waiters get `error`; then `to`. */
  | { type: 'quiesce'; error: Error; to?: MrStateValue; reason: string }
  | { type: 'enter'; to: MrStateValue; reason: string }
  /** Routes and advertisements were removed. */
  | { type: 'routesRemoved' }
  /** deregister(): send the lifetime-0 BU. */
  | { type: 'sendDeregistration' }
  | { type: 'deregistrationOver' }
  /** The care-of address changed to env.coa (undefined: lost). */
  | { type: 'coaChanged' }
  /** Socket and host follow the new CoA: register it at once (RFC 6275 §11.7.1). */
  | { type: 'registerNewCoa' }
  | { type: 'inbound'; message: Inbound }
  | { type: 'timer'; timer: TimerName }
  | { type: 'sendFailed' };

export type MrAction =
  | {
      type: 'send';
      bu: { sequence: number; coa: string; lifetimeSeconds: number; timestampMs: number; attempt: number };
    }
  | { type: 'transition'; from: MrStateValue; to: MrStateValue; reason: string }
  | { type: 'log'; level: 'debug' | 'info' | 'warn' | 'error'; msg: string; fields?: Record<string, unknown> }
  | { type: 'ignored'; counter: keyof MrCounters; reason: string }
  /** Resolve the waiters of activate()/whenRegistered() and emit `registered`. */
  | { type: 'registered'; registration: Registration }
  /** Reject the waiters (and, with `failed`, emit registrationFailed and tear the routes down). */
  | { type: 'failWaiters'; error: Error }
  | { type: 'failed'; error: RegistrationRejectedError | RegistrationAbandonedError }
  | {
      type: 'deregistrationAnswered';
      result: { acknowledged: true; status: number; sequence: number; buToBaMs: number };
    };

export interface Transition {
  model: MrModel;
  actions: MrAction[];
}

/** Consecutive 135/144 resyncs in one exchange before the BA is treated as a rejection (loop guard). */
export const MAX_RESYNCS = 3;

export function isResync(status: number): 'sequence' | 'clock' | undefined {
  if (status === BaStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW) return 'sequence';
  if (status === BaStatus.MIPV6_ID_MISMATCH || status === BaStatus.MIPV6_MESG_ID_REQD) return 'clock';
  return undefined;
}

export const is = (m: MrModel, ...states: MrStateValue[]) => states.includes(m.state);

/** The deadlines the shell must keep a timer for (undefined: none). */
export function deadlines(m: MrModel): Record<TimerName, number | undefined> {
  return {
    retransmit: m.bul.retransmitAt,
    refresh: m.bul.refreshAt,
    expiry: m.bul.expiresAt,
    retry: m.retryAt,
  };
}

/** A working copy of the model: a transition's steps change it and collect the actions. */
export class Step {
  readonly actions: MrAction[] = [];
  m: MrModel;

  constructor(
    model: MrModel,
    readonly s: MrSettings,
    readonly env: MrEnv,
  ) {
    this.m = { ...model, counters: { ...model.counters } };
  }

  set(patch: Partial<MrModel>): void {
    this.m = { ...this.m, ...patch };
  }

  count(counter: keyof MrCounters): void {
    this.m.counters[counter]++;
  }

  log(level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>): void {
    this.actions.push(fields ? { type: 'log', level, msg, fields } : { type: 'log', level, msg });
  }

  go(to: MrStateValue, reason: string): void {
    const from = this.m.state;
    this.m.state = nextState(from, to, reason);
    if (from !== to) this.actions.push({ type: 'transition', from, to, reason });
  }

  ignore(counter: keyof MrCounters, reason: string): void {
    this.count(counter);
    this.m.lastIgnored = `${counter}: ${reason}`;
    this.actions.push({ type: 'ignored', counter, reason });
  }

  beginExchange(kind: ExchangeKind, lifetimeSeconds: number): void {
    this.set({
      bul: beginExchange(this.m.bul, kind, this.s.retransmit),
      exchangeStartedAt: this.env.now,
      exchangeLifetimeSeconds: lifetimeSeconds,
      resyncs: 0,
    });
  }

  /** Send the next BU of the current exchange from the current CoA, with a new sequence number. */
  sendBu(): void {
    const { coa, listening, now } = this.env;
    if (coa === undefined || listening !== coa) {
      this.count('buSkipped');
      this.set({ bul: rearm(this.m.bul, now) });
      return;
    }
    const [bul, sequence] = allocateSequence(this.m.bul);
    const timestampMs = Math.max(now + this.m.clockOffsetMs, this.m.lastTimestampMs + 0.001);
    const lifetimeSeconds = this.m.exchangeLifetimeSeconds;
    const [recorded, sent] = recordSent(
      bul,
      { sequence, coa, lifetimeSeconds, timestamp: ntpTimestamp(timestampMs) },
      now,
    );
    this.set({ bul: recorded, lastTimestampMs: timestampMs });
    this.count('buSent');
    this.actions.push({
      type: 'send',
      bu: { sequence, coa, lifetimeSeconds, timestampMs, attempt: sent.attempt },
    });
  }

  /** Start a re-registration exchange and send its first BU. */
  reregister(): void {
    this.beginExchange('reregistration', this.s.lifetimeSeconds);
    this.sendBu();
  }

  /** End the exchange and forget the lifetime; the sequence number stays. */
  quiet(error: Error): void {
    this.set({ bul: cancelAll(this.m.bul), retryAt: undefined, acceptedEarly: undefined });
    this.actions.push({ type: 'failWaiters', error });
  }

  fail(err: RegistrationRejectedError | RegistrationAbandonedError): void {
    this.set({ lastError: err.message, bul: cancelAll(this.m.bul) });
    this.log('error', err.message, {
      code: err.code,
      status: err instanceof RegistrationRejectedError ? err.statusName : undefined,
    });
    this.actions.push({ type: 'failWaiters', error: err });
    if (!is(this.m, MrState.registering, MrState.active)) return;
    this.go(MrState.failed, err.message);
    // the shell removes the routes; the retry comes after retransmit.maxMs
    this.set({ retryAt: this.env.now + this.s.retransmit.maxMs, routesReady: false });
    this.actions.push({ type: 'failed', error: err });
  }

  becomeActive(reg: Registration): void {
    this.go(MrState.active, `BA accepted, sequence ${reg.sequence}`);
    this.registered(reg);
  }

  registered(reg: Registration): void {
    this.set({ lastRegistration: reg });
    this.actions.push({ type: 'registered', registration: reg });
  }

  toTransition(): Transition {
    return { model: this.m, actions: this.actions };
  }
}
