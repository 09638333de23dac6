// The home agent daemon (docs/architecture.md): UDP signaling on port 4191, BU processing, persistence, the data
// plane, expiry, and the status endpoint. All binding changes — BUs and expiry — go through ONE serial
// queue. The queue drains in groups: every BU of a group is processed against the cache in order, the
// group's cache ops are committed in one durable transaction, the data plane is updated in one call, and
// only then are the BAs sent (STYLE 4). Stopping leaves the kernel state in place (retainOnStop), so
// forwarding continues across a restart; starting reconciles the kernel with the stored cache first.
//
// The commit is asynchronous (the default store commits in a worker thread), and the queue is a pipeline
// of two groups: while one group commits, what arrives is processed into the next (against the cache as
// the committing group left it); when the commit is durable, the next group's commit starts at once and
// the finished group's BAs go out while it runs. So a later op on a binding never commits before an
// earlier one, and no accepting BA precedes its commit. A failed commit fails the group and everything
// processed on top of it (BA 130, cache rolled back newest first). A group with data plane changes is a
// barrier: a failed data plane update rolls it back (143), so nothing is processed on top of it until its
// BAs are out.
import { performance } from 'node:perf_hooks';
import type { Clock, TimerHandle } from '../clock.ts';
import { registerDataplaneMetrics } from '../dataplane/metrics.ts';
import type { BindingChange, HomeAgentDataplane } from '../dataplane/types.ts';
import { OfflinkError } from '../errors.ts';
import { type Health, MetricsExporter } from '../exporter.ts';
import { type Logger, LogLimiter } from '../log.ts';
import { isIPv4Text } from '../protocol/address.ts';
import { BaStatus, baStatusName } from '../protocol/constants.ts';
import { DecodeError } from '../protocol/errors.ts';
import {
  type DecodedSignalingPacket,
  decodeSignalingPacket,
  encodeSignalingPacket,
} from '../protocol/packet.ts';
import type { SignalingPacket } from '../protocol/types.ts';
import { TokenBucket } from '../ratelimit.ts';
import { type Datagram, UdpTransport } from '../signaling/udp.ts';
import { decodeErrorReply } from './answer.ts';
import { type Binding, BindingCache, type CacheOp, toTunnelBinding } from './bcache.ts';
import { type BaReply, type BuContext, type BuResult, processBindingUpdate } from './bu.ts';
import type { HomeAgentConfig, LoadedHomeAgent } from './config.ts';
import { StatusServer } from './http.ts';
import { HomeAgentMetrics } from './metrics.ts';
import { PrefixTable } from './prefixtable.ts';
import { checkReloadable, type ReloadResult } from './reload.ts';
import { bindingCacheStatus, type HomeAgentStatus } from './status.ts';

export type { BindingStatus, HomeAgentStatus } from './status.ts';

import type { AnycastAddress } from './anycast.ts';
import { ClusterSession } from './cluster.ts';
import { BindingConflictError, EtcdBindingStore, type StoreChange } from './etcdstore.ts';
import { BindingStore, type BindingStoreLike, WorkerBindingStore } from './store.ts';

const round = (ms: number) => Math.round(ms * 100) / 100;

export interface HomeAgentComponents {
  clock: Clock;
  logger: Logger;
  dataplane: HomeAgentDataplane;
  transport?: UdpTransport;
  /** Defaults to a BindingStore on config.homeAgent.database. */
  store?: BindingStoreLike;
  /** The mobile routers, as `loadHomeAgent` builds them; defaults to a table of config.mobileRouters. */
  table?: PrefixTable;
  /** The shared HA address, announced while this HA can serve (config.homeAgent.anycast). */
  anycast?: AnycastAddress;
}

/** How often the daemon checks whether its anycast announcement matches its health. */
const ANNOUNCE_CHECK_MS = 100;

type Job =
  | {
      kind: 'bu';
      packet: DecodedSignalingPacket;
      source: string;
      port: number;
      receivedAt: number;
      /** What the decoder refused in this BU, answered once it authenticates (bu.ts). */
      refusal?: { status: number; reason: string };
    }
  | { kind: 'expire' }
  /** Bindings other home agents changed (the etcd watch); `snapshot`: all of them, read at that revision. */
  | { kind: 'remote'; changes: StoreChange[]; snapshot?: number }
  | { kind: 'reload'; next: LoadedHomeAgent; done: (r: ReloadResult) => void };

interface Item {
  job: Extract<Job, { kind: 'bu' }>;
  result: BuResult;
  /** Ops that restore the cache as it was before this BU. */
  undo: CacheOp[];
  /** Status actually answered (an acceptance may turn into 130 or 143). */
  status: number;
}

/** Jobs processed against the cache whose ops commit in one transaction (group commit). */
interface Group {
  items: Item[];
  ops: CacheOp[];
  /**
   * Data plane changes of expired, unauthorized or remote bindings (accepted BUs' are taken from their
   * items).
   */
  expiryIntents: BindingChange[];
  jobs: number;
  /** Bindings expiry or a reload removed: restored if the commit fails. */
  removed: Binding[];
  /** Has data plane changes: nothing is processed on top of it until its BAs are out. */
  barrier: boolean;
}

interface Timing {
  batch: number;
  storeMs: number;
  dataplaneMs: number;
}

const emptyGroup = (): Group => ({
  items: [],
  ops: [],
  expiryIntents: [],
  jobs: 0,
  removed: [],
  barrier: false,
});

/** Largest group: bounds the time one transaction and one data plane call take. */
const MAX_BATCH = 2048;
/** Unsigned answers (146 to unauthenticated BUs, decoder answers) per second: no reflection flood. */
const UNSIGNED_REPLIES_PER_SECOND = 50;
/** Warnings anyone can trigger (rejected BUs, malformed packets): lines a second, per kind. */
const WARNINGS_PER_SECOND = 20;

export class HomeAgent {
  readonly cache = new BindingCache();
  readonly metrics: HomeAgentMetrics;
  private table: PrefixTable;
  private readonly ctx: BuContext;
  private readonly log: Logger;
  private readonly transport: UdpTransport;
  private store: BindingStoreLike | undefined;
  private statusServer: StatusServer | undefined;
  private exporter: MetricsExporter | undefined;
  /** What /healthz reports: the daemon serves once both are true. */
  private readonly ready = { store: false, dataplane: false };
  private state: 'new' | 'starting' | 'running' | 'stopping' | 'stopped' = 'new';
  /** Received, not yet processed. */
  private queue: Job[] = [];
  /** Processed against the cache, not yet submitted: fills while `committing` commits. */
  private open: Group = emptyGroup();
  /** Submitted to the store; its data plane update and BAs follow its commit. */
  private committing: Group | undefined;
  private queuePassScheduled = false;
  /** Datagrams handed to the socket and not yet sent. */
  private sending = 0;
  private allSent: (() => void) | undefined;
  private draining: Promise<void> | undefined;
  private expiry: { at: number; handle: TimerHandle } | undefined;
  private needsReconcile = false;
  /** Stops the etcd watch (store: etcd). */
  private unwatch: (() => void) | undefined;
  /** Membership of the HA cluster (store: etcd): health and who expires bindings. */
  private session: ClusterSession | undefined;
  /** Whether the anycast address is announced now, and the timer that keeps it in line with health(). */
  private announced = false;
  private announceTimer: TimerHandle | undefined;
  /** Cache ops one store write can hold (etcd bounds a transaction): a group stops taking jobs there. */
  private maxOps = Number.POSITIVE_INFINITY;
  private readonly replyBudget = new TokenBucket(UNSIGNED_REPLIES_PER_SECOND);
  private readonly warnings: LogLimiter;

  /** The config without its mobile routers: the prefix table holds those, compactly. */
  private config: HomeAgentConfig;

  constructor(
    private readonly components: HomeAgentComponents,
    config: HomeAgentConfig,
  ) {
    this.config = { ...config, mobileRouters: [] };
    const ha = config.homeAgent;
    this.log = components.logger;
    this.warnings = new LogLimiter(this.log, components.clock, {
      lines: WARNINGS_PER_SECOND,
      intervalMs: 1000,
    });
    this.transport = components.transport ?? new UdpTransport({ recvBufferSize: 8 << 20 });
    this.table = components.table ?? new PrefixTable(config.mobileRouters);
    this.metrics = new HomeAgentMetrics(() => this.cache.size);
    registerDataplaneMetrics(this.metrics.registry, 'offlink_ha', components.dataplane);
    this.ctx = {
      haAddress: ha.address,
      table: this.table,
      cache: this.cache,
      maxLifetimeSeconds: ha.maxLifetimeSeconds,
      refreshAdviceSeconds: ha.refreshAdviceSeconds,
      replayWindowSeconds: ha.replayWindowSeconds,
    };
  }

  /** Load the cache, install its data plane, then serve. Nothing is served before the kernel is reconciled. */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error(`HomeAgent: start() in state ${this.state}`);
    this.state = 'starting';
    const ha = this.config.homeAgent;
    try {
      // First, so that a scrape during a long start (3 s with 100k stored bindings) finds the daemon up
      // and /healthz says it is not serving yet.
      if (ha.metrics) {
        const exporter = new MetricsExporter({ metrics: () => this.scrape(), health: () => this.health() });
        await exporter.listen(ha.metrics);
        this.exporter = exporter;
      }
      // Commit in a worker thread only when asked (OFFLINK_HA_COMMIT_THREAD=1): in process it cuts the BA
      // p99, but with the real daemon under bench/ha/run.ts it measured worse (bench/profiles/ha-p99.md).
      // An in-memory database cannot be shared with a worker.
      this.store = this.components.store ?? this.openStore();
      this.maxOps = this.store.maxOpsPerWrite ?? Number.POSITIVE_INFINITY;
      await this.loadCache();
      this.ready.store = true;
      await this.components.dataplane.init();
      await this.components.dataplane.reconcile(this.cache.all().map(toTunnelBinding));
      this.ready.dataplane = true;
      await this.joinCluster();
      if (this.components.anycast) {
        await this.components.anycast.open();
        // Before the socket binds to it; the kernel is reconciled and etcd reachable.
        await this.components.anycast.announce();
        this.announced = true;
      }
      await this.transport.listen(ha.listen.address, ha.listen.port, (d) => this.onDatagram(d));
      if (ha.status) {
        this.statusServer = new StatusServer({
          status: () => this.snapshot(),
          metrics: () => this.scrape(),
        });
        await this.statusServer.listen(ha.status.host, ha.status.port);
      }
    } catch (err) {
      await this.components.anycast?.close();
      await this.session?.stop();
      await this.transport.close();
      await this.statusServer?.close();
      await this.exporter?.close();
      await this.store?.close();
      this.ready.store = false;
      this.state = 'stopped';
      throw err;
    }
    this.state = 'running';
    this.metrics.watchEventLoop(true);
    this.keepAnnouncement();
    // From the revision load() read: nothing between the load and the watch is missed or applied twice.
    this.watchStore();
    this.scheduleExpiry();
    this.log.info(
      {
        address: ha.address,
        port: this.transport.port,
        bindings: this.cache.size,
        status: this.statusServer?.url,
        metrics: this.exporter?.url,
      },
      'home agent started',
    );
  }

  /** Stop serving. Kernel state stays unless retainOnStop is false. */
  async stop(): Promise<void> {
    if (this.state !== 'running') return;
    this.state = 'stopping'; // datagrams are ignored from now on
    this.metrics.watchEventLoop(false);
    // The other HAs take the traffic now, while this one drains.
    this.announceTimer?.cancel();
    await this.components.anycast?.close();
    this.announced = false;
    this.expiry?.handle.cancel();
    this.expiry = undefined;
    this.unwatch?.();
    // Not yet processed: never answered, the MRs retransmit. What was processed is committed and answered.
    this.queue = [];
    await this.draining;
    while (this.sending > 0) await new Promise<void>((r) => (this.allSent = r));
    await this.transport.close();
    await this.statusServer?.close();
    await this.session?.stop();
    if (!this.config.homeAgent.retainOnStop) await this.components.dataplane.flush();
    this.ready.store = false;
    await this.store?.close();
    await this.exporter?.close();
    this.exporter = undefined;
    this.state = 'stopped';
    this.log.info(
      { bindings: this.cache.size, retained: this.config.homeAgent.retainOnStop },
      'home agent stopped',
    );
  }

  /** UDP port the signaling socket is bound to. */
  get port(): number {
    return this.transport.port;
  }

  get statusUrl(): string | undefined {
    return this.statusServer?.url;
  }

  /** http://host:port of the unsigned /metrics and /healthz endpoint, when configured. */
  get metricsUrl(): string | undefined {
    return this.exporter?.url;
  }

  /**
   * Serving: the store is open and the data plane initialised (and the daemon not stopping); in a cluster,
   * etcd answered within the lease's TTL too.
   */
  health(): Health {
    const session = this.session;
    const etcd = session ? session.reachable() : undefined;
    return {
      ok: this.state === 'running' && this.ready.store && this.ready.dataplane && etcd !== false,
      state: this.state,
      store: this.ready.store ? 'open' : 'closed',
      dataplane: this.ready.dataplane ? (this.components.dataplane.backend ?? 'ready') : 'not initialised',
      bindings: this.cache.size,
      ...(session
        ? {
            cluster: {
              name: (this.store as EtcdBindingStore).name,
              etcd: etcd ? 'reachable' : 'unreachable',
              expiryOwner: session.expiryOwner,
            },
          }
        : {}),
    };
  }

  private async scrape(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.metrics.registry.contentType, body: await this.metrics.registry.metrics() };
  }

  /** Resolves once every queued job has been handled (tests). */
  async idle(): Promise<void> {
    while (this.draining) await this.draining;
  }

  snapshot(): HomeAgentStatus {
    const store = this.store instanceof EtcdBindingStore ? this.store : undefined;
    const status = bindingCacheStatus(
      this.cache.all(),
      this.table,
      this.config.homeAgent.address,
      this.components.clock.now(),
      store && ((hoa) => store.servedBy(hoa)),
    );
    const backend = this.components.dataplane.backend;
    const { haAddress, now, bindings } = status;
    return {
      haAddress,
      ...(backend === undefined ? {} : { dataplane: backend }),
      now,
      ...(this.session && store
        ? {
            cluster: {
              name: store.name,
              etcd: this.session.reachable() ? 'reachable' : 'unreachable',
              expiryOwner: this.session.expiryOwner,
              members: this.session.members,
            },
          }
        : {}),
      bindings,
    };
  }

  private async loadCache(): Promise<void> {
    const { bindings, timestamps } = await this.store!.load();
    for (const [hoa, ts] of timestamps) this.cache.restoreTimestamp(hoa, ts);
    const now = this.components.clock.now();
    const drop: CacheOp[] = [];
    for (const b of bindings) {
      const why =
        b.expiresAt <= now ? 'expired while down' : this.authorized(b) ? undefined : 'no longer authorized';
      if (why) {
        drop.push({ op: 'delete', hoa: b.hoa });
        this.log.info({ hoa: b.hoa, coa: b.coa, event: 'drop' }, `binding dropped at start: ${why}`);
      } else {
        this.cache.apply({ op: 'put', binding: this.cache.withLocalId(b) });
      }
    }
    await this.store!.write(drop);
  }

  private openStore(): BindingStoreLike {
    const ha = this.config.homeAgent;
    if (ha.store === 'etcd') return new EtcdBindingStore(ha.etcd!);
    const thread = process.env.OFFLINK_HA_COMMIT_THREAD === '1' && ha.database !== ':memory:';
    if (thread) return new WorkerBindingStore(ha.database);
    if (ha.database === ':memory:') return new BindingStore(ha.database);
    return new BindingStore(ha.database, {
      checkpoints: 'thread',
      onCheckpointerLost: (err) =>
        this.log.error({ err }, 'binding store: checkpoint thread lost, SQLite checkpoints in commits again'),
    });
  }

  /**
   * Whether a stored binding is still allowed by the current config (it may have changed while down). An
   * IPv4 prefix (RFC 5555, a dual-stack MR) is checked as its BU checked it: against the IPv4 prefixes.
   */
  private authorized(b: Binding): boolean {
    const mr = this.table.byHomeAddress(b.hoa);
    return (
      mr !== undefined &&
      b.prefixes.every((p) => {
        const [prefix, len] = p.split('/');
        return isIPv4Text(prefix!)
          ? this.table.authorizeIPv4(mr, prefix!, Number(len)).ok
          : this.table.authorize(mr, prefix!, Number(len)).ok;
      })
    );
  }

  private onDatagram(d: Datagram): void {
    if (this.state !== 'running') return;
    // Partitioned from etcd: no BU can commit; unanswered, the MR retransmits, to an HA that can.
    if (this.session && !this.session.reachable()) return;
    const receivedAt = performance.now();
    this.metrics.datagrams.inc();
    try {
      let packet: DecodedSignalingPacket;
      try {
        packet = decodeSignalingPacket(d.data);
      } catch (err) {
        this.onMalformed(d, err, receivedAt);
        return;
      }
      if (packet.message.type !== 'bindingUpdate') {
        this.metrics.unexpected.inc({ type: packet.message.type });
        return;
      }
      this.enqueue({ kind: 'bu', packet, source: d.address, port: d.port, receivedAt });
    } catch (err) {
      // Bad input never crashes the daemon.
      this.warnings.write('error', 'datagram', { err, source: d.address }, 'datagram handling failed');
    }
  }

  private onMalformed(d: Datagram, err: unknown, receivedAt: number): void {
    this.metrics.malformed.inc();
    if (!(err instanceof DecodeError)) {
      this.warnings.write(
        'error',
        'decoder',
        { err, source: d.address },
        'decoder threw something other than DecodeError',
      );
      return;
    }
    const { answer } = err;
    if (answer.kind === 'authenticatedRefusal') {
      // A whole BU with an invalid value: through BU processing, so it is authenticated before the
      // signed refusal (an unauthenticated one gets the unsigned 146 like any other BU).
      const refusal = { status: answer.status, reason: err.message };
      this.enqueue({
        kind: 'bu',
        packet: answer.packet,
        source: d.address,
        port: d.port,
        receivedAt,
        refusal,
      });
      return;
    }
    this.warnings.warn('malformed', { source: d.address, reason: err.message }, 'malformed packet');
    const packet = decodeErrorReply(d.data, answer, this.ctx.haAddress);
    if (!packet || !this.takeToken()) return;
    this.send(packet, undefined, d.address, d.port);
  }

  private enqueue(job: Job): void {
    this.queue.push(job);
    if (!this.draining) {
      this.draining = this.drain().finally(() => (this.draining = undefined));
    } else if (this.committing && !this.queuePassScheduled) {
      // Process arrivals while the commit runs (coalesced: one pass per turn of the event loop).
      this.queuePassScheduled = true;
      setImmediate(() => {
        this.queuePassScheduled = false;
        if (this.committing) this.processQueue();
      });
    }
  }

  private async drain(): Promise<void> {
    // Let datagrams already waiting in the socket join this group.
    await new Promise((r) => setImmediate(r));
    // Committed and applied; its BAs go out while the next group commits.
    let done: { group: Group; timing: Timing } | undefined;
    while (this.state !== 'stopped') {
      if (this.open.jobs === 0) this.processQueue();
      const group = this.open;
      if (group.jobs === 0) break;
      this.open = emptyGroup();
      this.committing = group;
      const settled = this.commitGroup(group);
      if (done) this.replyToGroup(done.group, done.timing);
      done = undefined;
      this.processQueue();
      try {
        done = { group, timing: await settled };
      } catch (err) {
        this.log.error({ err }, 'batch failed');
      }
      this.committing = undefined;
    }
    if (done) this.replyToGroup(done.group, done.timing);
  }

  /** Process queued jobs into the open group, as far as the pipeline allows. */
  private processQueue(): void {
    // On top of a group whose data plane update may still fail, or before a pending reconcile, nothing.
    // (The open group itself takes any number of data plane changes: they are applied in one update.)
    if (this.committing && (this.committing.barrier || this.needsReconcile)) return;
    const group = this.open;
    const now = this.components.clock.now();
    const queue = this.queue;
    let taken = 0;
    // A BU makes at most one cache op; expiry takes what still fits and leaves the rest for the next group.
    while (taken < queue.length && group.jobs < MAX_BATCH && group.ops.length < this.maxOps) {
      const job = queue[taken]!;
      // Another HA's changes move the revisions the store compares: a BU processed before them and
      // committed after them would pass the compare on a state it never saw. So they start a group.
      if (job.kind === 'remote' && (group.jobs > 0 || this.committing)) break;
      taken++;
      group.jobs++;
      if (job.kind === 'expire') this.expire(group, now);
      else if (job.kind === 'reload') this.applyReload(group, job);
      else if (job.kind === 'remote') this.applyRemote(group, job);
      else this.process(group, job, now);
    }
    queue.splice(0, taken);
  }

  private expire(group: Group, now: number): void {
    // In a cluster one HA expires for all (cluster.ts); the others learn the deletes from the watch.
    if (this.session && !this.session.expiryOwner) return;
    const expired = this.cache.expired(now);
    const room = this.maxOps - group.ops.length;
    if (expired.length > room) this.queue.push({ kind: 'expire' });
    for (const b of expired.slice(0, room)) {
      this.remove(group, b);
      this.metrics.expired.inc();
      this.log.info({ hoa: b.hoa, coa: b.coa, id: b.id, event: 'expire' }, 'binding expired');
    }
  }

  /** Remove `b` in `group`: from the cache, the store and the data plane (no BA: nobody asked). */
  private remove(group: Group, b: Binding): void {
    const op: CacheOp = { op: 'delete', hoa: b.hoa };
    this.cache.apply(op);
    group.ops.push(op);
    group.removed.push(b);
    group.expiryIntents.push({ op: 'delete', binding: toTunnelBinding(b) });
    group.barrier = true;
  }

  /**
   * Re-read config (SIGHUP): the new mobile routers and binding policy apply from the next BU on; what
   * they no longer authorize is removed; every other binding stays as it is. Refused (ERR_RELOAD, nothing
   * changed) when a setting only a restart can change differs (reload.ts).
   */
  async reload(next: LoadedHomeAgent): Promise<ReloadResult> {
    if (this.state !== 'running')
      throw new OfflinkError('ERR_RELOAD', `reload refused: home agent is ${this.state}`);
    checkReloadable(this.config.homeAgent, next.config.homeAgent);
    const result = await new Promise<ReloadResult>((done) => this.enqueue({ kind: 'reload', next, done }));
    await this.idle(); // committed, and the data plane updated
    return result;
  }

  private applyReload(group: Group, job: Extract<Job, { kind: 'reload' }>): void {
    const { config, table } = job.next;
    const ha = config.homeAgent;
    this.config = { ...config, mobileRouters: [] };
    this.table = table;
    this.ctx.table = table;
    this.ctx.maxLifetimeSeconds = ha.maxLifetimeSeconds;
    this.ctx.refreshAdviceSeconds = ha.refreshAdviceSeconds;
    this.ctx.replayWindowSeconds = ha.replayWindowSeconds;
    let removed = 0;
    for (const b of this.cache.all()) {
      if (this.authorized(b)) continue;
      this.remove(group, b);
      removed++;
      this.log.info(
        { hoa: b.hoa, coa: b.coa, id: b.id, event: 'unauthorized' },
        'binding removed: not in the reloaded config',
      );
    }
    this.metrics.reloads.inc();
    job.done({ mobileRouters: table.size, removed, kept: this.cache.size });
  }

  private process(group: Group, job: Extract<Job, { kind: 'bu' }>, now: number): void {
    let result: BuResult;
    try {
      result = processBindingUpdate(this.ctx, job, now);
    } catch (err) {
      this.warnings.write('error', 'bu', { err, source: job.source }, 'BU processing threw');
      return;
    }
    const undo: CacheOp[] = [];
    for (const op of result.cacheOps) {
      const hoa = op.op === 'put' ? op.binding.hoa : op.hoa;
      const prev = this.cache.get(hoa);
      undo.unshift(prev ? { op: 'put', binding: prev } : { op: 'delete', hoa });
      this.cache.apply(op);
      group.ops.push(op);
    }
    if (result.intents.length > 0) group.barrier = true;
    group.items.push({ job, result, undo, status: result.status });
  }

  /**
   * Commit a group, then apply its data plane changes. Durable first: an accepting BA is never sent for a
   * binding that is not on disk.
   */
  private async commitGroup(group: Group): Promise<Timing> {
    const t0 = performance.now();
    try {
      await this.store!.write(group.ops);
      this.metrics.storeBatch.observe(group.ops.length);
    } catch (err) {
      this.log.error({ err, ops: group.ops.length }, 'binding store write failed');
      // What was processed on top of this group cannot stand either; it is answered with it.
      const open = this.open;
      this.open = emptyGroup();
      group.items.push(...open.items);
      group.expiryIntents.push(...open.expiryIntents);
      group.jobs += open.jobs;
      group.removed.push(...open.removed);
      this.rollBack(group.items, BaStatus.INSUFFICIENT_RESOURCES);
      this.restoreRemoved(group);
      if (err instanceof BindingConflictError) this.adoptStored(err.current);
    }
    const t1 = performance.now();
    this.metrics.storeCommit.observe((t1 - t0) / 1000);

    const intents = [
      ...group.expiryIntents,
      ...group.items.filter((i) => i.status === 0).flatMap((i) => i.result.intents),
    ];
    // Only when nothing uncommitted is in the cache (processQueue() waits for it while needsReconcile is set).
    if (this.needsReconcile && this.open.jobs === 0) await this.reconcile();
    if (intents.length > 0) {
      try {
        await this.components.dataplane.update(intents);
      } catch (err) {
        this.metrics.dataplaneErrors.inc();
        this.log.error({ err, changes: intents.length }, 'data plane update failed; rolling back the batch');
        const undo = this.rollBack(group.items, BaStatus.FORWARDING_SETUP_FAILED);
        try {
          await this.store!.write(undo);
        } catch (err) {
          this.log.error({ err }, 'binding store write of the rollback failed');
        }
        await this.reconcile();
      }
    }
    // Where the time of a BA went (bench/outage reads these from the log of each binding event).
    return { batch: group.jobs, storeMs: round(t1 - t0), dataplaneMs: round(performance.now() - t1) };
  }

  /**
   * The commit of removals failed: they are still stored, so they stay in the cache and the kernel (expiry
   * tries again; a conflict's adoption then replaces what another HA changed).
   */
  private restoreRemoved(group: Group): void {
    if (group.removed.length === 0) return;
    const removed = new Set(group.removed.map((b) => b.hoa));
    for (const b of group.removed.reverse())
      if (!this.cache.get(b.hoa)) this.cache.apply({ op: 'put', binding: b });
    group.expiryIntents = group.expiryIntents.filter((i) => i.op !== 'delete' || !removed.has(i.binding.hoa));
    group.removed = [];
    this.expiry?.handle.cancel();
    this.expiry = undefined;
  }

  /**
   * Another home agent changed these bindings in the shared store (issue 16): take them into the cache, so
   * the MR's retransmission is processed against what is stored, and reconcile the data plane with it.
   */
  private adoptStored(changes: readonly StoreChange[]): void {
    for (const c of changes) {
      if (c.op === 'put') {
        this.cache.apply({ op: 'put', binding: this.cache.withLocalId(c.binding) });
      } else {
        this.cache.apply({ op: 'delete', hoa: c.hoa });
        if (c.lastTimestamp !== undefined) this.cache.restoreTimestamp(c.hoa, c.lastTimestamp);
      }
      const hoa = c.op === 'put' ? c.binding.hoa : c.hoa;
      this.log.info({ hoa, event: 'adopt', op: c.op }, 'binding taken from the store (another home agent)');
    }
    (this.store as EtcdBindingStore).adopt(changes);
    this.needsReconcile = true;
  }

  /** Announce the anycast address while health() is ok, withdraw it while not (every 100 ms). */
  private keepAnnouncement(): void {
    const anycast = this.components.anycast;
    if (!anycast || this.state !== 'running') return;
    this.announceTimer = this.components.clock.setTimer(ANNOUNCE_CHECK_MS, () => {
      const ok = this.health().ok;
      const change = ok === this.announced ? Promise.resolve() : ok ? anycast.announce() : anycast.withdraw();
      change
        .then(() => {
          if (ok !== this.announced)
            this.log.warn(
              { announced: ok },
              ok ? 'HA address announced' : 'HA address withdrawn: cannot serve',
            );
          this.announced = ok;
        })
        .catch((err) => this.log.error({ err }, 'anycast announcement change failed'))
        .finally(() => this.keepAnnouncement());
    });
  }

  /** store: etcd: join the cluster (its lease, member key and, if free, the expiry). */
  private async joinCluster(): Promise<void> {
    const etcd = this.config.homeAgent.etcd;
    if (!(this.store instanceof EtcdBindingStore) || !etcd) return;
    const session = new ClusterSession(
      {
        endpoints: etcd.endpoints,
        prefix: etcd.prefix,
        name: this.store.name,
        ttlSeconds: etcd.leaseTtlSeconds ?? 5,
        info: {
          address: this.config.homeAgent.address,
          ...(this.statusServer ? { status: this.statusServer.url } : {}),
        },
      },
      this.components.clock,
      this.log,
    );
    session.serving = () => this.state === 'running' && this.ready.store && this.ready.dataplane;
    session.onOwnerChange = (owner) => {
      // Taking expiry over: what expired while nobody owned it goes now.
      if (owner && this.state === 'running') this.enqueue({ kind: 'expire' });
    };
    await session.start();
    this.session = session;
  }

  /** Watch the shared store (etcd): every HA programs every binding, whoever accepted it. */
  private watchStore(from?: number): void {
    const store = this.store;
    if (!(store instanceof EtcdBindingStore) || this.state !== 'running') return;
    this.unwatch = store.watch(
      (changes) => this.enqueue({ kind: 'remote', changes }),
      (err) => this.onWatchError(err),
      from,
    );
  }

  private onWatchError(err: Error): void {
    if (!(err instanceof OfflinkError && err.code === 'ERR_ETCD_COMPACTED')) {
      this.warnings.warn(
        'watch',
        { err: err.message },
        'etcd watch broke; re-opening it from the last revision seen',
      );
      return;
    }
    this.log.warn(
      { err: err.message },
      'etcd watch compacted past the last revision seen; reloading the cache',
    );
    void this.resync(this.store as EtcdBindingStore);
  }

  /** After a compaction: everything stored, as one job, then a watch from the revision it was read at. */
  private async resync(store: EtcdBindingStore): Promise<void> {
    while (this.state === 'running') {
      try {
        const { changes, revision } = await store.snapshot();
        if (this.state !== 'running') return;
        this.enqueue({ kind: 'remote', changes, snapshot: revision });
        this.watchStore(revision);
        return;
      } catch (err) {
        this.warnings.warn('watch', { err: (err as Error).message }, 'etcd snapshot failed; retrying');
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  /**
   * Another HA's changes (or a snapshot of all bindings) into the cache, the store's revisions and the data
   * plane. A change older than what this HA holds for the address (its own later write, a conflict it
   * adopted first) is stale and skipped.
   */
  private applyRemote(group: Group, job: Extract<Job, { kind: 'remote' }>): void {
    const store = this.store as EtcdBindingStore;
    const changes = [...job.changes];
    if (job.snapshot !== undefined) {
      const stored = new Set(changes.map((c) => (c.op === 'put' ? c.binding.hoa : c.hoa)));
      for (const b of this.cache.all())
        if (!stored.has(b.hoa))
          changes.push({ op: 'delete', hoa: b.hoa, lastTimestamp: undefined, revision: job.snapshot });
    }
    const taken: StoreChange[] = [];
    for (const c of changes) {
      const hoa = c.op === 'put' ? c.binding.hoa : c.hoa;
      const known = store.revisionOf(hoa);
      if (c.op === 'put' ? c.revision <= known : known > c.revision) continue;
      const prev = this.cache.get(hoa);
      if (c.op === 'put') {
        // The kernel knows the binding by this HA's id: keep it across the other HA's updates.
        const b = prev ? { ...c.binding, id: prev.id } : this.cache.withLocalId(c.binding);
        this.cache.apply({ op: 'put', binding: b });
        if (!prev || prev.coa !== b.coa || prev.prefixes.join() !== b.prefixes.join())
          group.expiryIntents.push({ op: 'set', binding: toTunnelBinding(b) });
      } else {
        if (prev) {
          this.cache.apply({ op: 'delete', hoa });
          group.expiryIntents.push({ op: 'delete', binding: toTunnelBinding(prev) });
        }
        if (c.lastTimestamp !== undefined) this.cache.restoreTimestamp(hoa, c.lastTimestamp);
      }
      taken.push(c);
      this.log.debug(
        { hoa, event: 'remote', op: c.op, revision: c.revision },
        'binding changed by another home agent',
      );
    }
    store.adopt(taken);
    if (group.expiryIntents.length > 0) group.barrier = true;
  }

  private replyToGroup(group: Group, timing: Timing): void {
    for (const item of group.items) this.replyTo(item, timing);
    this.scheduleExpiry();
  }

  /** Undo the accepted BUs of `items` in the cache (newest first), mark them `status`; returns the undo ops. */
  private rollBack(items: Item[], status: number): CacheOp[] {
    const undo: CacheOp[] = [];
    for (let i = items.length - 1; i >= 0; i--) {
      const item = items[i]!;
      if (item.status !== 0 || item.result.cacheOps.length === 0) continue;
      for (const op of item.undo) this.cache.apply(op);
      undo.push(...item.undo);
      item.status = status;
    }
    return undo;
  }

  private async reconcile(): Promise<void> {
    try {
      await this.components.dataplane.reconcile(this.cache.all().map(toTunnelBinding));
      this.needsReconcile = false;
    } catch (err) {
      this.needsReconcile = true;
      this.metrics.dataplaneErrors.inc();
      this.log.error({ err }, 'data plane reconcile failed; will retry');
    }
  }

  private replyTo(item: Item, timing: Timing): void {
    const { result, job } = item;
    const status = item.status;
    this.metrics.countStatus(status);
    if (status === BaStatus.MIPV6_AUTH_FAIL) this.metrics.authFailures.inc();
    const b = result.binding;
    if (status === 0) {
      // A refresh changes nothing but the expiry: at 5,000 BU/s a line each would flood the journal.
      this.log[result.event === 'refresh' ? 'debug' : 'info'](
        {
          hoa: result.hoa,
          mr: result.mobileRouter,
          event: result.event,
          coa: b?.coa,
          prefixes: b?.prefixes,
          sequence: job.packet.message.type === 'bindingUpdate' ? job.packet.message.sequence : undefined,
          lifetime: result.event === 'deregister' ? 0 : b?.lifetimeSeconds,
          id: b?.id,
          ...timing,
        },
        `binding ${result.event}`,
      );
    }
    let reply: BaReply = result.reply;
    if (status !== result.status) {
      const m = reply.packet.message;
      const options = m.options.filter((option) => option.type === 'replayProtection');
      reply = { ...reply, packet: { ...reply.packet, message: { ...m, status, lifetime: 0, options } } };
    }
    // Answers to unauthenticated BUs (unsigned) are rate-limited; so are rejection log lines (per status),
    // since a replayed BU passes authentication and could otherwise flood the log.
    const allowed = reply.sign !== undefined || this.takeToken();
    if (status !== 0) {
      this.warnings.warn(
        `rejected ${status}`,
        {
          hoa: result.hoa,
          mr: result.mobileRouter,
          status,
          statusName: baStatusName(status),
          reason: result.reason,
          source: job.source,
        },
        'binding update rejected',
      );
    }
    if ((status === 0 && !result.acknowledge) || !allowed) return;
    this.send(reply.packet, reply.sign, job.source, job.port);
    this.metrics.baLatency.observe((performance.now() - job.receivedAt) / 1000);
  }

  private send(packet: SignalingPacket, sign: BaReply['sign'], address: string, port: number): void {
    let bytes: Uint8Array;
    try {
      bytes = encodeSignalingPacket(packet, sign);
    } catch (err) {
      this.log.error({ err, dst: packet.dst }, 'cannot encode reply');
      return;
    }
    this.sending++;
    this.transport.send(bytes, address, port).then(this.sent, this.sendFailed);
  }

  // Shared callbacks, not a closure per datagram; stop() waits for the count to reach 0.
  private readonly sent = (): void => {
    if (--this.sending === 0) this.allSent?.();
  };
  private readonly sendFailed = (err: unknown): void => {
    this.sent();
    this.log.debug({ err }, 'send failed');
  };

  private takeToken(): boolean {
    return this.replyBudget.take(this.components.clock.now());
  }

  private scheduleExpiry(): void {
    if (this.state !== 'running') return;
    const next = this.cache.nextExpiry();
    if (next === undefined || (this.expiry && this.expiry.at <= next)) return;
    this.expiry?.handle.cancel();
    const delay = Math.max(0, next - this.components.clock.now());
    this.expiry = {
      at: next,
      handle: this.components.clock.setTimer(delay, () => {
        this.expiry = undefined;
        if (this.state === 'running') this.enqueue({ kind: 'expire' });
      }),
    };
  }
}
