// The destination's side of a migration (docs/agent.md), for one mobile network: answer prepare, take over
// the registration on the handover notification, and undo either on abort. The agent keeps one
// IncomingNetwork per network and routes the control API's requests to it.
import type { Driver } from '../hypervisor/driver.ts';
import type { Logger } from '../log.ts';
import { RegistrationRejectedError } from '../mobilerouter/errors.ts';
import { crashPoint } from './crashpoint.ts';
import {
  type AbortRequest,
  ControlError,
  type HandoverReply,
  type HandoverRequest,
  type PrepareReply,
  type PrepareRequest,
} from './messages.ts';
import type { MigratingNetwork, RouterControl } from './router.ts';

export interface IncomingContext {
  /** This host's name. */
  host: string;
  network: MigratingNetwork;
  router: RouterControl;
  driver: Driver;
  log: Logger;
  now: () => number;
  /** How long a handover waits for the accepting BA before answering `registering` (default 5000 ms). */
  registrationTimeoutMs?: number;
  /**
   * Take the network over without a notification when the prepared guests have arrived and none came
   * (the source died, or cannot reach us, after moving them). Every `pollMs` the driver is asked
   * whether the guests run here; once they have for `graceMs`, this host registers. `graceMs` must
   * outlast the source's deregistration in break-before-make (its BU with lifetime 0 must not arrive
   * after ours). Watching stops after `giveUpMs` (default 10 min). Off when undefined.
   */
  orphanTakeover?: { pollMs: number; graceMs: number; giveUpMs?: number };
}

/** What the agent uses: break-before-make's deregistration waits up to 10 s for its BA. */
export const ORPHAN_TAKEOVER = { pollMs: 500, graceMs: 12_000, giveUpMs: 600_000 };

interface Prepared {
  migrationId: string;
  source: string;
  guests: readonly string[];
}

/** Router states in which this host may take the network over. */
const TAKEOVER_STATES = new Set(['standby']);

export class IncomingNetwork {
  private prepared: Prepared | undefined;
  private handedOver: { migrationId: string; reply: Promise<HandoverReply> } | undefined;
  private watchdog: NodeJS.Timeout | undefined;

  constructor(private readonly ctx: IncomingContext) {}

  /** The migration this host is prepared for or took over, if any. */
  get pendingMigration(): string | undefined {
    return this.prepared?.migrationId ?? this.handedOver?.migrationId;
  }

  async prepare(req: PrepareRequest, signal?: AbortSignal): Promise<PrepareReply> {
    const { ctx } = this;
    const name = ctx.network.name;
    const state = ctx.router.status().state;
    if (!TAKEOVER_STATES.has(state)) {
      throw new ControlError(
        409,
        'ERR_NETWORK_STATE',
        `network ${name} is ${state} on ${ctx.host}, not standby`,
      );
    }
    const foreign = req.guests.filter((g) => !ctx.network.guests.includes(g));
    if (foreign.length > 0) {
      throw new ControlError(
        409,
        'ERR_NETWORK_STATE',
        `guest ${foreign.join(', ')} is not in network ${name} on ${ctx.host} (the hosts' configs differ)`,
      );
    }
    if (this.prepared) {
      ctx.log.warn(
        { replaced: this.prepared.migrationId, migrationId: req.migrationId },
        'prepare replaces an earlier one',
      );
      await this.cancelPrepared(this.prepared);
    }
    // make-before-break: the source forwards what the HA still sends it during the handover, from its CoA.
    const coa = await ctx.router.prepare(
      req.procedure === 'make-before-break' && req.sourceCoa !== undefined
        ? { acceptFrom: req.sourceCoa }
        : {},
    );
    if (coa === undefined) {
      throw new ControlError(409, 'ERR_NETWORK_STATE', `${ctx.host} has no care-of address yet`);
    }
    const incoming: PrepareReply['incoming'] = {};
    const done: string[] = [];
    try {
      for (const guest of req.guests) {
        incoming[guest] = await ctx.driver.prepareIncoming(guest, {
          network: ctx.network,
          source: req.source,
          ...(signal ? { signal } : {}),
        });
        done.push(guest);
      }
    } catch (err) {
      await this.cancelPrepared({ migrationId: req.migrationId, source: req.source, guests: done });
      throw new ControlError(409, 'ERR_HYPERVISOR', `${ctx.host} cannot take the guests: ${message(err)}`, {
        cause: err,
      });
    }
    this.prepared = { migrationId: req.migrationId, source: req.source, guests: req.guests };
    this.handedOver = undefined;
    this.watch(this.prepared);
    ctx.log.info(
      { migrationId: req.migrationId, source: req.source, coa, guests: req.guests },
      'prepared for an incoming migration',
    );
    return { host: ctx.host, network: name, coa, incoming };
  }

  handover(req: HandoverRequest): Promise<HandoverReply> {
    const { ctx } = this;
    // A repeated notification (the source retried) gets the same outcome.
    if (this.handedOver?.migrationId === req.migrationId) return this.handedOver.reply;
    if (this.prepared?.migrationId !== req.migrationId) {
      return Promise.reject(
        new ControlError(
          409,
          'ERR_UNKNOWN_MIGRATION',
          `${ctx.host} is not prepared for migration ${req.migrationId} of ${ctx.network.name}`,
        ),
      );
    }
    const samePrefixes =
      req.prefixes.length === ctx.network.prefixes.length &&
      req.prefixes.every((p) => ctx.network.prefixes.includes(p));
    if (req.hoa !== ctx.network.homeAddress || !samePrefixes) {
      return Promise.reject(
        new ControlError(
          409,
          'ERR_NETWORK_STATE',
          `binding state for ${req.hoa} does not match ${ctx.network.name} on ${ctx.host}`,
        ),
      );
    }
    const prepared = this.prepared;
    this.prepared = undefined;
    const reply = this.takeOver(req, prepared, req.lastSequence);
    this.handedOver = { migrationId: req.migrationId, reply };
    return reply;
  }

  /** Stop watching for guests (agent shutdown). */
  close(): void {
    clearTimeout(this.watchdog);
    this.watchdog = undefined;
  }

  /** The orphan watchdog of `prepared` (see IncomingContext.orphanTakeover); ends when it is consumed. */
  private watch(prepared: Prepared): void {
    const takeover = this.ctx.orphanTakeover;
    clearTimeout(this.watchdog);
    if (!takeover || prepared.guests.length === 0) return;
    const started = this.ctx.now();
    let arrivedAt: number | undefined;
    const tick = async () => {
      this.watchdog = undefined;
      if (this.prepared !== prepared) return;
      try {
        const here = await this.ctx.driver.listGuests(this.ctx.network);
        const all = prepared.guests.every((g) => here.some((h) => h.name === g && h.state === 'running'));
        if (this.prepared !== prepared) return;
        if (!all) arrivedAt = undefined;
        else if (arrivedAt === undefined) arrivedAt = this.ctx.now();
        else if (this.ctx.now() - arrivedAt >= takeover.graceMs) return this.takeOverOrphan(prepared);
      } catch (err) {
        this.ctx.log.warn({ err: message(err) }, 'orphan watchdog: listing guests failed');
      }
      if (this.ctx.now() - started < (takeover.giveUpMs ?? 600_000))
        this.watchdog = setTimeout(() => void tick(), takeover.pollMs).unref();
    };
    this.watchdog = setTimeout(() => void tick(), takeover.pollMs).unref();
  }

  private takeOverOrphan(prepared: Prepared): void {
    this.prepared = undefined;
    this.ctx.log.warn(
      {
        migrationId: prepared.migrationId,
        source: prepared.source,
        guests: prepared.guests,
        graceMs: this.ctx.orphanTakeover?.graceMs,
      },
      'the guests arrived without a handover notification: taking the network over',
    );
    const req = { migrationId: prepared.migrationId, source: prepared.source, procedure: 'orphan' };
    const reply = this.takeOver(req, prepared, undefined);
    reply.catch(() => {});
    // A notification that arrives late still gets this outcome.
    this.handedOver = { migrationId: prepared.migrationId, reply };
  }

  async abort(req: AbortRequest): Promise<void> {
    const { ctx } = this;
    // Guests go back first (cancelling the prepare does not touch a guest that arrived); the prepare is
    // undone even when one could not be sent back, and that failure is reported after.
    if (req.sendBack !== undefined) this.checkSendBack(req);
    const sendBackError =
      req.sendBack === undefined
        ? undefined
        : await this.sendBack(req, req.sendBack).then(
            () => undefined,
            (err: unknown) => err,
          );
    if (this.prepared?.migrationId === req.migrationId) {
      const prepared = this.prepared;
      this.prepared = undefined;
      await this.cancelPrepared(prepared);
      ctx.log.warn(
        { migrationId: req.migrationId, reason: req.reason },
        'incoming migration aborted before handover',
      );
    }
    if (this.handedOver?.migrationId === req.migrationId) {
      const { reply } = this.handedOver;
      this.handedOver = undefined;
      await reply.catch(() => undefined);
      await ctx.router.standby();
      ctx.log.warn(
        { migrationId: req.migrationId, reason: req.reason },
        'incoming migration aborted after handover: standby again',
      );
    }
    if (sendBackError !== undefined) throw sendBackError;
  }

  /**
   * A later guest of the migration failed to move: migrate the ones that arrived back to the source,
   * which prepared for them (`incoming`: per guest, its driver's prepareIncoming). Only guests that run
   * here (checkSendBack has refused other migrations' and other networks' guests); every guest is tried,
   * and the failures are reported together (their guests stay here, running).
   */
  private checkSendBack(req: AbortRequest): void {
    const { ctx } = this;
    const current = this.prepared ?? (this.handedOver && { migrationId: this.handedOver.migrationId });
    if (current?.migrationId !== req.migrationId) {
      throw new ControlError(
        409,
        'ERR_UNKNOWN_MIGRATION',
        `${ctx.host} holds no migration ${req.migrationId} of ${ctx.network.name} to send guests back from`,
      );
    }
    const foreign = Object.keys(req.sendBack ?? {}).filter((g) => !ctx.network.guests.includes(g));
    if (foreign.length > 0) {
      throw new ControlError(
        409,
        'ERR_NETWORK_STATE',
        `guest ${foreign.join(', ')} is not in network ${ctx.network.name} on ${ctx.host}`,
      );
    }
  }

  private async sendBack(req: AbortRequest, incoming: NonNullable<AbortRequest['sendBack']>): Promise<void> {
    const { ctx } = this;
    const guests = Object.keys(incoming);
    const here = await ctx.driver.listGuests(ctx.network);
    const failed: string[] = [];
    for (const guest of guests) {
      if (!here.some((g) => g.name === guest && g.state === 'running')) {
        failed.push(`${guest}: not running on ${ctx.host}`);
        continue;
      }
      try {
        await ctx.driver.migrate(
          guest,
          { host: req.source, incoming: incoming[guest] ?? {} },
          { network: ctx.network },
        );
        ctx.log.warn(
          { migrationId: req.migrationId, guest, to: req.source },
          'guest sent back to the source',
        );
      } catch (err) {
        failed.push(`${guest}: ${message(err)}`);
      }
    }
    if (failed.length > 0) {
      ctx.log.error({ migrationId: req.migrationId, failed }, 'sending guests back to the source failed');
      throw new ControlError(409, 'ERR_HYPERVISOR', `${ctx.host} could not send back ${failed.join('; ')}`);
    }
  }

  /** Register here; without `lastSequence` (no notification) a BA 135 gives the HA's sequence. */
  private async takeOver(
    req: Pick<HandoverRequest, 'migrationId' | 'source'> & { procedure: string },
    prepared: Prepared,
    lastSequence: number | undefined,
  ): Promise<HandoverReply> {
    const { ctx } = this;
    const started = ctx.now();
    crashPoint('destination-before-bu');
    const activation = ctx.router.activate(lastSequence === undefined ? {} : { lastSequence });
    activation.catch(() => {});
    const timeoutMs = ctx.registrationTimeoutMs ?? 5000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    const base = { host: ctx.host, network: ctx.network.name };
    let reply: HandoverReply;
    try {
      const reg = await Promise.race([activation, timeout]);
      if (reg === 'timeout') {
        const s = ctx.router.status();
        reply = {
          ...base,
          state: 'registering',
          coa: s.coa ?? '',
          sequence: s.sequence ?? 0,
          error: `no accepting BA within ${timeoutMs} ms`,
        };
      } else {
        reply = { ...base, state: 'active', coa: reg.coa, sequence: reg.sequence, buToBaMs: reg.buToBaMs };
      }
    } catch (err) {
      const s = ctx.router.status();
      const error =
        err instanceof RegistrationRejectedError ? err.message : `registration failed: ${message(err)}`;
      reply = { ...base, state: 'registering', coa: s.coa ?? '', sequence: s.sequence ?? 0, error };
    } finally {
      clearTimeout(timer);
    }
    const fields = {
      migrationId: req.migrationId,
      source: req.source,
      procedure: req.procedure,
      ...reply,
      takeoverMs: ctx.now() - started,
    };
    if (reply.state === 'active') ctx.log.info(fields, 'took over the network');
    else
      ctx.log.error(fields, 'took over the network, not registered yet (the mobile router keeps retrying)');
    void this.announce(prepared.guests);
    return reply;
  }

  private async announce(guests: readonly string[]): Promise<void> {
    for (const guest of guests) {
      try {
        await this.ctx.driver.announce(guest, { network: this.ctx.network });
      } catch (err) {
        this.ctx.log.warn({ guest, err: message(err) }, 'announce after migration failed');
      }
    }
  }

  private async cancelPrepared(prepared: Prepared): Promise<void> {
    for (const guest of prepared.guests) {
      try {
        await this.ctx.driver.cancelIncoming(guest, { network: this.ctx.network, source: prepared.source });
      } catch (err) {
        this.ctx.log.warn({ guest, err: message(err) }, 'cancelling an incoming guest failed');
      }
    }
  }
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
