// The libvirt driver: guests are existing libvirt domains, live-migrated with `virsh migrate --live` from
// this host's libvirtd to the destination's (docs/libvirt.md).
//
// libvirt owns the guest from end to end: it starts the destination QEMU (Prepare), streams the RAM,
// stops the source, resumes the destination and kills the source (Confirm), and on any failure resumes
// the guest on the source itself. The driver only times it, from libvirt's own events: one long-running
// `virsh event --loop` per libvirtd it talks to (this host's and each peer's, started with the driver),
// so the switchover is the source's "Suspended Migrated" and the end of the guest's pause the
// destination's "Resumed Migrated", both stamped by virsh on this host. The switchover hook runs at the
// first: libvirt does not let anyone hold the guest there (it answers QEMU's pre-switchover itself), so
// the hook overlaps the final stop-and-copy instead of running inside it.

import type { Logger } from '../../log.ts';
import type { ProcessSpawner } from '../../system/process.ts';
import type { CommandRunner } from '../../system/runner.ts';
import {
  type Driver,
  type DriverCallOptions,
  type DriverMigrateOptions,
  type DriverMigrationResult,
  type GuestInfo,
  type GuestNetwork,
  HypervisorError,
  type IncomingSpec,
  type MigrationDestination,
  type PrepareIncomingOptions,
} from '../driver.ts';
import { type DomainEvent, RESUMED_AFTER_MIGRATION, SUSPENDED_FOR_MIGRATION, VirshEvents } from './events.ts';
import { type DomainState, Virsh, virshMessage } from './virsh.ts';

export interface LibvirtMigrationSettings {
  /**
   * Run the switchover hook (the network's handover) at the source's "Suspended Migrated" event, while
   * libvirt finishes the stop-and-copy (default true); false: after `virsh migrate` returned, when the
   * guest already runs on the destination — the comparison the overlap is measured against.
   */
  overlap?: boolean;
  p2p?: boolean;
  persistent?: boolean;
  bandwidthMiBs?: number;
  /**
   * `--tls`: the migration stream is TLS; libvirt reads the certificates from each host's qemu.conf
   * (`migrate_tls_x509_cert_dir`, default /etc/pki/qemu) and fails the migration without them.
   */
  tls?: boolean;
  /** Abort a migration that has not finished after this long (default 120 s). */
  timeoutMs?: number;
}

export interface LibvirtDriverOptions {
  /** This host's name (as in the agent config). */
  host: string;
  /** This host's libvirtd (`qemu+tcp://[2001:db8:a::2]/system`, `qemu:///system`, `xen:///system`). */
  uri: string;
  /** Peer host name → its libvirtd's URI, as this host reaches it: where guests migrate to. */
  peers: Readonly<Record<string, string>>;
  /** Guest (config name) → its libvirt domain's name (default: the guest's name). */
  guests: Readonly<Record<string, { domain?: string | undefined }>>;
  runner: CommandRunner;
  spawner: ProcessSpawner;
  /** virsh binary (default `virsh` from PATH). */
  virsh?: string;
  migration?: LibvirtMigrationSettings;
  logger?: Logger;
  /** Monotonic ms (default performance.now). */
  now?: () => number;
  /** How long to wait for libvirt's events after virsh returned (default 3000 ms). */
  eventGraceMs?: number;
}

/** Domain states in which a guest is "here" (has a QEMU on this host). */
const ACTIVE = new Set(['running', 'idle', 'paused', 'in shutdown', 'pmsuspended']);
const RUNNING = new Set(['running', 'idle', 'in shutdown']);

export class LibvirtDriver implements Driver {
  readonly kind = 'libvirt';
  private readonly virsh: Virsh;
  private readonly streams = new Map<string, VirshEvents>();
  private readonly now: () => number;

  constructor(private readonly options: LibvirtDriverOptions) {
    this.virsh = new Virsh(options.runner, options.virsh);
    this.now = options.now ?? (() => performance.now());
  }

  /** Start the event watchers (this host's and every peer's), so they listen before any migration. */
  start(): void {
    this.events(this.options.uri);
    for (const uri of Object.values(this.options.peers)) this.events(uri);
  }

  domainOf(guest: string): string {
    const g = this.options.guests[guest];
    if (!g)
      throw new HypervisorError(
        'ERR_HYPERVISOR_CONFIG',
        `libvirt driver: no guest ${guest} (hypervisor.guests.${guest})`,
        { guest },
      );
    return g.domain ?? guest;
  }

  private peerUri(guest: string, host: string): string {
    const uri = this.options.peers[host];
    if (uri === undefined)
      throw new HypervisorError(
        'ERR_HYPERVISOR_CONFIG',
        `libvirt driver: no URI for host ${host} (hypervisor.peers.${host})`,
        { guest },
      );
    return uri;
  }

  private events(uri: string): VirshEvents {
    let s = this.streams.get(uri);
    if (!s) {
      s = new VirshEvents({
        uri,
        spawner: this.options.spawner,
        ...(this.options.virsh ? { virsh: this.options.virsh } : {}),
        ...(this.options.logger ? { logger: this.options.logger } : {}),
      });
      this.streams.set(uri, s);
      s.start();
    }
    return s;
  }

  private async state(guest: string, uri: string): Promise<DomainState | undefined> {
    try {
      return await this.virsh.domState(uri, this.domainOf(guest));
    } catch (err) {
      if (err instanceof HypervisorError) throw err;
      throw new HypervisorError('ERR_HYPERVISOR', `guest ${guest}: ${(err as Error).message}`, {
        guest,
        cause: err,
      });
    }
  }

  async listGuests(network: GuestNetwork, _options: DriverCallOptions = {}): Promise<GuestInfo[]> {
    const out: GuestInfo[] = [];
    for (const guest of network.guests) {
      const s = await this.state(guest, this.options.uri);
      if (!s || !ACTIVE.has(s.state)) continue;
      out.push({
        name: guest,
        network: network.name,
        state: RUNNING.has(s.state) ? 'running' : 'paused',
        detail: `libvirt domain ${this.domainOf(guest)}: ${s.state}${s.reason ? ` (${s.reason})` : ''}`,
      });
    }
    return out;
  }

  async prepareIncoming(guest: string, options: PrepareIncomingOptions): Promise<IncomingSpec> {
    // libvirt prepares the destination itself (its Prepare phase starts the incoming QEMU): check only
    // that this libvirtd answers and does not run the guest already.
    const domain = this.domainOf(guest);
    const s = await this.state(guest, this.options.uri);
    if (s && ACTIVE.has(s.state))
      throw new HypervisorError(
        'ERR_HYPERVISOR',
        `host ${this.options.host} already runs libvirt domain ${domain} (${s.state}) for ${options.network.name}`,
        { guest },
      );
    return { uri: this.options.uri, domain };
  }

  async cancelIncoming(_guest: string, _options: PrepareIncomingOptions): Promise<void> {
    // Nothing was made by prepareIncoming; a failed migration's incoming QEMU is libvirt's to remove.
  }

  async migrate(
    guest: string,
    destination: MigrationDestination,
    options: DriverMigrateOptions,
  ): Promise<DriverMigrationResult> {
    const started = this.now();
    const domain = this.domainOf(guest);
    const src = this.options.uri;
    const dst = this.peerUri(guest, destination.host);
    const here = await this.state(guest, src);
    if (!here || !RUNNING.has(here.state))
      throw new HypervisorError(
        'ERR_HYPERVISOR',
        `guest ${guest} is not running on host ${this.options.host} (libvirt domain ${domain}: ${here ? here.state : 'none'})`,
        { guest },
      );
    const ours = (e: DomainEvent) => e.domain === domain;
    const suspended = this.events(src).next(
      (e) => ours(e) && e.type === 'lifecycle' && SUSPENDED_FOR_MIGRATION.has(e.detail),
    );
    const resumed = this.events(dst).next(
      (e) => ours(e) && e.type === 'lifecycle' && RESUMED_AFTER_MIGRATION.has(e.detail),
    );
    const completed = this.events(src).next((e) => ours(e) && e.type === 'job-completed');
    const m = this.options.migration ?? {};
    const timeoutMs = m.timeoutMs ?? 120_000;
    options.onProgress?.({ guest, phase: 'start' });

    let hookFailure: unknown;
    let hook: Promise<void> | undefined;
    let aborting: Promise<unknown> | undefined;
    const abort = (why: string) => {
      this.options.logger?.warn({ guest, why }, 'aborting the libvirt migration');
      aborting ??= this.virsh.abortJob(src, domain);
    };
    const runHook = (): Promise<void> => {
      hook ??= (async () => {
        options.onProgress?.({ guest, phase: 'switchover' });
        try {
          await options.onSwitchover?.();
        } catch (err) {
          hookFailure = err;
          abort('switchover hook failed');
        }
      })();
      return hook;
    };
    if (m.overlap !== false) void suspended.event.then(runHook, () => {});
    const onAbort = () => abort(String(options.signal?.reason ?? 'aborted'));
    options.signal?.addEventListener('abort', onAbort, { once: true });
    if (options.signal?.aborted) onAbort();
    const timer = setTimeout(() => abort(`not finished after ${timeoutMs} ms`), timeoutMs);

    let result: Awaited<ReturnType<Virsh['migrate']>>;
    try {
      result = await this.virsh.migrate(src, domain, dst, {
        ...(m.p2p ? { p2p: true } : {}),
        ...(m.persistent ? { persistent: true } : {}),
        ...(m.tls ? { tls: true } : {}),
        ...(m.bandwidthMiBs !== undefined ? { bandwidthMiBs: m.bandwidthMiBs } : {}),
        timeoutMs: timeoutMs + 30_000,
      });
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
    }
    await aborting;

    if (result.exitCode !== 0) {
      suspended.close();
      resumed.close();
      completed.close();
      await hook;
      options.onProgress?.({ guest, phase: 'rollback' });
      const where = await this.afterFailure(guest, domain, dst);
      throw new HypervisorError(
        where === 'source' ? 'ERR_HYPERVISOR' : 'ERR_HYPERVISOR_ROLLBACK',
        `guest ${guest}: virsh migrate to ${destination.host} failed: ${virshMessage(result)}; ${
          where === 'source'
            ? `the guest keeps running on the source (${this.options.host})`
            : `the guest is ${where}`
        }`,
        { guest, cause: hookFailure },
      );
    }
    // Done. The hook runs now if its event was missed (a watcher restarting), so the handover happens.
    const grace = this.options.eventGraceMs ?? 3000;
    const suspendedEvent = await within(suspended.event, 0);
    if (!suspendedEvent && m.overlap !== false)
      this.options.logger?.warn({ guest }, 'no "Suspended Migrated" event seen; switchover hook runs late');
    suspended.close();
    await runHook();
    if (hookFailure !== undefined)
      throw new HypervisorError(
        'ERR_HYPERVISOR_ROLLBACK',
        `guest ${guest}: switchover hook failed after libvirt had moved the guest; it runs on ${destination.host}`,
        { guest, cause: hookFailure },
      );
    const [resumedEvent, completedEvent] = await Promise.all([
      within(resumed.event, grace),
      within(completed.event, grace),
    ]);
    resumed.close();
    completed.close();
    options.onProgress?.({ guest, phase: 'resumed' });
    return this.result(guest, started, suspendedEvent, resumedEvent, completedEvent);
  }

  private result(
    guest: string,
    started: number,
    suspended: DomainEvent | undefined,
    resumed: DomainEvent | undefined,
    completed: DomainEvent | undefined,
  ): DriverMigrationResult {
    const p = completed?.params ?? {};
    const num = (k: string) => (p[k] !== undefined && /^\d+$/.test(p[k]) ? Number(p[k]) : undefined);
    const figures: Record<string, number> = {};
    const put = (k: string, v: number | undefined) => {
      if (v !== undefined) figures[k] = v;
    };
    put('totalTimeMs', num('time_elapsed'));
    put('downtimeMs', num('downtime'));
    put('setupTimeMs', num('setup_time'));
    put('transferredBytes', num('data_processed'));
    put('totalBytes', num('data_total'));
    put('iterations', num('memory_iteration'));
    const pausedMs = suspended && resumed ? resumed.at - suspended.at : undefined;
    put('pausedMs', pausedMs);
    const hypervisorMs = this.now() - started;
    this.options.logger?.info({ guest, ...figures, hypervisorMs }, 'libvirt migration completed');
    return {
      hypervisorMs,
      ...(figures['downtimeMs'] !== undefined ? { downtimeMs: figures['downtimeMs'] } : {}),
      ...(figures['transferredBytes'] !== undefined ? { transferredBytes: figures['transferredBytes'] } : {}),
      ...(pausedMs !== undefined ? { pausedMs } : {}),
      figures,
    };
  }

  /**
   * After virsh migrate failed: libvirt resumes the guest on the source itself; a guest left paused here
   * is resumed. Returns where the guest is: 'source', or a description when it is not here.
   */
  private async afterFailure(guest: string, domain: string, dst: string): Promise<string> {
    let s = await this.state(guest, this.options.uri).catch(() => undefined);
    if (s?.state === 'paused') {
      const r = await this.virsh.resume(this.options.uri, domain);
      if (r.exitCode !== 0)
        this.options.logger?.error(
          { guest, error: virshMessage(r) },
          'resuming the guest on the source failed',
        );
      s = await this.state(guest, this.options.uri).catch(() => undefined);
    }
    if (s && RUNNING.has(s.state)) return 'source';
    const there = await this.state(guest, dst).catch(() => undefined);
    if (there && ACTIVE.has(there.state)) return `${there.state} on the destination`;
    return s ? `${s.state} on the source` : 'on neither host';
  }

  async announce(_guest: string, _options: { network: GuestNetwork } & DriverCallOptions): Promise<void> {
    // QEMU announces the guest's MAC when libvirt resumes it on the destination, whose tap is on the
    // network's bridge from the Prepare phase on; libvirt has no API for announcing again.
  }

  /** Stop the event watchers. The guests are libvirt's: they keep running. */
  async close(): Promise<void> {
    const streams = [...this.streams.values()];
    this.streams.clear();
    await Promise.all(streams.map((s) => s.close()));
  }
}

/** The promise's value if it settles within `ms` (0: only if already settled), else undefined. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([p.catch(() => undefined), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
