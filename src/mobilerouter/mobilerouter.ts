// The NEMO Basic Support mobile router of one mobile network (RFC 3963 §5, RFC 6275 §11.7): registers the
// host's care-of address with the home agent, keeps the binding fresh, follows CoA changes, and hands the
// binding to another host without deregistering (make-before-break) or deregisters (shutdown, and the
// procedure that deregisters first). One instance per network; the host agent builds them.
//
// Every decision and all of the state are in the pure core (core.ts, inbound.ts, model.ts); runtime.ts
// feeds it events and performs its actions. This class adds the operations (start, prepare, activate,
// handover, standby, deregister, stop) and the host side, which is asynchronous: socket, per-host data
// plane, egress routes, radvd — through HostAttachment. Operations that change kernel state run one at a
// time through a serial queue; datagrams and timers are handled at once and only queue kernel work.
import { randomInt } from 'node:crypto';
import type { TimerHandle } from '../clock.ts';
import { type ExchangeKind, lifetimeRemainingMs } from '../signaling/bul.ts';
import { RegistrationAbandonedError } from './errors.ts';
import { MobileRouterRuntime } from './runtime.ts';
import { MrState } from './state.ts';
import type {
  DeregistrationResult,
  HandoverState,
  MobileRouterComponents,
  MobileRouterOptions,
  Registration,
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

const NO_DEREGISTRATION: DeregistrationResult = {
  acknowledged: false,
  status: undefined,
  sequence: undefined,
  buToBaMs: undefined,
};

export class MobileRouter extends MobileRouterRuntime {
  private readonly deregistrationTimeoutMs: number;
  private started = false;
  private unsubscribeCoa: (() => void) | undefined;

  constructor(components: MobileRouterComponents, options: MobileRouterOptions) {
    super(components, options);
    this.deregistrationTimeoutMs = options.deregistrationTimeoutMs ?? 10_000;
  }

  // ---------------------------------------------------------------- public operations

  /** Make the guest link (bridge, addresses) and follow the care-of address. The network is standby. */
  start(): Promise<void> {
    return this.queue.run(() => this.startOnce());
  }

  /**
   * Readiness for a handover to this host: guest link up, per-host data plane and signaling socket ready
   * for the current CoA, so activate() only has to send. Returns the CoA.
   */
  prepare(options: { acceptFrom?: string } = {}): Promise<string | undefined> {
    return this.queue.run(async () => {
      await this.startOnce();
      const coa = this.components.coa.coa;
      if (coa === undefined) return coa;
      await this.attachment.ensureSocket(coa);
      await this.attachment.ensureHost(coa);
      // What the old host forwards during the handover (forwardTo there) is decapsulated here.
      if (options.acceptFrom !== undefined) await this.attachment.acceptTunnelFrom(coa, options.acceptFrom);
      // What activation does around its first BU, done now and off the handover's path (each is an `ip`
      // process, 5–20 ms: bench/profiles/outage.md). Nothing reaches this host for the guests before it
      // registers, so the neighbour cache stays clean, and the egress routes only match guests' packets
      // arriving on this bridge, i.e. once they are here.
      await this.components.guestLink.flushNeighbours();
      await this.attachment.installRoutes(coa);
      this.apply({ type: 'prepared', coa });
      return coa;
    });
  }

  /**
   * Become the mobile router: register with the HA (waiting for a CoA first if there is none), install
   * the egress route and start router advertisements. With `lastSequence` (a handover from another host)
   * the first BU carries lastSequence + 1, so the HA replaces the binding's CoA in place. Resolves at the
   * first accepted BA; rejects with RegistrationRejectedError on a refusal (the router keeps retrying
   * every retransmit.maxMs) or RegistrationAbandonedError on standby/stop/abort.
   */
  activate(options: { lastSequence?: number; signal?: AbortSignal } = {}): Promise<Registration> {
    const result = this.whenRegistered({ signal: options.signal, acceptCurrent: false });
    this.queue
      .run(async () => {
        await this.startOnce();
        const state = this.model.state;
        if (state === MrState.stopped)
          throw new RegistrationAbandonedError('ERR_MR_STOPPED', `${this.name}: stopped`);
        if (state === MrState.handingOver || state === MrState.deregistering)
          throw new RegistrationAbandonedError('ERR_MR_BUSY', `${this.name}: cannot activate while ${state}`);
        if (state === MrState.active || state === MrState.registering || state === MrState.waitingForCoa) {
          if (options.lastSequence !== undefined)
            this.log.warn({ state }, 'already active: lastSequence ignored');
          const current = this.currentRegistration();
          if (current) this.resolveWaiters(current);
          return;
        }
        this.apply({ type: 'setSequence', lastSequence: options.lastSequence, random: randomInt(0x10000) });
        const kind: ExchangeKind = options.lastSequence === undefined ? 'first' : 'reregistration';
        await this.register(
          kind,
          options.lastSequence === undefined ? 'activate()' : 'activate() after handover',
        );
      })
      .catch((err: Error) => this.failWaiters(err));
    return result;
  }

  /**
   * First half of leaving: stop sending BUs (no refresh may race the new host's BU) but keep routes and
   * advertisements while guests may still be here. Returns what the new host continues from.
   */
  prepareHandover(): Promise<HandoverState> {
    return this.queue.run(async () => {
      const snapshot = this.handoverState();
      if (this.isIn(MrState.standby, MrState.handingOver, MrState.stopped)) return snapshot;
      this.apply({
        type: 'quiesce',
        error: this.abandoned('ERR_MR_STANDBY', 'handing over'),
        to: MrState.handingOver,
        reason: 'prepareHandover()',
      });
      return snapshot;
    });
  }

  /**
   * During a handover (after prepareHandover), on the host the guests are leaving: pass what still
   * arrives from the HA for the network's prefixes on to `peer`, the new host's CoA, until standby().
   * Resolves true once the kernel forwards, false where there is nothing to forward.
   */
  forwardTo(peer: string): Promise<boolean> {
    return this.queue.run(async () =>
      this.isIn(MrState.handingOver) ? this.attachment.forward(peer) : false,
    );
  }

  /**
   * Leave WITHOUT deregistering (the binding now belongs to another host): cancel timers, stop router
   * advertisements, remove the egress route, close the socket. The bridge stays. Returns the handover state.
   */
  standby(): Promise<HandoverState> {
    return this.queue.run(async () => {
      const snapshot = this.handoverState();
      if (this.isIn(MrState.stopped)) return snapshot;
      if (this.isIn(MrState.standby)) {
        // Already standby (maybe prepared for a handover that did not come): release what prepare() made.
        this.apply({ type: 'preparedReleased' });
        await this.teardown();
        return snapshot;
      }
      this.apply({
        type: 'quiesce',
        error: this.abandoned('ERR_MR_STANDBY', 'went to standby'),
        to: MrState.handingOver,
        reason: 'standby()',
      });
      await this.teardown();
      this.apply({ type: 'enter', to: MrState.standby, reason: 'standby()' });
      return snapshot;
    });
  }

  /**
   * Deregister (lifetime 0, RFC 6275 §11.7.1) and wait for the BA. Routes and advertisements are removed
   * while waiting; ends in standby whatever the answer.
   */
  deregister(options: { timeoutMs?: number } = {}): Promise<DeregistrationResult> {
    return this.queue.run(async () => {
      if (this.isIn(MrState.stopped)) throw this.abandoned('ERR_MR_STOPPED', 'stopped');
      this.apply({
        type: 'quiesce',
        error: this.abandoned('ERR_MR_STANDBY', 'deregistering'),
        to: MrState.deregistering,
        reason: 'deregister()',
      });
      const result = await this.sendDeregistration(options.timeoutMs ?? this.deregistrationTimeoutMs);
      await this.teardown();
      this.apply({
        type: 'enter',
        to: MrState.standby,
        reason: result.acknowledged ? 'deregistered' : 'deregistration not acknowledged',
      });
      this.emit('deregistered', result);
      return result;
    });
  }

  /** Stop everything (like standby(), without deregistering) and forget the CoA source. Final. */
  stop(): Promise<void> {
    return this.queue.run(async () => {
      if (this.isIn(MrState.stopped)) return;
      this.apply({ type: 'quiesce', error: this.abandoned('ERR_MR_STOPPED', 'stopped'), reason: 'stop()' });
      await this.teardown();
      this.unsubscribeCoa?.();
      this.unsubscribeCoa = undefined;
      this.apply({ type: 'enter', to: MrState.stopped, reason: 'stop()' });
    });
  }

  // ---------------------------------------------------------------- the host side

  protected retry(): void {
    this.queue
      .run(async () => {
        if (this.isIn(MrState.failed)) await this.register('first', 'retry after failure');
      })
      .catch((err) => this.log.error({ err }, 'retrying the registration failed'));
  }

  private async startOnce(): Promise<void> {
    if (this.started) return;
    this.started = true;
    await this.components.guestLink.ensure();
    this.unsubscribeCoa = this.components.coa.onChange((coa) => {
      this.queue
        .run(() => this.onCoaChange(coa))
        .catch((err) => this.log.error({ err }, 'handling a CoA change failed'));
    });
  }

  /** From standby / failed / waitingForCoa: the first BU, then routes and advertisements. */
  private async register(kind: ExchangeKind, reason: string): Promise<void> {
    this.apply({ type: 'startRegistration', kind, reason });
    if (!this.isIn(MrState.registering)) return; // waiting for a care-of address
    const coa = this.components.coa.coa!;
    const prepared = this.model.preparedFor === coa;
    this.apply({ type: 'preparedReleased' });
    try {
      await this.attachment.ensureSocket(coa);
      await this.attachment.ensureHost(coa);
      // Before the BU: once the HA switches, the guests' traffic must find fresh neighbour entries.
      if (!prepared) await this.components.guestLink.flushNeighbours();
      this.apply({ type: 'readyToSend' });
      // After the BU, so the HA works on it while the egress route and radvd are set up: the guests are
      // already here, and the HA drops their tunnelled packets until it has switched to this CoA anyway.
      await this.attachment.install(coa);
    } catch (err) {
      this.apply({ type: 'setupFailed', error: err as Error });
      return;
    }
    this.apply({ type: 'routesInstalled' });
  }

  private async onCoaChange(coa: string | undefined): Promise<void> {
    this.apply({ type: 'coaChanged' });
    this.emit('coaChanged', coa);
    if (coa === undefined) {
      await this.attachment.closeSocket();
      return;
    }
    if (this.isIn(MrState.waitingForCoa))
      return this.register(this.model.waitingKind, 'care-of address available');
    if (this.isIn(MrState.registering, MrState.active)) {
      await this.attachment.ensureSocket(coa);
      await this.attachment.ensureHost(coa);
      this.apply({ type: 'registerNewCoa' });
      if (this.attachment.routesInstalled) await this.attachment.installRoutes(coa);
    } else if (this.attachment.listeningOn !== undefined && this.attachment.listeningOn !== coa) {
      // standby after prepare(), failed, handing over: a socket on the old address is useless now.
      // (A deregistration holds the queue, so a CoA change waits for it to finish.)
      await this.attachment.closeSocket();
      if (this.isIn(MrState.standby) && this.model.preparedFor !== undefined) {
        this.apply({ type: 'preparedReleased' });
        await this.removeRoutes();
      }
    }
  }

  private async sendDeregistration(timeoutMs: number): Promise<DeregistrationResult> {
    const coa = this.components.coa.coa;
    if (coa === undefined) return NO_DEREGISTRATION;
    await this.attachment.ensureSocket(coa);
    const answered = new Promise<DeregistrationResult>((resolve) => {
      this.answerDeregistration = resolve;
    });
    let timer: TimerHandle | undefined;
    const timedOut = new Promise<DeregistrationResult>((resolve) => {
      timer = this.components.clock.setTimer(timeoutMs, () => resolve(NO_DEREGISTRATION));
    });
    this.apply({ type: 'sendDeregistration' });
    // While waiting: the binding is going away, so the egress route and advertisements go too.
    const teardown = this.removeRoutes().catch((err) => this.log.error({ err }, 'removing routes failed'));
    const result = await Promise.race([answered, timedOut]);
    timer?.cancel();
    this.answerDeregistration = undefined;
    this.apply({ type: 'deregistrationOver' });
    await teardown;
    if (!result.acknowledged) this.log.warn({ timeoutMs }, 'deregistration not acknowledged');
    return result;
  }

  /** Remove what activation installed (socket included). The bridge stays. */
  protected async teardown(): Promise<void> {
    this.apply({ type: 'routesRemoved' });
    await this.attachment.teardown();
  }

  private async removeRoutes(): Promise<void> {
    this.apply({ type: 'routesRemoved' });
    await this.attachment.removeRoutes();
  }

  private handoverState(): HandoverState {
    return {
      network: this.name,
      homeAddress: this.homeAddress,
      prefixes: this.network.prefixes,
      lastSequence: this.model.bul.lastSequence,
      lifetimeRemainingMs: lifetimeRemainingMs(this.model.bul, this.components.clock.now()),
    };
  }
}
