// The NEMO Basic Support mobile router of one mobile network (RFC 3963 §5, RFC 6275 §11.7, DESIGN §1–5):
// registers the host's care-of address with the home agent, keeps the binding fresh, follows CoA changes,
// and hands the binding to another host without deregistering (make-before-break) or deregisters (paper
// procedure, shutdown). One instance per network; the host agent builds them (STYLE: new X(components,
// options)). Effects go through small components so unit tests run on a FakeClock with fakes.
//
// Operations that change kernel state or the state machine (start, activate, standby, deregister, CoA
// changes, stop) run one at a time through a serial queue; incoming messages and timers are handled at
// once and only touch in-memory state, queueing any kernel work.
import { randomInt } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { TimerHandle } from '../clock.ts';
import type { Logger } from '../log.ts';
import { ntpTimestamp, ntpTimestampToMs } from '../protocol/auth.ts';
import { BaFlag, BaStatus, BeStatus, baStatusName } from '../protocol/constants.ts';
import type { DecodedSignalingPacket } from '../protocol/packet.ts';
import { verifyPacketAuth } from '../protocol/packet.ts';
import { seqNewer } from '../protocol/sequence.ts';
import type { BindingAcknowledgement, BindingError, SecurityAssociation } from '../protocol/types.ts';
import { BindingUpdateListEntry, type ExchangeKind, type SentBindingUpdate } from '../signaling/bul.ts';
import type { Datagram } from '../signaling/udp.ts';
import { HostAttachment } from './attachment.ts';
import type { MobileNetworkConfig, MobileRouterHostConfig } from './config.ts';
import { RegistrationAbandonedError, RegistrationRejectedError } from './errors.ts';
import { buildBindingUpdate, classifyInbound, refreshAdviceSeconds, replayTimestamp } from './messages.ts';
import { MrState, type MrStateValue, StateMachine } from './state.ts';
import {
  type DeregistrationResult,
  type HandoverState,
  type MobileRouterComponents,
  type MobileRouterEvents,
  type MobileRouterOptions,
  type MobileRouterStatus,
  type MrCounters,
  type Registration,
  zeroCounters,
} from './types.ts';

export type {
  DeregistrationResult,
  HandoverState,
  MobileRouterComponents,
  MobileRouterEvents,
  MobileRouterOptions,
  MobileRouterStatus,
  MrCounters,
  Registration,
  SignalingTransport,
} from './types.ts';

function isResync(status: number): 'sequence' | 'clock' | undefined {
  if (status === BaStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW) return 'sequence';
  if (status === BaStatus.MIPV6_ID_MISMATCH || status === BaStatus.MIPV6_MESG_ID_REQD) return 'clock';
  return undefined;
}

/** Consecutive 135/144 resyncs in one exchange before the BA is treated as a rejection (loop guard). */
const MAX_RESYNCS = 3;

type Waiter = { resolve: (r: Registration) => void; reject: (e: Error) => void };

export class MobileRouter extends EventEmitter<MobileRouterEvents> {
  readonly name: string;
  readonly homeAddress: string;
  private readonly c: MobileRouterComponents;
  private readonly net: MobileNetworkConfig;
  private readonly host: MobileRouterHostConfig;
  private readonly log: Logger;
  private readonly sm: StateMachine;
  private readonly bul: BindingUpdateListEntry;
  private readonly sa: SecurityAssociation;
  private readonly deregistrationTimeoutMs: number;
  private readonly counters = zeroCounters();
  private readonly attachment: HostAttachment;

  private queue: Promise<unknown> = Promise.resolve();
  private started = false;
  private unsubscribeCoa: (() => void) | undefined;
  private routesReady = false;
  /** The CoA prepare() flushed the guest link and installed the egress routes for, until activation. */
  private preparedFor: string | undefined;
  private acceptedEarly: Registration | undefined;
  private lastRegistration: Registration | undefined;
  private lastAcceptedSequence: number | undefined;
  private lastBaStatus: number | undefined;
  private lastError: string | undefined;
  private lastIgnored: string | undefined;
  private exchangeStartedAt = 0;
  private exchangeLifetimeSeconds = 0;
  private resyncs = 0;
  private waitingKind: ExchangeKind = 'first';
  private retryTimer: TimerHandle | undefined;
  private readonly waiters = new Set<Waiter>();
  private deregWaiter: ((r: DeregistrationResult) => void) | undefined;
  private lastTimestampMs = 0;
  private clockOffsetMs = 0;

  constructor(components: MobileRouterComponents, options: MobileRouterOptions) {
    super();
    this.c = components;
    this.net = options.network;
    this.host = options.host;
    this.name = this.net.name;
    this.homeAddress = this.net.homeAddress;
    this.deregistrationTimeoutMs = options.deregistrationTimeoutMs ?? 10_000;
    this.log = components.logger.child({ network: this.name, hoa: this.homeAddress });
    this.sa = { spi: this.net.spi, key: this.net.key, algorithm: this.net.algorithm };
    this.attachment = new HostAttachment(components, options, (d) => this.onDatagram(d));
    this.sm = new StateMachine(this.log, (t) => this.emit('state', t));
    this.bul = new BindingUpdateListEntry(components.clock, this.net.retransmit, {
      retransmit: () => this.onRetransmitTimer(),
      refresh: () => this.onRefreshTimer(),
      expire: () => this.onExpiryTimer(),
    });
  }

  get state(): MrStateValue {
    return this.sm.state;
  }

  // ---------------------------------------------------------------- public operations

  /** Make the guest link (bridge, addresses) and follow the care-of address. The network is standby. */
  start(): Promise<void> {
    return this.enqueue(() => this.startOnce());
  }

  /**
   * Readiness for a handover to this host (DESIGN §5 step 1): guest link up, per-host data plane and
   * signaling socket ready for the current CoA, so activate() only has to send. Returns the CoA.
   */
  prepare(options: { acceptFrom?: string } = {}): Promise<string | undefined> {
    return this.enqueue(async () => {
      await this.startOnce();
      const coa = this.c.coa.coa;
      if (coa !== undefined) {
        await this.attachment.ensureSocket(coa);
        await this.attachment.ensureHost(coa);
        // What the old host forwards during the handover (forwardTo there) is decapsulated here.
        if (options.acceptFrom !== undefined) await this.attachment.acceptTunnelFrom(coa, options.acceptFrom);
        // What activation does around its first BU, done now and off the handover's path (each is an `ip`
        // process, 5–20 ms: bench/profiles/outage.md). Nothing reaches this host for the guests before it
        // registers, so the neighbour cache stays clean, and the egress routes only match guests' packets
        // arriving on this bridge, i.e. once they are here.
        await this.c.guestLink.flushNeighbours();
        await this.attachment.installRoutes(coa);
        this.preparedFor = coa;
      }
      return coa;
    });
  }

  /**
   * Become the mobile router: register with the HA (waiting for a CoA first if there is none), install
   * the egress route and start router advertisements. With `lastSequence` (a handover from another host,
   * DESIGN §5) the first BU carries lastSequence + 1, so the HA replaces the binding's CoA in place.
   * Resolves at the first accepted BA; rejects with RegistrationRejectedError on a refusal (the router
   * keeps retrying every retransmit.maxMs) or RegistrationAbandonedError on standby/stop/abort.
   */
  activate(options: { lastSequence?: number; signal?: AbortSignal } = {}): Promise<Registration> {
    const result = this.whenRegistered({ signal: options.signal, acceptCurrent: false });
    this.enqueue(async () => {
      await this.startOnce();
      if (this.sm.is(MrState.stopped))
        throw new RegistrationAbandonedError('ERR_MR_STOPPED', `${this.name}: stopped`);
      if (this.sm.is(MrState.handingOver, MrState.deregistering)) {
        throw new RegistrationAbandonedError(
          'ERR_MR_BUSY',
          `${this.name}: cannot activate while ${this.sm.state}`,
        );
      }
      if (this.sm.is(MrState.active, MrState.registering, MrState.waitingForCoa)) {
        if (options.lastSequence !== undefined)
          this.log.warn({ state: this.sm.state }, 'already active: lastSequence ignored');
        if (this.sm.is(MrState.active) && !this.bul.pending && this.lastRegistration)
          this.settle(this.lastRegistration);
        return;
      }
      let kind: ExchangeKind = 'first';
      if (options.lastSequence !== undefined) {
        this.bul.setLastSequence(options.lastSequence);
        kind = 'reregistration';
      } else if (this.bul.sequence === undefined) {
        this.bul.setLastSequence(randomInt(0x10000));
      }
      await this.startRegistration(
        kind,
        options.lastSequence === undefined ? 'activate()' : 'activate() after handover',
      );
    }).catch((err: Error) => this.failWaiters(err));
    return result;
  }

  /**
   * Resolves at the next accepted registration (or at once with the current one when active and nothing
   * is pending); rejects when it fails or is abandoned.
   */
  whenRegistered(
    options: { signal?: AbortSignal | undefined; acceptCurrent?: boolean } = {},
  ): Promise<Registration> {
    if (
      (options.acceptCurrent ?? true) &&
      this.sm.is(MrState.active) &&
      !this.bul.pending &&
      this.lastRegistration
    ) {
      return Promise.resolve(this.lastRegistration);
    }
    return new Promise<Registration>((resolve, reject) => {
      const signal = options.signal;
      const onAbort = () => {
        this.waiters.delete(w);
        reject(
          new RegistrationAbandonedError('ERR_MR_ABORTED', `${this.name}: aborted`, {
            cause: signal?.reason,
          }),
        );
      };
      const w: Waiter = {
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
      this.waiters.add(w);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * First half of leaving (DESIGN §5): stop sending BUs (no refresh may race the new host's BU) but keep
   * routes and advertisements while guests may still be here. Returns what the new host continues from.
   */
  prepareHandover(): Promise<HandoverState> {
    return this.enqueue(async () => {
      const snapshot = this.handoverState();
      if (this.sm.is(MrState.standby, MrState.handingOver, MrState.stopped)) return snapshot;
      this.quiesce(new RegistrationAbandonedError('ERR_MR_STANDBY', `${this.name}: handing over`));
      this.sm.go(MrState.handingOver, 'prepareHandover()');
      return snapshot;
    });
  }

  /**
   * During a handover (after prepareHandover), on the host the guests are leaving: pass what still
   * arrives from the HA for the network's prefixes on to `peer`, the new host's CoA, until standby().
   * Resolves true once the kernel forwards, false where there is nothing to forward (routes not
   * installed here, or a backend that cannot).
   */
  forwardTo(peer: string): Promise<boolean> {
    return this.enqueue(async () => {
      if (!this.sm.is(MrState.handingOver)) return false;
      return this.attachment.forward(peer);
    });
  }

  /**
   * Leave WITHOUT deregistering (the binding now belongs to another host): cancel timers, stop router
   * advertisements, remove the egress route, close the socket. The bridge stays. Returns the handover state.
   */
  standby(): Promise<HandoverState> {
    return this.enqueue(async () => {
      const snapshot = this.handoverState();
      if (this.sm.is(MrState.stopped)) return snapshot;
      if (this.sm.is(MrState.standby)) {
        // Already standby (maybe prepared for a handover that did not come): release what prepare() made.
        this.preparedFor = undefined;
        await this.attachment.teardown();
        return snapshot;
      }
      this.quiesce(new RegistrationAbandonedError('ERR_MR_STANDBY', `${this.name}: went to standby`));
      this.sm.go(MrState.handingOver, 'standby()');
      await this.teardown();
      this.sm.go(MrState.standby, 'standby()');
      return snapshot;
    });
  }

  /**
   * Deregister (lifetime 0, RFC 6275 §11.7.1) and wait for the BA — the paper procedure and shutdown.
   * Routes and advertisements are removed while waiting; ends in standby whatever the answer.
   */
  deregister(options: { timeoutMs?: number } = {}): Promise<DeregistrationResult> {
    return this.enqueue(async () => {
      if (this.sm.is(MrState.stopped))
        throw new RegistrationAbandonedError('ERR_MR_STOPPED', `${this.name}: stopped`);
      this.quiesce(new RegistrationAbandonedError('ERR_MR_STANDBY', `${this.name}: deregistering`));
      this.sm.go(MrState.deregistering, 'deregister()');
      const result = await this.sendDeregistration(options.timeoutMs ?? this.deregistrationTimeoutMs);
      await this.teardown();
      this.sm.go(MrState.standby, result.acknowledged ? 'deregistered' : 'deregistration not acknowledged');
      this.emit('deregistered', result);
      return result;
    });
  }

  /** Stop everything (like standby(), without deregistering) and forget the CoA source. Final. */
  stop(): Promise<void> {
    return this.enqueue(async () => {
      if (this.sm.is(MrState.stopped)) return;
      this.quiesce(new RegistrationAbandonedError('ERR_MR_STOPPED', `${this.name}: stopped`));
      await this.teardown();
      this.unsubscribeCoa?.();
      this.unsubscribeCoa = undefined;
      this.sm.go(MrState.stopped, 'stop()');
    });
  }

  status(): MobileRouterStatus {
    return {
      network: this.name,
      homeAddress: this.homeAddress,
      prefixes: this.net.prefixes,
      bridge: this.net.bridge,
      state: this.sm.state,
      coa: this.c.coa.coa,
      sequence: this.bul.sequence,
      lifetimeRemainingMs: this.bul.lifetimeRemainingMs(),
      pending: this.bul.pending,
      lastBaStatus: this.lastBaStatus,
      lastBaStatusName: this.lastBaStatus === undefined ? undefined : baStatusName(this.lastBaStatus),
      lastBuToBaMs: this.lastRegistration?.buToBaMs,
      lastError: this.lastError,
      lastIgnored: this.lastIgnored,
      counters: { ...this.counters },
    };
  }

  // ---------------------------------------------------------------- registration

  private async startOnce(): Promise<void> {
    if (this.started) return;
    this.started = true;
    await this.c.guestLink.ensure();
    this.unsubscribeCoa = this.c.coa.onChange((coa) => {
      this.enqueue(() => this.onCoaChange(coa)).catch((err) =>
        this.log.error({ err }, 'handling a CoA change failed'),
      );
    });
  }

  /** From standby / failed / waitingForCoa: send the first BU, then install routes and advertisements. */
  private async startRegistration(kind: ExchangeKind, reason: string): Promise<void> {
    this.cancelRetry();
    const coa = this.c.coa.coa;
    if (coa === undefined) {
      this.waitingKind = kind;
      this.sm.go(MrState.waitingForCoa, `${reason}: the uplink has no usable global address yet`);
      return;
    }
    this.sm.go(MrState.registering, reason);
    this.routesReady = false;
    this.acceptedEarly = undefined;
    try {
      const prepared = this.preparedFor === coa;
      this.preparedFor = undefined;
      await this.attachment.ensureSocket(coa);
      await this.attachment.ensureHost(coa);
      // Before the BU: once the HA switches, the guests' traffic must find fresh neighbour entries.
      if (!prepared) await this.c.guestLink.flushNeighbours();
      this.beginExchange(kind, this.net.lifetimeSeconds);
      this.sendBu();
      // After the BU, so the HA works on it while the egress route and radvd are set up: the guests are
      // already here, and the HA drops their tunnelled packets until it has switched to this CoA anyway.
      await this.attachment.install(coa);
    } catch (err) {
      this.fail(
        new RegistrationAbandonedError(
          'ERR_MR_DATAPLANE',
          `${this.name}: setting up failed: ${String(err)}`,
          { cause: err },
        ),
      );
      return;
    }
    this.routesReady = true;
    const early = this.acceptedEarly;
    this.acceptedEarly = undefined;
    if (early && this.sm.is(MrState.registering)) this.becomeActive(early);
  }

  private beginExchange(kind: ExchangeKind, lifetimeSeconds: number): void {
    this.bul.begin(kind);
    this.exchangeStartedAt = this.c.clock.now();
    this.exchangeLifetimeSeconds = lifetimeSeconds;
    this.resyncs = 0;
  }

  /** Replay Protection timestamps strictly increase: the HA refuses one not newer than the last accepted. */
  private nextTimestampMs(): number {
    const t = Math.max(this.c.clock.now() + this.clockOffsetMs, this.lastTimestampMs + 0.001);
    this.lastTimestampMs = t;
    return t;
  }

  /** Send the next BU of the current exchange from the current CoA, with a new sequence number. */
  private sendBu(): void {
    const coa = this.c.coa.coa;
    if (coa === undefined || this.attachment.listeningOn !== coa) {
      this.counters.buSkipped++;
      this.bul.armRetransmission();
      return;
    }
    const sequence = this.bul.allocateSequence();
    const timestampMs = this.nextTimestampMs();
    const lifetimeSeconds = this.exchangeLifetimeSeconds;
    const bytes = buildBindingUpdate({
      hoa: this.homeAddress,
      haAddress: this.host.haAddress,
      coa,
      sa: this.sa,
      mode: this.net.mode,
      prefixes: this.net.prefixes,
      sequence,
      lifetimeSeconds,
      timestampMs,
    });
    const sent = this.bul.recordSent({
      sequence,
      coa,
      lifetimeSeconds,
      timestamp: ntpTimestamp(timestampMs),
    });
    this.counters.buSent++;
    this.log.debug({ sequence, coa, lifetimeSeconds, attempt: sent.attempt }, 'BU sent');
    this.c.transport.send(bytes, this.host.haAddress, this.host.haPort).catch((err) => {
      this.counters.sendErrors++;
      this.log.warn({ err: String(err), sequence }, 'sending the BU failed');
    });
  }

  private onRetransmitTimer(): void {
    if (!this.sm.is(MrState.registering, MrState.active, MrState.deregistering)) return;
    this.counters.buRetransmitted++;
    this.log.info({ kind: this.bul.pendingKind }, 'no BA: retransmitting the BU');
    this.sendBu();
  }

  private onRefreshTimer(): void {
    if (!this.sm.is(MrState.active) || this.bul.pending) return;
    this.beginExchange('reregistration', this.net.lifetimeSeconds);
    this.sendBu();
  }

  private onExpiryTimer(): void {
    if (!this.sm.is(MrState.active)) return;
    // The HA has dropped the binding. Routes and advertisements stay: guests keep their link, and traffic
    // resumes the moment the HA accepts a BU again (after an HA restart, for instance).
    this.lastError = 'binding lifetime expired without a BA';
    this.sm.go(MrState.registering, 'binding lifetime expired without a BA');
    if (!this.bul.pending) {
      this.beginExchange('reregistration', this.net.lifetimeSeconds);
      this.sendBu();
    }
  }

  private async onCoaChange(coa: string | undefined): Promise<void> {
    this.counters.coaChanges++;
    this.emit('coaChanged', coa);
    if (coa === undefined) {
      if (this.sm.is(MrState.registering)) {
        this.waitingKind = this.bul.pendingKind ?? 'first';
        this.bul.stopRetransmission();
        this.sm.go(MrState.waitingForCoa, 'care-of address lost');
      }
      await this.attachment.closeSocket();
      return;
    }
    if (this.sm.is(MrState.waitingForCoa))
      return this.startRegistration(this.waitingKind, 'care-of address available');
    if (this.sm.is(MrState.registering, MrState.active)) {
      // RFC 6275 §11.7.1: a new CoA is registered at once; the routes follow it.
      await this.attachment.ensureSocket(coa);
      await this.attachment.ensureHost(coa);
      const kind =
        this.lastAcceptedSequence === undefined ? (this.bul.pendingKind ?? 'first') : 'reregistration';
      this.beginExchange(kind, this.net.lifetimeSeconds);
      this.sendBu();
      if (this.attachment.routesInstalled) await this.attachment.installRoutes(coa);
    } else if (this.attachment.listeningOn !== undefined && this.attachment.listeningOn !== coa) {
      // standby after prepare(), failed, handing over: a socket on the old address is useless now.
      // (A deregistration holds the queue, so a CoA change waits for it to finish.)
      await this.attachment.closeSocket();
      if (this.sm.is(MrState.standby) && this.preparedFor !== undefined) {
        this.preparedFor = undefined;
        await this.attachment.removeRoutes();
      }
    }
  }

  // ---------------------------------------------------------------- incoming

  private onDatagram(d: Datagram): void {
    const m = classifyInbound(d, {
      haAddress: this.host.haAddress,
      haPort: this.host.haPort,
      hoa: this.homeAddress,
    });
    switch (m.kind) {
      case 'malformed':
        this.ignore('ignoredMalformed', m.reason);
        break;
      case 'foreign':
        this.ignore('ignoredForeign', m.reason);
        break;
      case 'unexpected':
        this.ignore('ignoredUnsolicited', m.reason);
        break;
      case 'bindingAcknowledgement':
        this.onBindingAck(m.packet, m.ba);
        break;
      case 'bindingRefreshRequest':
        this.onBindingRefreshRequest(m.packet);
        break;
      case 'bindingError':
        this.onBindingError(m.be);
        break;
    }
  }

  private ignore(counter: keyof MrCounters, reason: string): void {
    this.counters[counter]++;
    this.lastIgnored = `${counter}: ${reason}`;
    this.log.warn({ counter, reason }, 'message ignored');
    this.emit('ignored', { counter, reason });
  }

  /** RFC 6275 §11.7.3: a BA acts only when it answers a BU we sent, is authentic and fresh. */
  private onBindingAck(packet: DecodedSignalingPacket, ba: BindingAcknowledgement): void {
    const match = this.matchAck(packet, ba);
    if ('counter' in match) {
      this.ignore(match.counter, match.reason);
      return;
    }
    const { sent } = match;
    if (!this.bul.pending) {
      this.onLateAck(sent, ba);
      return;
    }
    const dereg = this.sm.is(MrState.deregistering);
    if (dereg !== (sent.lifetimeSeconds === 0)) {
      this.ignore('ignoredStale', `BA seq ${ba.sequence} answers an earlier exchange`);
      return;
    }
    this.lastBaStatus = ba.status;
    const resync = isResync(ba.status);
    if (resync && this.resyncs < MAX_RESYNCS) this.resync(ba, resync === 'clock');
    else if (dereg) this.deregistrationAnswered(sent, ba);
    else if (ba.status < 128 && ba.lifetime > 0 && (ba.flags & BaFlag.R) !== 0) this.accepted(sent, ba);
    else if (ba.status >= 128) this.rejected(ba.status);
    else {
      // RFC 3963 §5.3: a BA without R means the HA will not forward for our prefixes.
      const why =
        (ba.flags & BaFlag.R) === 0 ? 'BA without the R flag (RFC 3963 §5.3)' : 'zero lifetime granted';
      this.rejected(BaStatus.MOBILE_ROUTER_OPERATION_NOT_PERMITTED, why);
    }
  }

  private matchAck(
    packet: DecodedSignalingPacket,
    ba: BindingAcknowledgement,
  ): { sent: SentBindingUpdate } | { counter: keyof MrCounters; reason: string } {
    const what = `BA ${baStatusName(ba.status)} seq ${ba.sequence}`;
    if (!this.sm.is(MrState.registering, MrState.active, MrState.deregistering)) {
      return { counter: 'ignoredUnsolicited', reason: `${what} in state ${this.sm.state}` };
    }
    // A 135 carries the HA's stored number, not ours: it answers the exchange in progress.
    const resync = isResync(ba.status);
    const sent =
      resync === 'sequence' ? (this.bul.pending ? this.bul.lastSent : undefined) : this.bul.find(ba.sequence);
    if (!sent) return { counter: 'ignoredUnsolicited', reason: `${what}: no such BU sent` };
    if (!verifyPacketAuth(packet, this.sa, sent.coa, this.homeAddress)) {
      const how = packet.authOffset === undefined ? 'unsigned' : 'fails MN-HA authentication';
      const hint =
        ba.status === BaStatus.MIPV6_AUTH_FAIL ? ' (the HA could not verify our BU: check spi/key)' : '';
      return { counter: 'ignoredAuth', reason: `${what} ${how}${hint}` };
    }
    // RFC 4285 §6: the HA echoes the BU's timestamp, except when it tells us its own clock (144/145).
    if (resync !== 'clock' && resync !== 'sequence' && replayTimestamp(ba.options) !== sent.timestamp) {
      return { counter: 'ignoredReplay', reason: `${what} does not echo the BU's timestamp` };
    }
    return { sent };
  }

  /** A BA after its exchange ended: a later retransmission's answer extends the binding, anything else is stale. */
  private onLateAck(sent: SentBindingUpdate, ba: BindingAcknowledgement): void {
    const newer = this.lastAcceptedSequence === undefined || seqNewer(ba.sequence, this.lastAcceptedSequence);
    if (
      this.sm.is(MrState.active) &&
      ba.status < 128 &&
      ba.lifetime > 0 &&
      newer &&
      sent.lifetimeSeconds > 0
    ) {
      this.bul.acknowledged(sent, ba.lifetime * 4, refreshAdviceSeconds(ba.options));
      this.lastAcceptedSequence = ba.sequence;
      return;
    }
    this.ignore('ignoredStale', `BA ${baStatusName(ba.status)} seq ${ba.sequence} after its exchange ended`);
  }

  /** BA 135: continue from the HA's number (RFC 6275 §11.7.3); 144/145: adopt the HA's clock (RFC 4285 §6). */
  private resync(ba: BindingAcknowledgement, clock: boolean): void {
    this.resyncs++;
    if (clock) {
      const haTs = replayTimestamp(ba.options);
      if (haTs !== undefined) this.clockOffsetMs = ntpTimestampToMs(haTs) - this.c.clock.now();
      this.counters.baTimestampResync++;
      this.log.warn(
        { status: baStatusName(ba.status), offsetMs: this.clockOffsetMs },
        'replay timestamp refused: resyncing to the HA clock',
      );
    } else {
      this.bul.setLastSequence(ba.sequence);
      this.counters.baSequenceResync++;
      this.log.info({ stored: ba.sequence }, 'BA 135: resyncing to the HA sequence number');
    }
    this.sendBu();
  }

  private accepted(sent: SentBindingUpdate, ba: BindingAcknowledgement): void {
    const now = this.c.clock.now();
    const advice = refreshAdviceSeconds(ba.options);
    const lifetimeSeconds = ba.lifetime * 4;
    const kind = this.bul.pendingKind ?? 'reregistration';
    this.bul.acknowledged(sent, lifetimeSeconds, advice);
    this.lastAcceptedSequence = ba.sequence;
    this.counters.baAccepted++;
    this.lastError = undefined;
    const reg: Registration = {
      network: this.name,
      homeAddress: this.homeAddress,
      coa: sent.coa,
      sequence: ba.sequence,
      lifetimeSeconds,
      refreshAdviceSeconds: advice,
      buToBaMs: now - sent.sentAt,
      exchangeMs: now - this.exchangeStartedAt,
      retransmissions: sent.attempt,
      kind,
    };
    this.log.info(
      {
        sequence: reg.sequence,
        coa: reg.coa,
        lifetimeSeconds,
        buToBaMs: reg.buToBaMs,
        refreshAdviceSeconds: advice,
      },
      'registered',
    );
    if (this.sm.is(MrState.active)) this.settle(reg);
    else if (!this.routesReady) {
      this.acceptedEarly = reg;
    } else this.becomeActive(reg);
  }

  private becomeActive(reg: Registration): void {
    this.sm.go(MrState.active, `BA accepted, sequence ${reg.sequence}`);
    this.settle(reg);
  }

  private settle(reg: Registration): void {
    this.lastRegistration = reg;
    for (const w of [...this.waiters]) w.resolve(reg);
    this.waiters.clear();
    this.emit('registered', reg);
  }

  /** Any refusal other than a resync: surfaced with its name; routes go; retried after retransmit.maxMs. */
  private rejected(status: number, detail?: string): void {
    this.counters.baRejected++;
    this.fail(new RegistrationRejectedError(this.name, status, detail));
  }

  private fail(err: RegistrationRejectedError | RegistrationAbandonedError): void {
    this.lastError = err.message;
    this.log.error(
      { code: err.code, status: err instanceof RegistrationRejectedError ? err.statusName : undefined },
      err.message,
    );
    this.bul.cancel();
    this.failWaiters(err);
    if (!this.sm.is(MrState.registering, MrState.active)) return;
    this.sm.go(MrState.failed, err.message);
    this.emit('registrationFailed', err);
    this.enqueue(() => this.teardown())
      .then(() => this.scheduleRetry())
      .catch((e) => this.log.error({ err: e }, 'removing routes after a failure failed'));
  }

  private failWaiters(err: Error): void {
    for (const w of [...this.waiters]) w.reject(err);
    this.waiters.clear();
  }

  private scheduleRetry(): void {
    if (!this.sm.is(MrState.failed)) return;
    this.cancelRetry();
    this.retryTimer = this.c.clock.setTimer(this.net.retransmit.maxMs, () => {
      this.retryTimer = undefined;
      this.enqueue(async () => {
        if (this.sm.is(MrState.failed)) await this.startRegistration('first', 'retry after failure');
      }).catch((err) => this.log.error({ err }, 'retrying the registration failed'));
    });
  }

  private cancelRetry(): void {
    this.retryTimer?.cancel();
    this.retryTimer = undefined;
  }

  /** RFC 6275 §11.7.4: the HA asks for a BU; answered only while we hold the binding. */
  private onBindingRefreshRequest(packet: DecodedSignalingPacket): void {
    if (packet.authOffset !== undefined && this.lastRegistration) {
      if (!verifyPacketAuth(packet, this.sa, this.lastRegistration.coa, this.homeAddress)) {
        this.ignore('ignoredAuth', 'BRR fails MN-HA authentication');
        return;
      }
    }
    if (!this.sm.is(MrState.active) || this.bul.pending) {
      this.counters.brrIgnored++;
      this.log.info({ state: this.sm.state, pending: this.bul.pending }, 'BRR ignored');
      return;
    }
    this.counters.brrAnswered++;
    this.log.info('BRR: re-registering');
    this.beginExchange('reregistration', this.net.lifetimeSeconds);
    this.sendBu();
  }

  /** RFC 6275 §11.3.6: a BE is unauthenticated, so it only ever triggers one more (authenticated) BU. */
  private onBindingError(be: BindingError): void {
    this.counters.beReceived++;
    this.log.warn({ status: be.status, homeAddress: be.homeAddress }, 'binding error from the home agent');
    if (
      be.status === BeStatus.UNKNOWN_HOME_ADDRESS_OPTION &&
      this.sm.is(MrState.active) &&
      !this.bul.pending
    ) {
      this.beginExchange('reregistration', this.net.lifetimeSeconds);
      this.sendBu();
    }
  }

  // ---------------------------------------------------------------- deregistration

  private async sendDeregistration(timeoutMs: number): Promise<DeregistrationResult> {
    const coa = this.c.coa.coa;
    const none: DeregistrationResult = {
      acknowledged: false,
      status: undefined,
      sequence: undefined,
      buToBaMs: undefined,
    };
    if (coa === undefined) return none;
    await this.attachment.ensureSocket(coa);
    const answered = new Promise<DeregistrationResult>((resolve) => {
      this.deregWaiter = resolve;
    });
    let timer: TimerHandle | undefined;
    const timedOut = new Promise<DeregistrationResult>((resolve) => {
      timer = this.c.clock.setTimer(timeoutMs, () => resolve(none));
    });
    this.beginExchange('reregistration', 0);
    this.sendBu();
    // While waiting: the binding is going away, so the egress route and advertisements go too.
    const teardown = this.removeRoutes().catch((err) => this.log.error({ err }, 'removing routes failed'));
    const result = await Promise.race([answered, timedOut]);
    timer?.cancel();
    this.deregWaiter = undefined;
    this.bul.cancel();
    await teardown;
    if (!result.acknowledged) this.log.warn({ timeoutMs }, 'deregistration not acknowledged');
    return result;
  }

  private deregistrationAnswered(sent: SentBindingUpdate, ba: BindingAcknowledgement): void {
    this.bul.stopRetransmission();
    if (ba.status >= 128)
      this.log.warn({ status: baStatusName(ba.status) }, 'deregistration refused; leaving anyway');
    this.deregWaiter?.({
      acknowledged: true,
      status: ba.status,
      sequence: ba.sequence,
      buToBaMs: this.c.clock.now() - sent.sentAt,
    });
  }

  // ---------------------------------------------------------------- kernel side

  /** Remove what activation installed (socket included). The bridge stays. */
  private async teardown(): Promise<void> {
    this.routesReady = false;
    await this.attachment.teardown();
  }

  private async removeRoutes(): Promise<void> {
    this.routesReady = false;
    await this.attachment.removeRoutes();
  }

  /** Stop every timer and settle waiters; nothing more is sent until the next activation. */
  private quiesce(err: Error): void {
    this.cancelRetry();
    this.bul.cancel();
    this.acceptedEarly = undefined;
    this.failWaiters(err);
  }

  private handoverState(): HandoverState {
    return {
      network: this.name,
      homeAddress: this.homeAddress,
      prefixes: this.net.prefixes,
      lastSequence: this.bul.sequence,
      lifetimeRemainingMs: this.bul.lifetimeRemainingMs(),
    };
  }

  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => {});
    return run;
  }
}
