// The destination's side of a migration (DESIGN §5), for one mobile network: answer prepare, take over
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
}

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
    const coa = await ctx.router.prepare();
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
    const reply = this.takeOver(req, prepared);
    this.handedOver = { migrationId: req.migrationId, reply };
    return reply;
  }

  async abort(req: AbortRequest): Promise<void> {
    const { ctx } = this;
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
  }

  private async takeOver(req: HandoverRequest, prepared: Prepared): Promise<HandoverReply> {
    const { ctx } = this;
    const started = ctx.now();
    crashPoint('destination-before-bu');
    const activation = ctx.router.activate({ lastSequence: req.lastSequence });
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
