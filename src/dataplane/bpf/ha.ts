// Home agent on the eBPF backend. Per host, once: the decapsulation program on the uplink (RFC 3963 §6.3
// check included), routes that send every prefix the home agent may tunnel through the encapsulation
// program (the prefix table's prefixes and home addresses, aggregated: 100k /64s in sequence are a handful
// of routes), and, if asked, TCP MSS clamping. Per binding: map entries only — each destination (MNP,
// HoA/128) → outer header {HA, CoA} for encapsulation, and → CoA for the source check. Registration,
// CoA change and deregistration are map updates through bpf(2), no process; a refresh changes nothing.
// Dual-stack networks (RFC 5555): IPv4 prefixes get `encap bpf` routes in the IPv4 main table and map
// entries keyed ::ffff:a.b.c.d; their packets are tunnelled in IPv6 (next header 4), and the same §6.3
// check applies to IPv4 inner sources. That needs Linux >= 6.3 to decapsulate: probed before the first
// IPv4 prefix is installed (NoIPv4DecapError).
import type { Logger } from '../../log.ts';
import { canonicalIPv6, prefixRange } from '../../protocol/address.ts';
import { applyChanges, type Entry, entriesOf, touchedBy } from '../bindings.ts';
import { aggregateAny, keySpace, ofFamily } from '../family.ts';
import type { DataplaneComponents } from '../ha.ts';
import type { NetKernel, NetOp, Route } from '../kernel.ts';
import { HA_TABLE } from '../nft.ts';
import { SerialQueue } from '../serial.ts';
import type {
  BindingChange,
  HomeAgentDataplane,
  HomeAgentDataplaneOptions,
  TunnelBinding,
} from '../types.ts';
import { clampGone, clampTable } from './clamp.ts';
import type { Counters, Tunnel } from './maps.ts';
import { BpfProgram } from './program.ts';
import { type BpfSyscalls, decapsulatesIPv4, kernelBpf, NoIPv4DecapError, programObject } from './syscall.ts';

export interface BpfDataplaneComponents extends DataplaneComponents {
  /** bpf(2); default: the addon. */
  sys?: BpfSyscalls;
  /** The compiled program; default: build/offlink.bpf.o. */
  object?: string;
}

export class BpfHomeAgentDataplane implements HomeAgentDataplane {
  readonly backend = 'bpf' as const;
  private readonly program: BpfProgram;
  private readonly kernel: NetKernel;
  private readonly logger: Logger | undefined;
  private readonly options: HomeAgentDataplaneOptions;
  /** Installed bindings by HoA, and destination → HoA. Distrusted after a failure (then: reconcile). */
  private entries = new Map<string, Entry>();
  private owners = new Map<string, string>();
  private inSync = false;
  /** Routes into the tunnel (canonical prefixes), and their ranges for the coverage check. */
  private routes: Cover = new Cover([]);
  private readonly queue = new SerialQueue();
  private readonly sys: BpfSyscalls;
  /** Whether the kernel decapsulates IPv4 in IPv6 (probed once, at the first IPv4 prefix). */
  private ipv4: boolean | undefined;

  constructor(components: BpfDataplaneComponents, options: HomeAgentDataplaneOptions) {
    this.kernel = components.kernel;
    this.sys = components.sys ?? kernelBpf();
    this.logger = components.logger;
    this.options = { ...options, haAddress: canonicalIPv6(options.haAddress) };
    this.program = new BpfProgram(
      {
        kernel: components.kernel,
        sys: this.sys,
        object: components.object ?? programObject(),
        ...(components.logger ? { logger: components.logger } : {}),
      },
      { role: 'ha', uplink: options.uplink, runDir: options.runDir ?? '/run/offlink' },
    );
  }

  init(): Promise<void> {
    return this.queue.run(async () => {
      const maps = await this.program.attach();
      maps.local.replace([this.options.haAddress]);
      maps.peers.replace([]);
      const tunnelled = aggregateAny(this.options.tunnelled ?? []);
      this.requireIPv4(tunnelled);
      await this.syncRoutes(tunnelled);
      await this.kernel.nft(clampTable(HA_TABLE, this.options.uplink, this.options.mss));
    });
  }

  reconcile(bindings: readonly TunnelBinding[]): Promise<void> {
    return this.queue.run(() => this.reconcileAll(entriesOf(bindings)));
  }

  update(changes: readonly BindingChange[]): Promise<void> {
    return this.queue.run(async () => {
      if (!this.inSync) return this.reconcileAll(applyChanges(new Map(this.entries), changes));
      await this.updateSome(changes);
    });
  }

  flush(): Promise<void> {
    return this.queue.run(async () => {
      await this.kernel.apply([
        { op: 'flush-routes', table: 'main' },
        { op: 'flush-routes', table: 'main', family: 4 },
      ]);
      await this.kernel.nft(clampGone(HA_TABLE));
      await this.program.detach();
      this.entries = new Map();
      this.owners = new Map();
      this.routes = new Cover([]);
      this.inSync = false;
    });
  }

  /** What the programs counted (packets tunnelled, dropped by reason, …) since they were loaded. */
  async packetCounters(): Promise<Counters> {
    return this.program.maps.counters();
  }

  /** Resolves once every queued job has run. */
  async settled(): Promise<void> {
    await this.queue.settled();
  }

  private tunnel(coa: string): Tunnel {
    return { src: this.options.haAddress, dst: coa };
  }

  /** Throws NoIPv4DecapError if `dsts` hold IPv4 prefixes and this kernel cannot decapsulate them. */
  private requireIPv4(dsts: Iterable<string>): void {
    const v4 = ofFamily([...dsts], 4);
    if (v4.length === 0) return;
    this.ipv4 ??= decapsulatesIPv4(this.sys);
    if (!this.ipv4) throw new NoIPv4DecapError(v4);
  }

  /** Our routes in main (IPv6 and IPv4) are exactly `wanted` (each through the encapsulation program). */
  private async syncRoutes(wanted: readonly string[]): Promise<void> {
    const have = [...(await this.kernel.routes('main')), ...(await this.kernel.routes('main', 4))];
    const keep = new Set(wanted);
    const ops: NetOp[] = have
      .filter((r) => !keep.has(r.dst))
      .map((r) => ({ op: 'delete-route', dst: r.dst, table: 'main' }));
    // replaced even when present: a restart (or an upgrade) attaches the current program to them
    for (const dst of wanted) ops.push({ op: 'replace-route', route: this.route(dst) });
    await this.kernel.apply(ops);
    this.routes = new Cover(wanted);
  }

  private route(dst: string): Route {
    return { dst, table: 'main', dev: this.options.uplink, encap: this.program.encap() };
  }

  /** Routes for destinations no route covers yet (outside the configured prefixes). */
  private async cover(dsts: Iterable<string>): Promise<void> {
    const missing = [...dsts].filter((d) => !this.routes.covers(d));
    if (missing.length === 0) return;
    await this.kernel.apply(missing.map((d) => ({ op: 'replace-route', route: this.route(d) })));
    this.routes.addExact(missing);
    this.logger?.info({ routes: missing.length }, 'routes added for destinations outside the prefix table');
  }

  /** Make the maps hold exactly `desired`; rebuilds the mirror. */
  private async reconcileAll(desired: Map<string, Entry>): Promise<void> {
    for (const e of desired.values()) this.requireIPv4(e.dsts);
    this.inSync = false;
    const { encapDst, ingress } = this.program.maps;
    const wantCoa = new Map<string, string>();
    for (const e of desired.values()) for (const d of e.dsts) wantCoa.set(d, e.coa);
    await this.cover(wantCoa.keys());
    const haveEncap = encapDst.entries();
    const haveIngress = ingress.entries();
    const sets: [string, Tunnel][] = [];
    const checks: [string, string][] = [];
    for (const [d, coa] of wantCoa) {
      const t = haveEncap.get(d);
      if (t?.dst !== coa || t.src !== this.options.haAddress) sets.push([d, this.tunnel(coa)]);
      if (haveIngress.get(d) !== coa) checks.push([d, coa]);
    }
    encapDst.setMany(sets);
    ingress.setMany(checks);
    for (const d of haveEncap.keys()) if (!wantCoa.has(d)) encapDst.delete(d);
    for (const d of haveIngress.keys()) if (!wantCoa.has(d)) ingress.delete(d);
    this.entries = desired;
    this.owners = new Map();
    for (const e of desired.values()) for (const d of e.dsts) this.owners.set(d, e.hoa);
    this.inSync = true;
  }

  /** Fast path: only the bindings named in `changes` are looked at; unchanged ones cost nothing. */
  private async updateSome(changes: readonly BindingChange[]): Promise<void> {
    const touched = touchedBy(changes, this.entries, this.owners);
    for (const { neu } of touched.values()) if (neu) this.requireIPv4(neu.dsts);
    const sets: [string, string][] = [];
    const left: string[] = [];
    for (const { old, neu } of touched.values()) {
      const wanted = new Set(neu?.dsts ?? []);
      for (const d of wanted) if (old?.coa !== neu!.coa || !old.dsts.includes(d)) sets.push([d, neu!.coa]);
      for (const d of old?.dsts ?? []) if (!wanted.has(d)) left.push(d);
    }
    // a destination that leaves one binding and joins another in this batch is set, not deleted
    const setNow = new Set(sets.map(([d]) => d));
    const gone = left.filter((d) => !setNow.has(d));
    if (sets.length > 0) await this.cover(setNow);
    const { encapDst, ingress } = this.program.maps;
    this.inSync = false;
    // the source check first: by the time packets come back from a new CoA, it lets them in
    ingress.setMany(sets);
    encapDst.setMany(sets.map(([d, coa]) => [d, this.tunnel(coa)]));
    for (const d of gone) {
      encapDst.delete(d);
      ingress.delete(d);
    }
    for (const [hoa, { old, neu }] of touched) {
      for (const d of old?.dsts ?? []) if (this.owners.get(d) === hoa) this.owners.delete(d);
      if (neu) {
        this.entries.set(hoa, neu);
        for (const d of neu.dsts) this.owners.set(d, hoa);
      } else this.entries.delete(hoa);
    }
    this.inSync = true;
  }
}

/**
 * Which destinations the routes cover: the configured aggregates (sorted ranges, binary search) and the
 * exact destinations added one by one outside them (a set: adding stays O(1)). IPv4 prefixes are ranges
 * in ::ffff:0:0/96, where no IPv6 route of ours reaches (MNPs there are refused).
 */
class Cover {
  private readonly ranges: { start: bigint; end: bigint }[];
  private readonly exact = new Set<string>();

  constructor(prefixes: readonly string[]) {
    this.ranges = aggregateAny(prefixes)
      .map((p) => prefixRange(keySpace(p)))
      .sort((a, b) => (a.start < b.start ? -1 : 1));
  }

  addExact(prefixes: readonly string[]): void {
    for (const p of prefixes) this.exact.add(p);
  }

  covers(prefix: string): boolean {
    if (this.exact.has(prefix)) return true;
    const r = prefixRange(keySpace(prefix));
    let lo = 0;
    let hi = this.ranges.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const m = this.ranges[mid]!;
      if (r.start < m.start) hi = mid - 1;
      else if (r.start > m.end) lo = mid + 1;
      else return r.end <= m.end;
    }
    return false;
  }
}
