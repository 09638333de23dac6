// The migration of one mobile network, run on the source host (docs/agent.md).
//
// make-before-break (default):
//   1 prepare     destination checks it holds the network, has a CoA, readies the hypervisor side
//   2 hypervisor  the guests move; at the last guest's switchover the handover starts (overlapping the
//                 final stop / the veth move), unless `overlap` is off
//   3 notification  the source stops sending BUs and tells the destination "migration completed" with
//                 the binding state; the destination sends BU(last + 1) at once, the HA replaces the
//                 binding's CoA in place, and the reply comes after the BA
//   4 standby     the source leaves without deregistering
// break-before-make (the report's order, for comparison):
//   1 prepare, 2 hypervisor, 3 deregistration (lifetime 0, wait for BA: the network is nowhere
//   registered from here), 4 notification (the destination registers; reply after its BA)
//
// Failure handling: before the guests have moved, a failure leaves the network active here and the
// destination is told to forget the prepare. When a later guest's move fails after earlier ones
// arrived, the destination sends those back with the abort (this host prepares for them first). If the hypervisor step fails after an overlapped handover
// already moved the binding, the destination is told to step back and this host re-registers with a
// sequence number above the destination's. After the guests have moved, a failed notification or
// registration is reported as such: the destination's MR keeps retrying under its own rules.
//
// Every step is timed; the record (returned, never thrown) carries the timings and, on failure, the
// phase, the error and what was done about it.

import { setTimeout as delay } from 'node:timers/promises';
import { OfflinkError } from '../errors.ts';
import type { Driver, DriverMigrationResult, IncomingSpec } from '../hypervisor/driver.ts';
import type { Logger } from '../log.ts';
import { seqNewer } from '../protocol/sequence.ts';
import { crashPoint } from './crashpoint.ts';
import {
  ControlError,
  type HandoverReply,
  type MigrationEvent,
  type MigrationRecord,
  type Peer,
  type Phase,
  type PrepareReply,
  type Procedure,
} from './messages.ts';
import type { MigratingNetwork, RouterControl } from './router.ts';

export interface MigrationContext {
  id: string;
  procedure: Procedure;
  /** This host's name. */
  from: string;
  network: MigratingNetwork;
  router: RouterControl;
  driver: Driver;
  /** The destination. */
  peer: Peer;
  log: Logger;
  /** Monotonic milliseconds (performance.now in the agent). */
  now: () => number;
  /** Wall clock, for `startedAt`. */
  wallClock: () => number;
  onEvent?: (event: MigrationEvent) => void;
  /** make-before-break: start the handover at the last guest's switchover (default true). */
  overlap?: boolean;
  /** Attempts of the handover notification when the destination cannot be reached (default 8). */
  notificationAttempts?: number;
  /** Wait before each further attempt: `initialMs`, doubling up to `maxMs` (default 250 → 4000 ms). */
  notificationBackoff?: { initialMs: number; maxMs: number };
  /** How to wait between attempts (default a timer; unit tests record instead). */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  signal?: AbortSignal;
}

/**
 * 250 ms doubling to 4 s, eight attempts: about 16 s, long enough for a destination agent to restart
 * (its control port refuses or resets connections meanwhile) and well inside a binding's lifetime.
 */
const NOTIFICATION_BACKOFF = { initialMs: 250, maxMs: 4000 };
const NOTIFICATION_ATTEMPTS = 8;

/** A phase failed: carries which, for the record. */
class PhaseError extends OfflinkError {
  constructor(
    readonly phase: Phase,
    cause: unknown,
  ) {
    super('ERR_MIGRATION_PHASE', `${phase}: ${message(cause)}`, { cause });
  }
}

export async function runMigration(ctx: MigrationContext): Promise<MigrationRecord> {
  return new Migration(ctx).run();
}

class Migration {
  private readonly record: MigrationRecord;
  private readonly t0: number;
  private handover: Promise<HandoverReply> | undefined;
  private handoverStartedAt = 0;
  /** From the prepare reply: where make-before-break forwards to during the handover. */
  private destinationCoa: string | undefined;

  constructor(private readonly ctx: MigrationContext) {
    this.t0 = ctx.now();
    this.record = {
      id: ctx.id,
      network: ctx.network.name,
      from: ctx.from,
      to: ctx.peer.host,
      procedure: ctx.procedure,
      startedAt: new Date(ctx.wallClock()).toISOString(),
      outcome: 'running',
      timings: {},
    };
  }

  async run(): Promise<MigrationRecord> {
    const { ctx, record } = this;
    ctx.log.info({ to: record.to, procedure: ctx.procedure }, 'migration started');
    try {
      const guests = (await ctx.driver.listGuests(ctx.network, { signal: ctx.signal }))
        .filter((g) => g.state === 'running')
        .map((g) => g.name);
      const sourceCoa = ctx.router.status().coa;
      const prepared = await this.phase('prepare', 'prepareMs', () =>
        ctx.peer.prepare(
          {
            migrationId: ctx.id,
            network: ctx.network.name,
            source: ctx.from,
            procedure: ctx.procedure,
            guests,
            ...(sourceCoa !== undefined ? { sourceCoa } : {}),
          },
          ctx.signal,
        ),
      );
      this.destinationCoa = prepared.coa;
      await this.moveGuests(guests, prepared);
      crashPoint('source-after-hypervisor');
      if (ctx.procedure === 'break-before-make') await this.breakBeforeMakeHandover();
      else await this.makeBeforeBreakHandover();
      record.outcome = record.outcome === 'running' ? 'succeeded' : record.outcome;
    } catch (err) {
      record.outcome = 'failed';
      if (err instanceof PhaseError) record.failedPhase = err.phase;
      record.error = message(err instanceof PhaseError ? err.cause : err);
    }
    record.timings.totalMs = round(ctx.now() - this.t0);
    const fields = { outcome: record.outcome, timings: record.timings, failedPhase: record.failedPhase };
    if (record.outcome === 'succeeded') ctx.log.info(fields, 'migration succeeded');
    else ctx.log.error({ ...fields, error: record.error, recovery: record.recovery }, 'migration failed');
    return record;
  }

  /** Step 2. On failure the guests are back here (the driver's promise) and the destination is cleaned. */
  private async moveGuests(guests: readonly string[], prepared: PrepareReply): Promise<void> {
    const { ctx, record } = this;
    const overlap = ctx.procedure === 'make-before-break' && (ctx.overlap ?? true);
    const results: DriverMigrationResult[] = [];
    try {
      await this.phase('hypervisor', undefined, async () => {
        const started = ctx.now();
        for (const [i, guest] of guests.entries()) {
          const incoming = prepared.incoming[guest];
          if (incoming === undefined)
            throw new OfflinkError('ERR_PEER', `${record.to} sent nothing for guest ${guest}`);
          const last = i === guests.length - 1;
          results.push(
            await ctx.driver.migrate(
              guest,
              { host: record.to, incoming },
              {
                network: ctx.network,
                ...(ctx.signal ? { signal: ctx.signal } : {}),
                ...(overlap && last ? { onSwitchover: async () => void this.startHandover() } : {}),
              },
            ),
          );
        }
        record.timings.hypervisorMs = round(ctx.now() - started);
        const downtimes = results.map((r) => r.downtimeMs).filter((d): d is number => d !== undefined);
        if (downtimes.length > 0) record.timings.downtimeMs = round(Math.max(...downtimes));
      });
    } catch (err) {
      record.recovery = await this.recoverFromHypervisorFailure(err, guests.slice(0, results.length));
      throw err;
    }
  }

  /**
   * The guest that failed is back here (the driver's promise); `moved` are the ones before it, which run
   * on the destination now. They are brought back (this host prepares for them, the destination migrates
   * them with the abort), so the network is whole on one host: here, where it is still registered.
   */
  private async recoverFromHypervisorFailure(err: unknown, moved: readonly string[]): Promise<string> {
    const { ctx, record } = this;
    const reason = message(err);
    const steps: string[] = [];
    // An overlapped handover may have moved the binding already: let it settle before undoing it.
    const reply = this.handover ? await this.handover.catch(() => undefined) : undefined;
    const sendBack: Record<string, IncomingSpec> = {};
    for (const guest of moved) {
      try {
        sendBack[guest] = await ctx.driver.prepareIncoming(guest, {
          network: ctx.network,
          source: record.to,
        });
      } catch (prepErr) {
        steps.push(
          `${record.from} cannot take ${guest} back (${message(prepErr)}): it stays on ${record.to}`,
        );
      }
    }
    const returning = Object.keys(sendBack);
    try {
      await ctx.peer.abort({
        migrationId: ctx.id,
        network: ctx.network.name,
        source: ctx.from,
        reason,
        ...(returning.length > 0 ? { sendBack } : {}),
      });
      steps.push(`${record.to} told to forget the migration`);
      if (returning.length > 0) steps.push(`${returning.join(', ')} sent back to ${record.from}`);
    } catch (abortErr) {
      steps.push(
        returning.length > 0
          ? `telling ${record.to} to forget it and send ${returning.join(', ')} back FAILED (${message(abortErr)})`
          : `telling ${record.to} to forget it FAILED (${message(abortErr)})`,
      );
    }
    // Whatever did not arrive: undo the prepare (a guest that did arrive is not touched), and let the ones
    // that did learn where they are.
    const here = new Set(
      (await ctx.driver.listGuests(ctx.network).catch(() => []))
        .filter((g) => g.state === 'running')
        .map((g) => g.name),
    );
    for (const guest of returning) {
      if (here.has(guest)) {
        await ctx.driver.announce(guest, { network: ctx.network }).catch(() => {});
      } else {
        await ctx.driver.cancelIncoming(guest, { network: ctx.network, source: record.to }).catch(() => {});
        steps.push(`${guest} is still on ${record.to}`);
      }
    }
    if (this.handover) {
      // The router is handing over (no BUs): re-register here, newer than whatever the destination sent.
      try {
        const before = await ctx.router.standby();
        const candidates = [before.lastSequence, reply?.sequence].filter((s): s is number => s !== undefined);
        const newest = candidates.reduce<number | undefined>(
          (a, b) => (a === undefined || seqNewer(b, a) ? b : a),
          undefined,
        );
        const reg = await ctx.router.activate(newest === undefined ? {} : { lastSequence: newest });
        steps.push(`${record.from} registered again (sequence ${reg.sequence})`);
      } catch (regErr) {
        steps.push(`registering ${record.from} again FAILED (${message(regErr)})`);
      }
    } else {
      steps.push(`network still active on ${record.from}`);
    }
    return steps.join('; ');
  }

  /** Steps 3–4 of make-before-break. */
  private async makeBeforeBreakHandover(): Promise<void> {
    const { ctx, record } = this;
    let reply: HandoverReply;
    try {
      reply = await this.awaitHandover();
    } catch (err) {
      // The guests run on the destination now: this host cannot serve them, and staying in handingOver
      // would keep its routes and router advertisements and refuse every later prepare (the network
      // could never come back here). Leave without deregistering: the destination registers when it
      // gets the guests without a notification, or has done so already.
      try {
        await ctx.router.standby();
        record.recovery = `${record.recovery}; ${record.from} went to standby`;
      } catch (standbyErr) {
        record.recovery = `${record.recovery}; ${record.from} could not go to standby (${message(standbyErr)})`;
      }
      throw err;
    }
    await this.phase('standby', undefined, () => ctx.router.standby());
    this.checkRegistered(reply);
  }

  /** Steps 3–4 of break-before-make. */
  private async breakBeforeMakeHandover(): Promise<void> {
    const { ctx, record } = this;
    const dereg = await this.phase('deregistration', 'deregistrationMs', async () => {
      const r = await ctx.router.deregister();
      if (!r.acknowledged) ctx.log.warn({ status: r.status }, 'deregistration not acknowledged; continuing');
      return r;
    });
    if (dereg.buToBaMs !== undefined) record.timings.deregistrationMs = round(dereg.buToBaMs);
    const reply = await this.awaitHandover(dereg.sequence);
    this.checkRegistered(reply);
  }

  private checkRegistered(reply: HandoverReply): void {
    if (reply.state === 'active') return;
    const { record } = this;
    record.outcome = 'failed';
    record.failedPhase = 'registration';
    record.error = `${record.to} is not registered yet: ${reply.error ?? 'no accepting BA'}`;
    record.recovery = `guests are on ${record.to}; its mobile router keeps retrying`;
  }

  /** Start the notification (once); from the switchover hook or after the guests moved. */
  private startHandover(lastSequence?: number): Promise<HandoverReply> {
    if (this.handover) return this.handover;
    const { ctx } = this;
    this.handoverStartedAt = ctx.now();
    this.emit('notification', 'start');
    this.handover = (async () => {
      const state = ctx.procedure === 'break-before-make' ? undefined : await ctx.router.prepareHandover();
      if (state && this.destinationCoa) this.forward(this.destinationCoa);
      const status = ctx.router.status();
      const req = {
        migrationId: ctx.id,
        network: ctx.network.name,
        source: ctx.from,
        procedure: ctx.procedure,
        hoa: ctx.network.homeAddress,
        prefixes: [...ctx.network.prefixes],
        lastSequence: lastSequence ?? state?.lastSequence ?? status.sequence ?? 0,
        lifetimeRemaining: state ? Math.max(0, Math.floor(state.lifetimeRemainingMs / 1000)) : 0,
      };
      return this.notify(req);
    })();
    // A rejection is observed by whoever awaits it; keep it from being "unhandled" meanwhile.
    this.handover.catch(() => {});
    return this.handover;
  }

  /**
   * make-before-break: until the HA has switched to the destination, what it tunnels here for the network
   * goes on to the destination (RFC 5568's previous-router forwarding) instead of to guests that are not
   * here any more. Beside the notification, not before it; a failure only costs those packets.
   */
  private forward(peer: string): void {
    const { ctx } = this;
    const started = ctx.now();
    ctx.router.forwardTo(peer).then(
      (on) =>
        ctx.log.debug({ to: peer, on, ms: round(ctx.now() - started) }, 'forwarding to the destination'),
      (err: unknown) => ctx.log.warn({ to: peer, err: message(err) }, 'forwarding to the destination failed'),
    );
  }

  private async notify(req: Parameters<Peer['handover']>[0]): Promise<HandoverReply> {
    const { ctx } = this;
    const attempts = ctx.notificationAttempts ?? NOTIFICATION_ATTEMPTS;
    const backoff = ctx.notificationBackoff ?? NOTIFICATION_BACKOFF;
    const sleep = ctx.sleep ?? ((ms, signal) => delay(ms, undefined, signal ? { signal } : {}));
    for (let i = 1, wait = backoff.initialMs; ; i++, wait = Math.min(wait * 2, backoff.maxMs)) {
      try {
        return await ctx.peer.handover(req);
      } catch (err) {
        // A refusal (4xx) will not change on retry; an unreachable peer might. The guests are on the
        // destination by now, so giving up strands the network: wait and try again, since a
        // connection refused or reset usually means its agent is restarting. The destination answers
        // a repeated notification of the same migration with the same outcome.
        if (err instanceof ControlError || i >= attempts) throw err;
        ctx.log.warn(
          { err: message(err), attempt: i, retryInMs: wait },
          'handover notification failed; retrying',
        );
        await sleep(wait, ctx.signal);
      }
    }
  }

  private async awaitHandover(lastSequence?: number): Promise<HandoverReply> {
    const { record } = this;
    const pending = this.startHandover(lastSequence);
    try {
      const reply = await pending;
      const ms = this.ctx.now() - this.handoverStartedAt;
      record.timings.notificationMs = round(ms);
      if (reply.buToBaMs !== undefined) record.timings.buToBaMs = round(reply.buToBaMs);
      this.emit('notification', 'done', ms, `${record.to} ${reply.state}, sequence ${reply.sequence}`);
      if (reply.buToBaMs !== undefined)
        this.emit('registration', 'done', reply.buToBaMs, `BU→BA on ${record.to}`);
      return reply;
    } catch (err) {
      this.emit('notification', 'failed', this.ctx.now() - this.handoverStartedAt, message(err));
      record.recovery =
        this.ctx.procedure === 'break-before-make'
          ? `guests are on ${record.to}; the network is registered nowhere until ${record.to} registers`
          : `guests are on ${record.to}; ${record.from} stopped refreshing the binding`;
      throw new PhaseError('notification', err);
    }
  }

  private async phase<T>(
    phase: Phase,
    timing: 'prepareMs' | 'deregistrationMs' | undefined,
    fn: () => Promise<T>,
  ): Promise<T> {
    const started = this.ctx.now();
    this.emit(phase, 'start');
    try {
      const result = await fn();
      const ms = this.ctx.now() - started;
      if (timing) this.record.timings[timing] = round(ms);
      this.emit(phase, 'done', ms);
      return result;
    } catch (err) {
      this.emit(phase, 'failed', this.ctx.now() - started, message(err));
      throw err instanceof PhaseError ? err : new PhaseError(phase, err);
    }
  }

  private emit(phase: Phase, state: 'start' | 'done' | 'failed', ms?: number, detail?: string): void {
    this.ctx.onEvent?.({
      type: 'phase',
      migrationId: this.ctx.id,
      phase,
      state,
      elapsedMs: round(this.ctx.now() - this.t0),
      ...(ms === undefined ? {} : { ms: round(ms) }),
      ...(detail === undefined ? {} : { detail }),
    });
  }
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
