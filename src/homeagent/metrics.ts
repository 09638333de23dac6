// Prometheus metrics of one home agent, in a Registry of its own (never prom-client's global default, so
// several daemons or tests in one process do not collide).
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { baStatusName } from '../protocol/constants.ts';

const LOOP_TICK_MS = 5;

export class HomeAgentMetrics {
  readonly registry = new Registry();
  readonly bindings: Gauge;
  readonly bindingUpdates: Counter<'status' | 'name'>;
  readonly baLatency: Histogram;
  readonly datagrams: Counter;
  readonly malformed: Counter;
  readonly authFailures: Counter;
  readonly unexpected: Counter<'type'>;
  readonly expired: Counter;
  readonly reloads: Counter;
  readonly dataplaneErrors: Counter;
  readonly storeBatch: Histogram;
  readonly storeCommit: Histogram;
  readonly loopDelayMax: Gauge;
  /** While the daemon runs (`watchEventLoop`): a timer that notes how late it fires. */
  private loop: { timer: NodeJS.Timeout; last: number; maxMs: number } | undefined;

  constructor(bindingCount: () => number) {
    const registers = [this.registry];
    this.bindings = new Gauge({
      name: 'offlink_ha_bindings',
      help: 'Bindings in the binding cache',
      registers,
      collect() {
        this.set(bindingCount());
      },
    });
    this.bindingUpdates = new Counter({
      name: 'offlink_ha_binding_updates_total',
      help: 'Binding Updates processed, by BA status',
      labelNames: ['status', 'name'],
      registers,
    });
    this.baLatency = new Histogram({
      name: 'offlink_ha_ba_latency_seconds',
      help: 'Time from receiving a BU to sending its BA (includes the durable store write and data plane)',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.datagrams = new Counter({
      name: 'offlink_ha_datagrams_total',
      help: 'Datagrams received on the signaling socket',
      registers,
    });
    this.malformed = new Counter({
      name: 'offlink_ha_malformed_packets_total',
      help: 'Datagrams that failed to decode (dropped, or answered as the decoder said)',
      registers,
    });
    this.authFailures = new Counter({
      name: 'offlink_ha_auth_failures_total',
      help: 'Binding Updates that failed MN-HA authentication (status 146)',
      registers,
    });
    this.unexpected = new Counter({
      name: 'offlink_ha_unexpected_messages_total',
      help: 'Well-formed Mobility Header messages a home agent does not accept (BA, BE, BRR), dropped',
      labelNames: ['type'],
      registers,
    });
    this.expired = new Counter({
      name: 'offlink_ha_expired_bindings_total',
      help: 'Bindings removed because their lifetime ended',
      registers,
    });
    this.reloads = new Counter({
      name: 'offlink_ha_config_reloads_total',
      help: 'Configs applied on SIGHUP (refused reloads are not counted)',
      registers,
    });
    this.dataplaneErrors = new Counter({
      name: 'offlink_ha_dataplane_errors_total',
      help: 'Failed data plane updates',
      registers,
    });
    this.storeBatch = new Histogram({
      name: 'offlink_ha_store_batch_size',
      help: 'Cache operations per durable store transaction',
      buckets: [1, 2, 5, 10, 50, 100, 500, 1000, 5000],
      registers,
    });
    this.storeCommit = new Histogram({
      name: 'offlink_ha_store_commit_seconds',
      help: 'Time from submitting a group of cache operations to the store until it is durable (or failed)',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25],
      registers,
    });
    const metrics = this;
    this.loopDelayMax = new Gauge({
      name: 'offlink_ha_event_loop_delay_max_seconds',
      help: 'Longest the event loop was held up since the previous scrape (BUs wait in the socket meanwhile; 0 when not running)',
      registers,
      collect() {
        const loop = metrics.loop;
        this.set(loop ? loop.maxMs / 1000 : 0);
        if (loop) loop.maxMs = 0;
      },
    });
  }

  /** Start (true) or stop measuring the event loop's delays (`offlink_ha_event_loop_delay_max_seconds`). */
  watchEventLoop(on: boolean): void {
    if (on && !this.loop) {
      // every 5 ms; it fires late by as much as the loop was held up. Not node:perf_hooks'
      // monitorEventLoopDelay: on Node 20 its reset() also drops the next sample, so a hold-up just after a
      // scrape went unrecorded (measured)
      const loop = { last: performance.now(), maxMs: 0, timer: undefined as unknown as NodeJS.Timeout };
      loop.timer = setInterval(() => {
        const now = performance.now();
        loop.maxMs = Math.max(loop.maxMs, now - loop.last - LOOP_TICK_MS);
        loop.last = now;
      }, LOOP_TICK_MS).unref();
      this.loop = loop;
    } else if (!on && this.loop) {
      clearInterval(this.loop.timer);
      this.loop = undefined;
    }
  }

  countStatus(status: number): void {
    this.bindingUpdates.inc({ status: String(status), name: baStatusName(status) });
  }
}
