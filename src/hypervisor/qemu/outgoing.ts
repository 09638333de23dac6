// The source side of one QEMU live migration, over QMP (qemu docs/devel/migration.rst, qapi/migration.json):
// capabilities and parameters, `migrate`, then MIGRATION events until a final status, `query-migrate`
// polled for progress, and the switchover hook at `pre-switchover`.
//
// `pause-before-switchover` is always on: QEMU stops the guest, sends nothing more and waits in
// `pre-switchover` for `migrate-continue`. With overlap (the default) the hook (the agent's handover,
// docs/agent.md) runs there, so the handover overlaps the final stop-and-copy; without overlap we continue at
// once and run the hook after `completed`. Keeping the pause in both cases means no migration can finish
// while we are not listening: if the QMP connection drops, QEMU waits at `pre-switchover` until we
// reconnect and cancel.
//
// Every failure ends with the guest running on the source: QEMU restarts a guest it stopped when the
// migration fails or is cancelled; we check (`query-status`) and `cont` if it did not.
import type { Logger } from '../../log.ts';
import { type DriverMigrationResult, type DriverProgress, HypervisorError } from '../driver.ts';
import { within } from './process.ts';
import {
  type QmpClient,
  QmpClientError,
  QmpDisconnectedError,
  type QmpEvent,
  type QmpEventListener,
} from './qmp.ts';
import { addTlsCreds, TLS_CREDS_ID } from './tls.ts';

export interface OutgoingOptions {
  guest: string;
  uri: string;
  /** QEMU's downtime-limit (ms): the longest stop-and-copy it plans for. */
  downtimeLimitMs?: number;
  /** QEMU's max-bandwidth (bytes/s). QEMU 7.2's default is 128 MiB/s. */
  maxBandwidth?: number;
  /** Run the hook at pre-switchover (true) or after completion (false). */
  overlap: boolean;
  /** TLS for the stream: this host's certificate directory (src/hypervisor/tls.ts); none: plain TCP. */
  tlsDir?: string;
  onSwitchover?: () => Promise<void>;
  onProgress?: (p: DriverProgress) => void;
  progressIntervalMs?: number;
  /** Give up (and cancel) after this long. */
  timeoutMs: number;
  /** The destination's RESUME time (epoch ms), when it can be had; for the measured pause. */
  resumedAt?: () => Promise<number | undefined>;
  signal?: AbortSignal;
  logger?: Logger;
}

interface MigrateInfo {
  status?: string;
  'total-time'?: number;
  downtime?: number;
  'expected-downtime'?: number;
  'setup-time'?: number;
  'error-desc'?: string;
  ram?: {
    transferred?: number;
    remaining?: number;
    total?: number;
    'dirty-pages-rate'?: number;
    'page-size'?: number;
    'dirty-sync-count'?: number;
    mbps?: number;
  };
}

/** What a migration needs of the source QEMU (a QemuProcess; a fake in unit tests). */
export interface MigratingVm {
  readonly qmp: QmpClient;
  readonly alive: boolean;
  describeExit(): string;
  readonly options: { readonly paths: { readonly qmp: string } };
}

const FINAL = new Set(['completed', 'failed', 'cancelled']);

function fail(guest: string, message: string, cause?: unknown, code = 'ERR_HYPERVISOR'): HypervisorError {
  return new HypervisorError(
    code,
    `guest ${guest}: ${message}`,
    cause === undefined ? { guest } : { guest, cause },
  );
}

const text = (err: unknown) => (err instanceof Error ? err.message : String(err));

export class OutgoingMigration {
  private readonly options: OutgoingOptions;
  private events: QmpEventListener | undefined;
  private stoppedAt: number | undefined;
  private switchoverWaitMs: number | undefined;
  private progressTimer: NodeJS.Timeout | undefined;
  private polling = false;

  constructor(
    private readonly vm: MigratingVm,
    options: OutgoingOptions,
  ) {
    this.options = options;
  }

  private get qmp() {
    return this.vm.qmp;
  }

  async run(): Promise<DriverMigrationResult & { info: MigrateInfo }> {
    const { guest } = this.options;
    const started = performance.now();
    const timeout = AbortSignal.timeout(this.options.timeoutMs);
    const signal = this.options.signal ? AbortSignal.any([this.options.signal, timeout]) : timeout;
    this.options.signal?.throwIfAborted();
    this.subscribe();
    try {
      await this.qmp.execute('migrate-set-capabilities', {
        capabilities: [
          { capability: 'events', state: true },
          { capability: 'pause-before-switchover', state: true },
        ],
      });
      if (this.options.tlsDir) await addTlsCreds(this.qmp, this.options.tlsDir, 'client');
      await this.qmp.execute('migrate-set-parameters', {
        // Always set, so a QEMU that migrated with TLS before does not keep it (or the reverse).
        'tls-creds': this.options.tlsDir ? TLS_CREDS_ID : '',
        ...(this.options.downtimeLimitMs !== undefined
          ? { 'downtime-limit': this.options.downtimeLimitMs }
          : {}),
        ...(this.options.maxBandwidth !== undefined ? { 'max-bandwidth': this.options.maxBandwidth } : {}),
      });
      this.options.onProgress?.({ guest, phase: 'start', transferredBytes: 0 });
      await this.qmp.execute('migrate', { uri: this.options.uri });
      this.startProgress();
      const info = await this.follow(signal);
      const result = await this.migrationResult(info, started);
      if (!this.options.overlap && this.options.onSwitchover) {
        try {
          await this.options.onSwitchover();
        } catch (err) {
          throw fail(
            guest,
            `switchover hook failed after the guest moved (it runs on the destination now): ${text(err)}`,
            err,
          );
        }
      }
      return result;
    } catch (err) {
      this.stopProgress();
      throw await this.recover(err, signal);
    } finally {
      this.stopProgress();
      this.events?.close();
    }
  }

  private subscribe(): void {
    this.events = this.qmp.listen(['MIGRATION', 'STOP', 'RESUME']);
  }

  /** Wait for MIGRATION events until a final status; act at pre-switchover. */
  private async follow(signal: AbortSignal): Promise<MigrateInfo> {
    for (;;) {
      const e: QmpEvent = await this.events!.next(undefined, signal);
      if (e.event === 'STOP') {
        this.stoppedAt = e.timestamp;
        continue;
      }
      if (e.event !== 'MIGRATION') continue;
      const status = String(e.data['status']);
      this.options.logger?.debug({ guest: this.options.guest, status }, 'qemu migration status');
      if (status === 'pre-switchover') await this.switchover(signal);
      else if (FINAL.has(status)) {
        const info = await this.qmp.execute<MigrateInfo>('query-migrate');
        if (status === 'completed') return this.completedInfo(info);
        throw fail(
          this.options.guest,
          `migration ${status}${info['error-desc'] ? `: ${info['error-desc']}` : ''}`,
        );
      }
    }
  }

  /**
   * QEMU emits `completed` before it computes total-time and downtime (migration_iteration_finish runs
   * after the state change), so a query right after the event can read zeros: ask again briefly.
   */
  private async completedInfo(info: MigrateInfo): Promise<MigrateInfo> {
    for (let i = 0; i < 20 && !info['total-time']; i++) {
      await new Promise((r) => setTimeout(r, 25));
      info = await this.qmp.execute<MigrateInfo>('query-migrate');
    }
    return info;
  }

  private async switchover(signal: AbortSignal): Promise<void> {
    const at = performance.now();
    // The guest is stopped from here until the destination runs it: nothing but the hook in between.
    this.stopProgress();
    this.options.onProgress?.({ guest: this.options.guest, phase: 'switchover' });
    if (this.options.overlap && this.options.onSwitchover) {
      try {
        await this.options.onSwitchover();
      } catch (err) {
        throw fail(this.options.guest, `switchover hook failed: ${text(err)}`, err);
      }
    }
    signal.throwIfAborted();
    await this.qmp.execute('migrate-continue', { state: 'pre-switchover' });
    this.switchoverWaitMs = performance.now() - at;
  }

  private async migrationResult(
    info: MigrateInfo,
    started: number,
  ): Promise<DriverMigrationResult & { info: MigrateInfo }> {
    const resumedAt = await this.options.resumedAt?.().catch(() => undefined);
    const pausedMs =
      resumedAt !== undefined && this.stoppedAt !== undefined ? round(resumedAt - this.stoppedAt) : undefined;
    const ram = info.ram ?? {};
    const figures: Record<string, number> = {};
    const put = (k: string, v: number | undefined) => {
      if (typeof v === 'number' && Number.isFinite(v)) figures[k] = v;
    };
    put('totalTimeMs', info['total-time']);
    put('downtimeMs', info.downtime);
    put('setupTimeMs', info['setup-time']);
    put('transferredBytes', ram.transferred);
    put('totalBytes', ram.total);
    put('dirtySyncCount', ram['dirty-sync-count']);
    put('mbps', ram.mbps);
    put('switchoverWaitMs', this.switchoverWaitMs === undefined ? undefined : round(this.switchoverWaitMs));
    put('pausedMs', pausedMs);
    this.options.onProgress?.({
      guest: this.options.guest,
      phase: 'resumed',
      ...(ram.transferred !== undefined ? { transferredBytes: ram.transferred } : {}),
    });
    return {
      hypervisorMs: round(performance.now() - started),
      ...(info.downtime !== undefined ? { downtimeMs: info.downtime } : {}),
      ...(ram.transferred !== undefined ? { transferredBytes: ram.transferred } : {}),
      ...(pausedMs !== undefined ? { pausedMs } : {}),
      figures,
      info,
    };
  }

  private startProgress(): void {
    if (!this.options.onProgress) return;
    this.progressTimer = setInterval(() => void this.progressOnce(), this.options.progressIntervalMs ?? 250);
  }

  private stopProgress(): void {
    clearInterval(this.progressTimer);
    this.progressTimer = undefined;
  }

  private async progressOnce(): Promise<void> {
    if (!this.options.onProgress || this.polling || this.qmp.state !== 'running') return;
    this.polling = true;
    try {
      const info = await this.qmp.execute<MigrateInfo>('query-migrate');
      const ram = info.ram;
      if (!ram || info.status !== 'active') return;
      const rate = (ram['dirty-pages-rate'] ?? 0) * (ram['page-size'] ?? 4096);
      this.options.onProgress({
        guest: this.options.guest,
        phase: 'transfer',
        ...(ram.transferred !== undefined ? { transferredBytes: ram.transferred } : {}),
        ...(ram.remaining !== undefined ? { remainingBytes: ram.remaining } : {}),
        ...(ram.total !== undefined ? { totalBytes: ram.total } : {}),
        dirtyBytesPerSecond: rate,
      });
    } catch {
      // Progress is best effort; the main loop sees real failures.
    } finally {
      this.polling = false;
    }
  }

  /**
   * Turn any failure into "the guest runs on the source" plus a clear error: cancel what QEMU is still
   * doing (reconnecting QMP if it dropped), wait for the final status, and restart the guest if needed.
   */
  private async recover(err: unknown, signal: AbortSignal): Promise<HypervisorError> {
    const { guest } = this.options;
    let reason: string;
    if (this.options.signal?.aborted) reason = `migration aborted (${text(this.options.signal.reason)})`;
    else if (signal.aborted)
      reason = `migration did not finish within ${Math.round(this.options.timeoutMs / 1000)} s`;
    else if (err instanceof QmpDisconnectedError)
      reason = `QMP connection lost mid-migration (${err.message})`;
    else reason = err instanceof HypervisorError ? err.message.replace(`guest ${guest}: `, '') : text(err);

    if (!this.vm.alive) {
      return fail(
        guest,
        `${reason}; the source QEMU ${this.vm.describeExit()}: the guest is lost`,
        err,
        'ERR_HYPERVISOR_GUEST_LOST',
      );
    }
    try {
      await this.reconnect();
      const before = await this.qmp.execute<MigrateInfo>('query-migrate');
      if (before.status === 'completed') {
        // The migration finished while we were not looking: the guest runs on the destination now.
        return fail(
          guest,
          `${reason}; but QEMU completed the migration: the guest runs on the destination`,
          err,
          'ERR_HYPERVISOR_MOVED',
        );
      }
      if (before.status && !FINAL.has(before.status)) {
        const done = this.qmp.listen(['MIGRATION']);
        try {
          await this.qmp.execute('migrate_cancel');
          await within(
            done.next((e) => FINAL.has(String(e.data['status']))).catch(() => undefined),
            10_000,
            undefined,
          );
        } finally {
          done.close();
        }
      }
      await this.ensureRunning();
    } catch (recoveryErr) {
      return fail(
        guest,
        `${reason}; and making sure the guest runs on the source FAILED (${text(recoveryErr)})`,
        err,
        'ERR_HYPERVISOR_ROLLBACK',
      );
    }
    this.options.onProgress?.({ guest, phase: 'rollback' });
    return fail(guest, `${reason}; the guest keeps running on the source`, err);
  }

  /**
   * QEMU serves one QMP client at a time and notices a dropped one only when its main loop gets to it:
   * a connection made before that is accepted and then closed, so retry for a while.
   */
  private async reconnect(): Promise<void> {
    const deadline = performance.now() + 10_000;
    while (this.qmp.state === 'idle') {
      try {
        await this.qmp.connect(this.vm.options.paths.qmp, { timeoutMs: 5_000 });
      } catch (err) {
        if (!this.vm.alive || performance.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  private async ensureRunning(): Promise<void> {
    for (let i = 0; i < 20; i++) {
      const s = await this.qmp.execute<{ running: boolean; status: string }>('query-status');
      if (s.running) return;
      // QEMU restarts a guest after a failed migration by itself; give it a moment, then insist.
      if (i >= 3 && (s.status === 'paused' || s.status === 'postmigrate' || s.status === 'finish-migrate'))
        await this.qmp.execute('cont').catch((e: unknown) => {
          if (!(e instanceof QmpClientError)) throw e;
        });
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error('the guest is still stopped on the source');
  }
}

const round = (v: number) => Math.round(v * 10) / 10;
