// The bridge fast path's view of each mobile network's bridge: a mirror of the kernel's forwarding
// database (which port each guest MAC is behind) in the ofl_fdb map, by ifindex. A dump when a bridge is
// watched, then `bridge monitor fdb` events, and a full resync now and then in case an event was missed
// (or, without a way to run a monitor, a poll). The mirror only ever makes the fast path take a port the
// kernel also knows; whatever it does not know goes through the bridge as before.
import { type Clock, systemClock, type TimerHandle } from '../../clock.ts';
import { OfflinkError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import { checkInterfaceName } from '../ifname.ts';
import type { FdbEvent, NetKernel, Watch } from '../kernel.ts';
import { SerialQueue } from '../serial.ts';
import type { FdbEntry, FdbMap } from './maps.ts';

export interface FdbMirrorComponents {
  /** The kernel; where it cannot watch the forwarding database, the mirror polls every `pollMs`. */
  kernel: NetKernel;
  clock?: Clock;
  logger?: Logger;
}

export class FdbMirror {
  /** bridge name → ifindex */
  private readonly bridges = new Map<string, number>();
  private monitor: Watch | undefined;
  private timer: TimerHandle | undefined;
  private readonly queue = new SerialQueue();
  private stopped = false;
  private readonly clock: Clock;

  constructor(
    private readonly components: FdbMirrorComponents,
    private readonly map: () => FdbMap | undefined,
    private readonly options: { resyncMs?: number; pollMs?: number } = {},
  ) {
    this.clock = components.clock ?? systemClock;
  }

  /** Mirror `bridge` from now on (idempotent). */
  watch(bridge: string): Promise<void> {
    checkInterfaceName(bridge);
    return this.queue.run(async () => {
      this.stopped = false;
      if (this.bridges.has(bridge)) return;
      this.bridges.set(bridge, await this.ifindex(bridge));
      await this.sync(bridge);
      this.ensureMonitor();
      this.schedule();
    });
  }

  /** Stop mirroring `bridge` and forget its entries. */
  unwatch(bridge: string): Promise<void> {
    return this.queue.run(async () => {
      const index = this.bridges.get(bridge);
      if (index === undefined) return;
      this.bridges.delete(bridge);
      const map = this.map();
      for (const e of map?.entries() ?? []) if (e.bridge === index) map!.delete(e.bridge, e.mac);
      if (this.bridges.size === 0) this.halt();
    });
  }

  stop(): Promise<void> {
    return this.queue.run(async () => {
      this.bridges.clear();
      this.halt();
    });
  }

  get watching(): string[] {
    return [...this.bridges.keys()];
  }

  private halt(): void {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = undefined;
    const m = this.monitor;
    this.monitor = undefined;
    m?.stop();
  }

  private schedule(): void {
    if (this.timer || this.stopped) return;
    const ms = this.monitor ? (this.options.resyncMs ?? 30_000) : (this.options.pollMs ?? 1_000);
    this.timer = this.clock.setTimer(ms, () => {
      this.timer = undefined;
      void this.queue
        .run(async () => {
          for (const b of this.bridges.keys()) await this.sync(b);
        })
        .catch((err) => this.components.logger?.warn({ err }, 'bridge forwarding database resync failed'))
        .finally(() => this.schedule());
    });
  }

  private ensureMonitor(): void {
    if (this.monitor || this.stopped) return;
    const child = this.components.kernel.watchFdb((e) => {
      if (this.bridges.has(e.master))
        void this.queue
          .run(() => this.apply(e))
          .catch((err) =>
            this.components.logger?.warn({ err, event: e }, 'bridge forwarding database event not applied'),
          );
    });
    if (!child) return;
    this.monitor = child;
    void child.exited.then(() => {
      if (this.monitor !== child || this.stopped) return;
      this.monitor = undefined;
      this.components.logger?.warn('bridge monitor exited; restarting it');
      this.clock.setTimer(1000, () => this.ensureMonitor());
    });
  }

  private async apply(e: FdbEvent): Promise<void> {
    const map = this.map();
    const bridge = this.bridges.get(e.master);
    if (!map || bridge === undefined) return;
    if (e.deleted) map.delete(bridge, e.mac);
    else map.set({ bridge, mac: e.mac, port: await this.ifindex(e.dev) });
  }

  /** Make the map's entries for `bridge` those of the kernel's forwarding database. */
  private async sync(bridge: string): Promise<void> {
    const map = this.map();
    const index = this.bridges.get(bridge);
    if (!map || index === undefined) return;
    const [fdb, ports] = await Promise.all([
      this.components.kernel.fdb(bridge),
      this.components.kernel.links({ master: bridge }),
    ]);
    const portIndex = new Map(ports.map((p) => [p.name, p.index]));
    const want = new Map<string, FdbEntry>();
    for (const e of fdb) {
      const port = portIndex.get(e.dev);
      const guest = e.master === bridge && e.dev !== bridge && !e.permanent && e.vlan === undefined;
      if (guest && port !== undefined && !(Number.parseInt(e.mac.slice(0, 2), 16) & 1))
        want.set(e.mac, { bridge: index, mac: e.mac, port });
    }
    for (const have of map.entries()) {
      if (have.bridge !== index) continue;
      const w = want.get(have.mac);
      if (w?.port === have.port) want.delete(have.mac);
      else if (!w) map.delete(have.bridge, have.mac);
    }
    for (const e of want.values()) map.set(e);
  }

  private async ifindex(dev: string): Promise<number> {
    const link = await this.components.kernel.link(checkInterfaceName(dev));
    if (link === undefined) throw new OfflinkError('ERR_DATAPLANE', `no interface ${dev}`);
    return link.index;
  }
}
