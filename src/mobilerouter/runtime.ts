// The machinery between the mobile router's pure core (core.ts) and the world: it feeds events in
// (`apply`), performs the actions that come out (send a BU, resolve or fail the waiters, log, emit), arms a
// timer for each deadline of the model, and answers status. MobileRouter (mobilerouter.ts) adds the
// operations and the host side on top.
import { EventEmitter } from 'node:events';
import type { TimerHandle } from '../clock.ts';
import { SerialQueue } from '../dataplane/serial.ts';
import { type Logger, LogLimiter } from '../log.ts';
import { baStatusName } from '../protocol/constants.ts';
import type { SecurityAssociation } from '../protocol/types.ts';
import { lifetimeRemainingMs } from '../signaling/bul.ts';
import type { Datagram } from '../signaling/udp.ts';
import { HostAttachment } from './attachment.ts';
import type { MobileNetworkConfig, MobileRouterHostConfig } from './config.ts';
import {
  deadlines,
  initialModel,
  type MrAction,
  type MrEnv,
  type MrEvent,
  type MrModel,
  type MrSettings,
  type TimerName,
  transition,
} from './core.ts';
import { RegistrationAbandonedError } from './errors.ts';
import { buildBindingUpdate, classifyInbound } from './messages.ts';
import { MrState, type MrStateValue } from './state.ts';
import type {
  DeregistrationResult,
  MobileRouterComponents,
  MobileRouterEvents,
  MobileRouterOptions,
  MobileRouterStatus,
  Registration,
} from './types.ts';

/** Log lines a second about ignored messages, per network (status().counters counts every one). */
export const IGNORED_LOGS_PER_SECOND = 5;

type Waiter = { resolve: (r: Registration) => void; reject: (e: Error) => void };

export abstract class MobileRouterRuntime extends EventEmitter<MobileRouterEvents> {
  readonly name: string;
  readonly homeAddress: string;
  protected readonly components: MobileRouterComponents;
  protected readonly network: MobileNetworkConfig;
  protected readonly host: MobileRouterHostConfig;
  protected readonly log: Logger;
  /** Anyone who can reach the MR's port can make it ignore messages: those lines are rate-limited. */
  private readonly ignoredLog: LogLimiter;
  protected readonly settings: MrSettings;
  protected readonly attachment: HostAttachment;
  protected readonly queue = new SerialQueue();
  protected model: MrModel = initialModel();
  /** The timer armed for each of the core's deadlines. */
  private readonly timers = new Map<TimerName, { at: number; handle: TimerHandle }>();
  private readonly waiters = new Set<Waiter>();
  protected answerDeregistration: ((r: DeregistrationResult) => void) | undefined;

  constructor(components: MobileRouterComponents, options: MobileRouterOptions) {
    super();
    this.components = components;
    this.network = options.network;
    this.host = options.host;
    this.name = this.network.name;
    this.homeAddress = this.network.homeAddress;
    this.log = components.logger.child({ network: this.name, hoa: this.homeAddress });
    this.ignoredLog = new LogLimiter(this.log, components.clock, {
      lines: IGNORED_LOGS_PER_SECOND,
      intervalMs: 1000,
    });
    this.settings = {
      name: this.name,
      homeAddress: this.homeAddress,
      sa: { spi: this.network.spi, key: this.network.key, algorithm: this.network.algorithm },
      lifetimeSeconds: this.network.lifetimeSeconds,
      retransmit: this.network.retransmit,
    };
    this.attachment = new HostAttachment(components, options, (d) => this.onDatagram(d));
  }

  get state(): MrStateValue {
    return this.model.state;
  }

  /**
   * Sign and verify with `sa` from the next message on (a reloaded config): the binding, routes and
   * sequence numbers stay as they are; a BA to a BU sent with the old key fails to verify and the BU is
   * retransmitted with the new one.
   */
  rekey(sa: SecurityAssociation): void {
    this.settings.sa = sa;
    this.log.info({ spi: sa.spi, algorithm: sa.algorithm }, 'security association replaced');
  }

  /** Remove what activation installed (the failure of a registration does). */
  protected abstract teardown(): Promise<void>;
  /** The retry deadline after a failure has come. */
  protected abstract retry(): void;

  /**
   * Resolves at the next accepted registration (or at once with the current one when active and nothing
   * is pending); rejects when it fails or is abandoned.
   */
  whenRegistered(
    options: { signal?: AbortSignal | undefined; acceptCurrent?: boolean } = {},
  ): Promise<Registration> {
    const current = (options.acceptCurrent ?? true) ? this.currentRegistration() : undefined;
    if (current) return Promise.resolve(current);
    return new Promise<Registration>((resolve, reject) => {
      const signal = options.signal;
      const onAbort = () => {
        this.waiters.delete(waiter);
        reject(
          new RegistrationAbandonedError('ERR_MR_ABORTED', `${this.name}: aborted`, {
            cause: signal?.reason,
          }),
        );
      };
      const waiter: Waiter = {
        resolve: (r) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(r);
        },
        reject: (e) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      };
      if (signal?.aborted) return onAbort();
      this.waiters.add(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  status(): MobileRouterStatus {
    const m = this.model;
    return {
      network: this.name,
      homeAddress: this.homeAddress,
      prefixes: this.network.prefixes,
      bridge: this.network.bridge,
      state: m.state,
      coa: this.components.coa.coa,
      sequence: m.bul.lastSequence,
      lifetimeRemainingMs: lifetimeRemainingMs(m.bul, this.components.clock.now()),
      pending: m.bul.exchange !== undefined,
      lastBaStatus: m.lastBaStatus,
      lastBaStatusName: m.lastBaStatus === undefined ? undefined : baStatusName(m.lastBaStatus),
      lastBuToBaMs: m.lastRegistration?.buToBaMs,
      lastError: m.lastError,
      lastIgnored: m.lastIgnored,
      counters: { ...m.counters },
    };
  }

  private env(): MrEnv {
    return {
      now: this.components.clock.now(),
      coa: this.components.coa.coa,
      listening: this.attachment.listeningOn,
    };
  }

  /** One event through the core; its actions performed, the timers made to match its deadlines. */
  protected apply(event: MrEvent): void {
    const { model, actions } = transition(this.model, event, this.settings, this.env());
    this.model = model;
    for (const action of actions) this.perform(action);
    this.syncTimers();
  }

  private perform(a: MrAction): void {
    switch (a.type) {
      case 'send':
        this.send(a.bu);
        return;
      case 'transition':
        this.log.info({ from: a.from, to: a.to, reason: a.reason }, `state ${a.from} → ${a.to}`);
        this.emit('state', { from: a.from, to: a.to, reason: a.reason });
        return;
      case 'log':
        this.log[a.level](a.fields ?? {}, a.msg);
        return;
      case 'ignored':
        // One budget for every kind: a flood of forged or replayed messages is counted in full, logged a
        // few lines a second, the next line saying how many were left out.
        this.ignoredLog.warn('ignored', { counter: a.counter, reason: a.reason }, 'message ignored');
        this.emit('ignored', { counter: a.counter, reason: a.reason });
        return;
      case 'registered':
        this.resolveWaiters(a.registration);
        return;
      case 'failWaiters':
        this.failWaiters(a.error);
        return;
      case 'failed':
        this.emit('registrationFailed', a.error);
        this.queue
          .run(() => this.teardown())
          .catch((err) => this.log.error({ err }, 'removing routes after a failure failed'));
        return;
      case 'deregistrationAnswered':
        this.answerDeregistration?.(a.result);
        return;
    }
  }

  private send(bu: {
    sequence: number;
    coa: string;
    lifetimeSeconds: number;
    timestampMs: number;
    attempt: number;
  }): void {
    const bytes = buildBindingUpdate({
      hoa: this.homeAddress,
      haAddress: this.host.haAddress,
      coa: bu.coa,
      sa: this.settings.sa,
      mode: this.network.mode,
      prefixes: this.network.prefixes,
      sequence: bu.sequence,
      lifetimeSeconds: bu.lifetimeSeconds,
      timestampMs: bu.timestampMs,
    });
    // The first BU of an exchange at info (a registration, a refresh, a move: rare), retransmissions are
    // logged where they are decided.
    this.log[bu.attempt === 0 ? 'info' : 'debug'](
      { sequence: bu.sequence, coa: bu.coa, lifetimeSeconds: bu.lifetimeSeconds, attempt: bu.attempt },
      'BU sent',
    );
    this.components.transport.send(bytes, this.host.haAddress, this.host.haPort).catch((err) => {
      this.apply({ type: 'sendFailed' });
      this.log.warn({ err: String(err), sequence: bu.sequence }, 'sending the BU failed');
    });
  }

  /** Arm, re-arm or cancel a timer for each deadline of the model. */
  private syncTimers(): void {
    const due = deadlines(this.model);
    for (const name of Object.keys(due) as TimerName[]) {
      const at = due[name];
      const armed = this.timers.get(name);
      if (armed?.at === at) continue;
      armed?.handle.cancel();
      this.timers.delete(name);
      if (at === undefined) continue;
      const handle = this.components.clock.setTimer(at - this.components.clock.now(), () => {
        if (this.timers.get(name)?.handle !== handle) return;
        this.timers.delete(name);
        this.onTimer(name);
      });
      this.timers.set(name, { at, handle });
    }
  }

  private onTimer(name: TimerName): void {
    this.apply({ type: 'timer', timer: name });
    if (name === 'retry') this.retry();
  }

  protected isIn(...states: MrStateValue[]): boolean {
    return states.includes(this.model.state);
  }

  /** The registration in force when active and nothing is pending. */
  protected currentRegistration(): Registration | undefined {
    const m = this.model;
    return m.state === MrState.active && !m.bul.exchange ? m.lastRegistration : undefined;
  }

  protected abandoned(code: 'ERR_MR_STANDBY' | 'ERR_MR_STOPPED', what: string): RegistrationAbandonedError {
    return new RegistrationAbandonedError(code, `${this.name}: ${what}`);
  }

  protected resolveWaiters(reg: Registration): void {
    for (const w of [...this.waiters]) w.resolve(reg);
    this.waiters.clear();
    this.emit('registered', reg);
  }

  protected failWaiters(err: Error): void {
    for (const w of [...this.waiters]) w.reject(err);
    this.waiters.clear();
  }

  private onDatagram(d: Datagram): void {
    const message = classifyInbound(d, {
      haAddress: this.host.haAddress,
      haPort: this.host.haPort,
      hoa: this.homeAddress,
    });
    this.apply({ type: 'inbound', message });
  }
}
