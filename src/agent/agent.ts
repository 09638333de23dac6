// The host agent (docs/architecture.md): one per VM host. It holds the host's mobile networks (one mobile router
// each), the hypervisor driver and the control API, runs migrations out of this host (procedure.ts) and
// answers the destination's side of migrations into it (incoming.ts).
//
// `Agent` works on injected components so unit tests use fakes; `buildAgent` (build.ts) is the one place
// where the real object graph is made from the config.
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Clock } from '../clock.ts';
import { type CountingDataplane, registerDataplaneMetrics } from '../dataplane/metrics.ts';
import { OfflinkError } from '../errors.ts';
import { type Health, MetricsExporter } from '../exporter.ts';
import type { Driver, GuestInfo } from '../hypervisor/driver.ts';
import type { Logger } from '../log.ts';
import { type IncomingContext, IncomingNetwork, ORPHAN_TAKEOVER } from '../migration/incoming.ts';
import {
  type AbortRequest,
  type AgentStatus,
  ControlError,
  type HandoverReply,
  type HandoverRequest,
  type MigrateRequest,
  type MigrationEvent,
  type MigrationRecord,
  type NetworkStatus,
  type Peer,
  type PrepareReply,
  type PrepareRequest,
  unknownNetwork,
} from '../migration/messages.ts';
import { runMigration } from '../migration/procedure.ts';
import type { MigratingNetwork, RouterControl } from '../migration/router.ts';
import type { MobileRouter } from '../mobilerouter/mobilerouter.ts';
import { type ControlHandlers, ControlServer } from './api.ts';
import { RequestVerifier } from './auth.ts';
import type { AgentConfig, AgentNetworkConfig } from './config.ts';
import { type AgentReloadResult, checkReloadable, dhcp4Changed, rekeyedNetworks } from './reload.ts';

/** A mobile router as the agent drives it: the migration's operations plus its life cycle. */
export type ManagedRouter = RouterControl & Pick<MobileRouter, 'start' | 'stop' | 'rekey'>;

export interface AgentComponents {
  clock: Clock;
  logger: Logger;
  driver: Driver;
  /** One mobile router per configured network, by network name. */
  routers: ReadonlyMap<string, ManagedRouter>;
  /** The control API of another host, or undefined when it is not a peer. */
  peer: (host: string) => Peer | undefined;
  /** Monotonic milliseconds (default performance.now). */
  now?: () => number;
  /** Taking over guests that arrive without a notification (default ORPHAN_TAKEOVER; null: never). */
  orphanTakeover?: IncomingContext['orphanTakeover'] | null;
  /** The host's data plane, for its packet counters on /metrics. */
  dataplane?: CountingDataplane;
}

interface NetworkEntry {
  config: AgentNetworkConfig;
  view: MigratingNetwork;
  router: ManagedRouter;
  incoming: IncomingNetwork;
  /** Id of the migration out of this host that is running. */
  migrating: string | undefined;
}

const PHASE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

class AgentMetrics {
  readonly registry = new Registry();
  readonly migrations = new Counter({
    name: 'offlink_agent_migrations_total',
    help: 'Migrations out of this host, by outcome',
    labelNames: ['network', 'procedure', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly phaseSeconds = new Histogram({
    name: 'offlink_agent_migration_phase_seconds',
    help: 'Duration of each phase of successful and failed migrations out of this host',
    labelNames: ['procedure', 'phase'] as const,
    buckets: PHASE_BUCKETS,
    registers: [this.registry],
  });
  readonly handovers = new Counter({
    name: 'offlink_agent_handovers_total',
    help: 'Handover notifications this host answered as destination, by resulting state',
    labelNames: ['network', 'state'] as const,
    registers: [this.registry],
  });
  readonly refused = new Counter({
    name: 'offlink_agent_control_refused_total',
    help: 'Control API requests refused by authentication, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  constructor(networks: () => Iterable<NetworkEntry>) {
    new Gauge({
      name: 'offlink_agent_network_active',
      help: '1 while this host is the mobile router of the network',
      labelNames: ['network'] as const,
      registers: [this.registry],
      collect() {
        for (const n of networks())
          this.set({ network: n.config.name }, n.router.status().state === 'active' ? 1 : 0);
      },
    });
  }

  recordMigration(r: MigrationRecord): void {
    this.migrations.inc({ network: r.network, procedure: r.procedure, outcome: r.outcome });
    const t = r.timings;
    const phases: Array<[string, number | undefined]> = [
      ['prepare', t.prepareMs],
      ['hypervisor', t.hypervisorMs],
      ['downtime', t.downtimeMs],
      ['notification', t.notificationMs],
      ['deregistration', t.deregistrationMs],
      ['bu_to_ba', t.buToBaMs],
      ['total', t.totalMs],
    ];
    for (const [phase, ms] of phases) {
      if (ms !== undefined) this.phaseSeconds.observe({ procedure: r.procedure, phase }, ms / 1000);
    }
  }
}

export class Agent implements ControlHandlers {
  readonly host: string;
  private readonly components: AgentComponents;
  private config: AgentConfig;
  private verifier: RequestVerifier | undefined;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly networks = new Map<string, NetworkEntry>();
  private readonly history: MigrationRecord[] = [];
  private readonly metricsSet: AgentMetrics;
  private server: ControlServer | undefined;
  private address: { host: string; port: number } | undefined;
  private exporter: MetricsExporter | undefined;
  private exporterAddress: { host: string; port: number } | undefined;
  /** Every network's mobile router started (bridge ready): /healthz says the agent serves. */
  private loaded: 'no' | 'yes' | 'stopping' = 'no';

  constructor(components: AgentComponents, config: AgentConfig) {
    this.components = components;
    this.config = config;
    this.host = config.host;
    this.log = components.logger.child({ host: config.host });
    this.now = components.now ?? (() => performance.now());
    for (const net of config.networks) {
      const router = components.routers.get(net.name);
      if (!router) throw new OfflinkError('ERR_CONFIG', `no mobile router for network ${net.name}`);
      const view: MigratingNetwork = {
        name: net.name,
        bridge: net.bridge,
        guests: net.guests,
        homeAddress: net.homeAddress,
        prefixes: net.prefixes,
      };
      const incoming = new IncomingNetwork({
        host: config.host,
        network: view,
        router,
        driver: components.driver,
        log: this.log.child({ network: net.name, hoa: net.homeAddress }),
        now: this.now,
        ...(components.orphanTakeover === null
          ? {}
          : { orphanTakeover: components.orphanTakeover ?? ORPHAN_TAKEOVER }),
      });
      this.networks.set(net.name, { config: net, view, router, incoming, migrating: undefined });
    }
    this.metricsSet = new AgentMetrics(() => this.networks.values());
    if (components.dataplane)
      registerDataplaneMetrics(this.metricsSet.registry, 'offlink_agent', components.dataplane);
  }

  /** The control API's bound address, once started. */
  get controlAddress(): { host: string; port: number } | undefined {
    return this.address;
  }

  /** The unsigned /metrics and /healthz endpoint's bound address, once started (when configured). */
  get metricsAddress(): { host: string; port: number } | undefined {
    return this.exporterAddress;
  }

  /**
   * Bring every network up on standby (bridges ready), open the control API, then register the networks
   * that belong here: those whose guests are on this host, and `activeOnStart` networks without guests.
   * The metrics endpoint opens first, so a scrape sees the agent while its networks come up.
   */
  async start(): Promise<void> {
    if (this.config.metrics) {
      this.exporter = new MetricsExporter({ metrics: () => this.metrics(), health: () => this.health() });
      this.exporterAddress = await this.exporter.listen(this.config.metrics);
    }
    try {
      for (const n of this.networks.values()) await n.router.start();
    } catch (err) {
      await this.exporter?.close();
      throw err;
    }
    this.loaded = 'yes';
    const verifier = new RequestVerifier(this.config.control.key, {
      clock: this.components.clock,
      windowMs: this.config.control.clockSkewMs,
    });
    this.verifier = verifier;
    this.server = new ControlServer({
      handlers: this,
      verifier,
      log: this.log,
      onRefused: (reason) => this.metricsSet.refused.inc({ reason }),
      clock: this.components.clock,
    });
    const { host, port } = this.config.control.listen;
    const bound = await this.server.listen(host, port);
    this.address = { host: bound.address, port: bound.port };
    this.log.info(
      { listen: this.address, metrics: this.exporterAddress, networks: [...this.networks.keys()] },
      'agent started',
    );
    for (const n of this.networks.values()) await this.activateIfHere(n);
  }

  /**
   * Apply a reloaded config (SIGHUP): the cluster key and clock window, the history length, and the
   * networks' security associations (reload.ts says what else is refused). Peers are the caller's: the
   * `peer` lookup of the components reads them. Nothing registered, routed or migrating is touched.
   */
  reload(next: AgentConfig): AgentReloadResult {
    checkReloadable(this.config, next);
    const rekeyed = rekeyedNetworks(this.config, next);
    for (const net of rekeyed) {
      const entry = this.networks.get(net.name);
      entry?.router.rekey({ spi: net.spi, key: net.key, algorithm: net.algorithm });
      if (entry) entry.config = net;
    }
    const clusterKeyChanged = !this.config.control.key.equals(next.control.key);
    this.verifier?.rekey(next.control.key, next.control.clockSkewMs);
    const dhcp4 = dhcp4Changed(this.config, next).map((n) => n.name);
    for (const n of next.networks) {
      const entry = this.networks.get(n.name);
      if (entry) entry.config = n;
    }
    this.config = next;
    return {
      peers: Object.keys(next.peers).length,
      rekeyed: rekeyed.map((n) => n.name),
      clusterKeyChanged,
      dhcp4,
    };
  }

  async stop(): Promise<void> {
    this.loaded = 'stopping';
    await this.server?.close();
    this.server = undefined;
    for (const n of this.networks.values()) {
      n.incoming.close();
      await n.router
        .stop()
        .catch((err) => this.log.warn({ err, network: n.config.name }, 'stopping the router failed'));
    }
    await this.components.driver.close?.();
    await this.exporter?.close();
    this.exporter = undefined;
    this.log.info('agent stopped');
  }

  private async activateIfHere(n: NetworkEntry): Promise<void> {
    const here = await this.components.driver.listGuests(n.view).catch((err) => {
      this.log.warn({ err, network: n.config.name }, 'listing guests failed');
      return [] as GuestInfo[];
    });
    const hasGuests = n.config.guests.length > 0;
    if (here.length === 0 && !(n.config.activeOnStart && !hasGuests)) {
      if (n.config.activeOnStart) {
        this.log.warn(
          { network: n.config.name },
          'activeOnStart ignored: none of the network’s guests is on this host',
        );
      }
      return;
    }
    const log = this.log.child({ network: n.config.name, hoa: n.config.homeAddress });
    log.info({ guests: here.map((g) => g.name) }, 'registering: the network belongs here');
    n.router.activate().then(
      (reg) => log.info({ coa: reg.coa, sequence: reg.sequence, buToBaMs: reg.buToBaMs }, 'registered'),
      (err) => log.error({ err: String(err) }, 'registration failed (the mobile router keeps retrying)'),
    );
  }

  // ------------------------------------------------------------------ control API handlers

  async migrate(
    req: MigrateRequest,
    onProgress: (event: MigrationEvent) => void,
    signal: AbortSignal,
  ): Promise<MigrationRecord> {
    const n = this.network(req.network);
    if (req.to === this.host)
      throw new ControlError(409, 'ERR_NETWORK_STATE', `${req.network} is on ${this.host} already`);
    const peer = this.components.peer(req.to);
    if (!peer) throw new ControlError(404, 'ERR_UNKNOWN_PEER', `${req.to} is not a peer of ${this.host}`);
    this.checkIdle(n);
    const state = n.router.status().state;
    if (state !== 'active') {
      throw new ControlError(
        409,
        'ERR_NETWORK_STATE',
        `${req.network} is ${state} on ${this.host}, not active`,
      );
    }
    const id = randomUUID();
    n.migrating = id;
    try {
      const record = await runMigration({
        id,
        procedure: req.procedure,
        from: this.host,
        network: n.view,
        router: n.router,
        driver: this.components.driver,
        peer,
        log: this.log.child({ network: n.config.name, hoa: n.config.homeAddress, migrationId: id }),
        now: this.now,
        wallClock: () => this.components.clock.now(),
        onEvent: onProgress,
        signal,
      });
      this.remember(record);
      this.metricsSet.recordMigration(record);
      return record;
    } finally {
      n.migrating = undefined;
    }
  }

  async prepare(req: PrepareRequest, signal: AbortSignal): Promise<PrepareReply> {
    const n = this.network(req.network);
    if (req.source === this.host)
      throw new ControlError(409, 'ERR_NETWORK_STATE', `${this.host} cannot migrate to itself`);
    this.checkIdle(n);
    return n.incoming.prepare(req, signal);
  }

  async abort(req: AbortRequest): Promise<void> {
    await this.network(req.network).incoming.abort(req);
  }

  async handover(req: HandoverRequest): Promise<HandoverReply> {
    const n = this.network(req.network);
    const reply = await n.incoming.handover(req);
    this.metricsSet.handovers.inc({ network: req.network, state: reply.state });
    return reply;
  }

  async status(): Promise<AgentStatus> {
    const networks: NetworkStatus[] = [];
    let coa: string | undefined;
    for (const n of this.networks.values()) {
      const s = n.router.status();
      coa ??= s.coa;
      const guests = await this.components.driver.listGuests(n.view).catch(() => [] as GuestInfo[]);
      networks.push({
        name: n.config.name,
        state: s.state,
        homeAddress: s.homeAddress,
        prefixes: [...s.prefixes],
        ...(s.coa === undefined ? {} : { coa: s.coa }),
        ...(s.sequence === undefined ? {} : { sequence: s.sequence }),
        lifetimeRemaining: Math.floor(s.lifetimeRemainingMs / 1000),
        guests,
        ...(n.migrating ? { migrating: n.migrating } : {}),
        ...(s.lastError ? { lastError: s.lastError } : {}),
      });
    }
    const backend = this.components.dataplane?.backend;
    return {
      host: this.host,
      ...(coa ? { coa } : {}),
      ...(backend ? { dataplane: backend } : {}),
      networks,
      migrations: [...this.history].reverse(),
    };
  }

  /** Serving once every network is loaded (its mobile router started), until stop(). */
  health(): Health {
    return {
      ok: this.loaded === 'yes',
      host: this.host,
      networks: this.loaded === 'yes' ? this.networks.size : this.loaded === 'no' ? 'loading' : 'stopping',
    };
  }

  async metrics(): Promise<{ contentType: string; body: string }> {
    return {
      contentType: this.metricsSet.registry.contentType,
      body: await this.metricsSet.registry.metrics(),
    };
  }

  // ------------------------------------------------------------------ helpers

  private network(name: string): NetworkEntry {
    const n = this.networks.get(name);
    if (!n) throw unknownNetwork(this.host, name);
    return n;
  }

  private checkIdle(n: NetworkEntry): void {
    if (n.migrating) {
      throw new ControlError(
        409,
        'ERR_BUSY',
        `${n.config.name} is migrating (${n.migrating}) from ${this.host}`,
      );
    }
  }

  private remember(record: MigrationRecord): void {
    this.history.push(record);
    while (this.history.length > this.config.control.history) this.history.shift();
  }
}
