// The bridge fast path's view of each mobile network's bridge: a mirror of the kernel's forwarding
// database (which port each guest MAC is behind) in the ofl_fdb map, by ifindex. A dump when a bridge is
// watched, then `bridge monitor fdb` events, and a full resync now and then in case an event was missed
// (or, without a way to run a monitor, a poll). The mirror only ever makes the fast path take a port the
// kernel also knows; whatever it does not know goes through the bridge as before.
import { type Clock, systemClock, type TimerHandle } from '../../clock.ts';
import { OfflinkError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import { checkInterfaceName } from '../ifname.ts';
import type { ProcessSpawner, SpawnedProcess } from '../process.ts';
import { SerialQueue } from '../serial.ts';
import type { CommandRunner } from '../types.ts';
import type { FdbEntry, FdbMap } from './maps.ts';

export interface FdbMirrorComponents {
  runner: CommandRunner;
  /** Runs `bridge monitor fdb`; without one the mirror polls every `pollMs`. */
  spawner?: ProcessSpawner;
  clock?: Clock;
  logger?: Logger;
}

/** One line of `bridge monitor fdb` / `bridge fdb show`, as far as the mirror cares. */
export interface FdbEvent {
  deleted: boolean;
  mac: string;
  dev: string;
  master: string;
}

/**
 * `[Deleted ]<mac> dev <port> [vlan N] master <bridge> [flags]`. Only dynamic entries of a port are
 * guests: the ports' own addresses are `permanent`, the bridge's and multicast ones `self`/no master.
 */
export function parseFdbLine(line: string): FdbEvent | undefined {
  const t = line.trim().split(/\s+/);
  const deleted = t[0] === 'Deleted';
  if (deleted) t.shift();
  const mac = t[0];
  if (!mac || !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(mac)) return undefined;
  if (Number.parseInt(mac.slice(0, 2), 16) & 1) return undefined; // multicast
  const at = (k: string) => {
    const i = t.indexOf(k);
    return i > 0 ? t[i + 1] : undefined;
  };
  const dev = at('dev');
  const master = at('master');
  if (!dev || !master || dev === master || t.includes('permanent') || t.includes('vlan')) return undefined;
  return { deleted, mac, dev, master };
}

interface JsonFdb {
  mac: string;
  ifname: string;
  master?: string;
  state?: string;
  flags?: string[];
  vlan?: number;
}

export class FdbMirror {
  /** bridge name → ifindex */
  private readonly bridges = new Map<string, number>();
  private monitor: SpawnedProcess | undefined;
  private timer: TimerHandle | undefined;
  private readonly queue = new SerialQueue();
  private stopped = false;
  private readonly clock: Clock;

  constructor(
    private readonly c: FdbMirrorComponents,
    private readonly map: () => FdbMap | undefined,
    private readonly o: { resyncMs?: number; pollMs?: number } = {},
  ) {
    this.clock = c.clock ?? systemClock;
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
    m?.kill();
  }

  private schedule(): void {
    if (this.timer || this.stopped) return;
    const ms = this.c.spawner ? (this.o.resyncMs ?? 30_000) : (this.o.pollMs ?? 1_000);
    this.timer = this.clock.setTimer(ms, () => {
      this.timer = undefined;
      void this.queue
        .run(async () => {
          for (const b of this.bridges.keys()) await this.sync(b);
        })
        .catch((err) => this.c.logger?.warn({ err }, 'bridge forwarding database resync failed'))
        .finally(() => this.schedule());
    });
  }

  private ensureMonitor(): void {
    if (this.monitor || !this.c.spawner || this.stopped) return;
    const child = this.c.spawner.spawn(['bridge', 'monitor', 'fdb'], {
      onStdoutLine: (line) => {
        const e = parseFdbLine(line);
        if (e && this.bridges.has(e.master))
          void this.queue
            .run(() => this.apply(e))
            .catch((err) =>
              this.c.logger?.warn({ err, line }, 'bridge forwarding database event not applied'),
            );
      },
    });
    this.monitor = child;
    void child.exited.then(() => {
      if (this.monitor !== child || this.stopped) return;
      this.monitor = undefined;
      this.c.logger?.warn('bridge monitor exited; restarting it');
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
      this.c.runner.run(['bridge', '-j', 'fdb', 'show', 'br', bridge]),
      this.c.runner.run(['ip', '-j', 'link', 'show', 'master', bridge]),
    ]);
    const portIndex = new Map(
      (JSON.parse(ports.stdout || '[]') as { ifname: string; ifindex: number }[]).map((p) => [
        p.ifname,
        p.ifindex,
      ]),
    );
    const want = new Map<string, FdbEntry>();
    for (const e of JSON.parse(fdb.stdout || '[]') as JsonFdb[]) {
      const port = portIndex.get(e.ifname);
      const guest =
        e.master === bridge && e.ifname !== bridge && e.state !== 'permanent' && e.vlan === undefined;
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
    const { stdout } = await this.c.runner.run(['ip', '-j', 'link', 'show', 'dev', checkInterfaceName(dev)]);
    const index = (JSON.parse(stdout) as { ifindex: number }[])[0]?.ifindex;
    if (index === undefined) throw new OfflinkError('ERR_DATAPLANE', `no interface ${dev}`);
    return index;
  }
}
