// The home agent data plane shared by both backends (docs/dataplane.md): one route per MNP and per home address
// towards the binding's CoA, and the nftables checks of RFC 3963 §6.3. The backends differ only in the
// route's encapsulation and in the per-host decapsulation setup.
//
// State: a mirror of what is installed (bindings by HoA, CoA marks). update() diffs against the mirror
// and touches only the changed bindings; after any failure the mirror is distrusted and the next call
// reads the kernel and reconciles everything.

import type { Clock } from '../clock.ts';
import { OfflinkError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { canonicalIPv6 } from '../protocol/address.ts';
import { applyChanges, type Entry, entriesOf, touchedBy } from './bindings.ts';
import { refuseIPv4 } from './family.ts';
import { checkInterfaceName } from './ifname.ts';
import type { InstalledRoute, InstalledRule, NetKernel, NetOp, NftOp, Route } from './kernel.ts';
import {
  elementDiff,
  emptyElements,
  HA_TABLE,
  type HaElements,
  type HaTableState,
  haTable,
  haTableState,
} from './nft.ts';
import { SerialQueue } from './serial.ts';
import type { BindingChange, HomeAgentDataplane, HomeAgentDataplaneOptions, TunnelBinding } from './types.ts';

/** What a backend is built from: the kernel it programs (typed operations), a logger, a clock. */
export interface DataplaneComponents {
  kernel: NetKernel;
  logger?: Logger;
  clock?: Clock;
}

/** Prefix lengths whose lookup rules always exist (MNPs are /64, home addresses /128). */
const BASE_LENGTHS = [64, 128];

/** `address/length` text (canonical) into its parts. */
function splitPrefix(text: string): { address: string; length: number } {
  const slash = text.lastIndexOf('/');
  return { address: text.slice(0, slash), length: Number(text.slice(slash + 1)) };
}

export abstract class TunnelHomeAgentDataplane implements HomeAgentDataplane {
  protected readonly kernel: NetKernel;
  protected readonly options: HomeAgentDataplaneOptions;
  private readonly logger: Logger | undefined;
  private entries = new Map<string, Entry>();
  /** destination prefix text → HoA that owns it */
  private owners = new Map<string, string>();
  private marks = new Map<string, number>();
  private refs = new Map<string, number>();
  private lengths = new Set(BASE_LENGTHS);
  private inSync = false;
  private readonly queue = new SerialQueue();

  constructor(components: DataplaneComponents, options: HomeAgentDataplaneOptions) {
    this.kernel = components.kernel;
    this.logger = components.logger;
    checkInterfaceName(options.uplink);
    if (!Number.isInteger(options.table) || options.table <= 0)
      throw new OfflinkError('ERR_CONFIG', `bad table ${options.table}`);
    this.options = { ...options, haAddress: canonicalIPv6(options.haAddress) };
  }

  /** The backend's name (also in errors). */
  abstract readonly backend: string;
  /** The route that sends `dst` into the tunnel to `coa`. */
  protected abstract route(dst: string, coa: string): Route;
  /** The CoA an installed route tunnels to, or undefined if it is not exactly what route() installs. */
  protected abstract routeCoa(route: InstalledRoute): string | undefined;
  /** Per-host state: rule order, tunnel source, decapsulation. */
  protected abstract hostSetup(rules: readonly InstalledRule[]): Promise<NetOp[]>;
  protected abstract hostTeardown(rules: readonly InstalledRule[]): NetOp[];

  init(): Promise<void> {
    return this.queue.run(async () => {
      await this.kernel.apply(await this.hostSetup(await this.kernel.rules()));
      await this.kernel.nft([this.table()]);
    });
  }

  reconcile(bindings: readonly TunnelBinding[]): Promise<void> {
    return this.queue.run(() => {
      for (const b of bindings) refuseIPv4(b.prefixes, this.backend);
      return this.reconcileAll(entriesOf(bindings));
    });
  }

  update(changes: readonly BindingChange[]): Promise<void> {
    return this.queue.run(async () => {
      for (const c of changes) if (c.op === 'set') refuseIPv4(c.binding.prefixes, this.backend);
      if (!this.inSync) {
        await this.reconcileAll(applyChanges(new Map(this.entries), changes));
        return;
      }
      await this.updateSome(changes);
    });
  }

  flush(): Promise<void> {
    return this.queue.run(async () => {
      const ops: NetOp[] = [{ op: 'flush-routes', table: 'main' }];
      ops.push(...this.hostTeardown(await this.kernel.rules()));
      await this.kernel.nft([{ op: 'delete-table', name: HA_TABLE }]);
      await this.kernel.apply(ops);
      this.reset(new Map(), new Map());
      this.inSync = false;
    });
  }

  /** Packets counted by the drop rules (reads the whole table: slow with many bindings). */
  async counters(): Promise<{ unregisteredCoa: number; innerSource: number; reencapsulated: number }> {
    const t = await this.readTable();
    return {
      unregisteredCoa: t.counters['unregistered-coa'] ?? 0,
      innerSource: t.counters['inner-source'] ?? 0,
      reencapsulated: t.counters['reencapsulated'] ?? 0,
    };
  }

  /** The drop counters by name (HomeAgentDataplane.packetCounters). */
  async packetCounters(): Promise<Record<string, number>> {
    return { ...(await this.counters()) };
  }

  /** Resolves once every queued job has run, deferred deletes included. */
  settled(): Promise<void> {
    return this.queue.settled();
  }

  private async routes(ops: readonly NetOp[]): Promise<void> {
    if (ops.length === 0) return;
    const { retried } = await this.kernel.apply(ops);
    if (retried > 0) this.logger?.info({ ops: ops.length, retried }, 'route changes retried after ENOMEM');
  }

  private table(extra: Iterable<number> = []): NftOp {
    const { haAddress, mss } = this.options;
    const lengths = [...new Set([...this.lengths, ...extra])];
    return { op: 'define-table', table: haTable({ haAddress, mss, lengths }) };
  }

  private async readTable(): Promise<HaTableState> {
    return haTableState(await this.kernel.nftTable(HA_TABLE));
  }

  private elementsOf(entries: Iterable<Entry>, marks: ReadonlyMap<string, number>): HaElements {
    const el = emptyElements();
    const add = (kind: 'allowed' | 'mnp', len: number, v: string) => {
      const s = el[kind].get(len) ?? new Set<string>();
      el[kind].set(len, s);
      s.add(v);
    };
    for (const e of entries) {
      const mark = marks.get(e.coa)!;
      el.coa2id.set(e.coa, mark);
      for (const text of e.dsts) {
        const d = splitPrefix(text);
        add('allowed', d.length, `${d.address} . ${mark}`);
        add('mnp', d.length, d.address);
      }
    }
    return el;
  }

  /** Full diff against what the kernel holds; rebuilds the mirror. */
  private async reconcileAll(desired: Map<string, Entry>): Promise<void> {
    this.inSync = false;
    const [routes, table] = await Promise.all([this.kernel.routes('main'), this.readTable()]);
    const marks = new Map<string, number>();
    const used = new Set<number>();
    for (const e of desired.values()) {
      const m = table.elements.coa2id.get(e.coa);
      if (m !== undefined && !used.has(m) && !marks.has(e.coa)) {
        marks.set(e.coa, m);
        used.add(m);
      }
    }
    let next = 1;
    for (const e of desired.values()) {
      if (marks.has(e.coa)) continue;
      while (used.has(next)) next++;
      marks.set(e.coa, next);
      used.add(next);
    }
    const want = this.elementsOf(desired.values(), marks);
    const wantLengths = new Set([...BASE_LENGTHS, ...want.allowed.keys()]);
    const have = table.elements;
    for (const kind of ['allowed', 'mnp'] as const)
      for (const l of wantLengths) if (!have[kind].has(l)) have[kind].set(l, new Set());
    this.lengths = wantLengths;
    const staleLengths = table.lengths.filter((l) => !wantLengths.has(l));
    for (const kind of ['allowed', 'mnp'] as const) for (const l of staleLengths) have[kind].delete(l);
    const { dels, adds } = elementDiff(have, want);
    const staleSets: NftOp[] = staleLengths.flatMap((l) => [
      { op: 'delete-set', table: HA_TABLE, set: `allowed_${l}` } as const,
      { op: 'delete-set', table: HA_TABLE, set: `mnp_${l}` } as const,
    ]);
    await this.kernel.nft([this.table(), ...dels, ...adds, ...staleSets]);

    const wantRoutes = new Map<string, string>();
    for (const e of desired.values()) for (const d of e.dsts) wantRoutes.set(d, e.coa);
    const ops: NetOp[] = [];
    const seen = new Set<string>();
    for (const r of routes) {
      seen.add(r.dst);
      const coa = wantRoutes.get(r.dst);
      if (coa === undefined) ops.push({ op: 'delete-route', dst: r.dst, table: 'main' });
      else if (this.routeCoa(r) !== coa) ops.push({ op: 'replace-route', route: this.route(r.dst, coa) });
    }
    for (const [dst, coa] of wantRoutes)
      if (!seen.has(dst)) ops.push({ op: 'replace-route', route: this.route(dst, coa) });
    await this.routes(ops);

    this.reset(desired, marks);
    this.inSync = true;
  }

  private reset(entries: Map<string, Entry>, marks: Map<string, number>): void {
    this.entries = entries;
    this.marks = marks;
    this.owners = new Map();
    this.refs = new Map();
    for (const e of entries.values()) {
      for (const d of e.dsts) this.owners.set(d, e.hoa);
      this.refs.set(e.coa, (this.refs.get(e.coa) ?? 0) + 1);
    }
  }

  /** Fast path: only the bindings named in `changes` are looked at. */
  private async updateSome(changes: readonly BindingChange[]): Promise<void> {
    const touched = touchedBy(changes, this.entries, this.owners);
    // CoA marks: reference counts over the whole mirror
    const refs = new Map<string, number>();
    const ref = (coa: string, n: number) => refs.set(coa, (refs.get(coa) ?? this.refs.get(coa) ?? 0) + n);
    for (const { old, neu } of touched.values()) {
      if (old) ref(old.coa, -1);
      if (neu) ref(neu.coa, +1);
    }
    const marks = new Map<string, number>();
    const taken = new Set(this.marks.values());
    let next = 1;
    for (const [coa, n] of refs) {
      if (n <= 0) continue;
      let m = this.marks.get(coa);
      if (m === undefined) {
        while (taken.has(next)) next++;
        m = next;
        taken.add(m);
      }
      marks.set(coa, m);
    }
    const olds = [...touched.values()].flatMap((t) => (t.old ? [t.old] : []));
    const news = [...touched.values()].flatMap((t) => (t.neu ? [t.neu] : []));
    const from = this.elementsOf(olds, this.marks);
    const to = this.elementsOf(news, marks);
    // coa2id: compare only CoAs whose reference count changed
    from.coa2id = new Map(
      [...refs.keys()].filter((coa) => this.marks.has(coa)).map((coa) => [coa, this.marks.get(coa)!]),
    );
    to.coa2id = marks;
    const newLengths = [...to.allowed.keys()].filter((l) => !this.lengths.has(l));
    const { adds, dels } = elementDiff(from, to);
    const nftAdds = [...(newLengths.length > 0 ? [this.table(newLengths)] : []), ...adds];

    const oldRoutes = new Map<string, string>();
    for (const oldEntry of olds) for (const d of oldEntry.dsts) oldRoutes.set(d, oldEntry.coa);
    const ops: NetOp[] = [];
    const newRoutes = new Set<string>();
    for (const n of news) {
      for (const d of n.dsts) {
        newRoutes.add(d);
        if (oldRoutes.get(d) !== n.coa) ops.push({ op: 'replace-route', route: this.route(d, n.coa) });
      }
    }
    for (const dst of oldRoutes.keys())
      if (!newRoutes.has(dst)) ops.push({ op: 'delete-route', dst, table: 'main' });

    // The elements to add and the routes go in together: neither needs the other (a route towards a CoA
    // whose mark is not in the map yet carries traffic to the MR, which the marks do not check; packets
    // from a CoA not yet in the map are dropped as they were before). What goes away is deleted after
    // this update returns, i.e. after the BA (deferDeletes).
    this.inSync = false;
    const done = await Promise.allSettled([
      nftAdds.length > 0 ? this.kernel.nft(nftAdds) : undefined,
      this.routes(ops),
    ]);
    for (const d of done) if (d.status === 'rejected') throw d.reason;

    for (const [hoa, { old, neu }] of touched) {
      for (const d of old?.dsts ?? []) if (this.owners.get(d) === hoa) this.owners.delete(d);
      if (neu) {
        this.entries.set(hoa, neu);
        for (const d of neu.dsts) this.owners.set(d, hoa);
      } else this.entries.delete(hoa);
    }
    for (const [coa, n] of refs) {
      if (n > 0) {
        this.refs.set(coa, n);
        this.marks.set(coa, marks.get(coa)!);
      } else {
        this.refs.delete(coa);
        this.marks.delete(coa);
      }
    }
    for (const l of newLengths) this.lengths.add(l);
    this.inSync = true;
    if (dels.length > 0) this.deferDeletes(dels);
  }

  /**
   * Delete set and map elements as the next job of the serial queue, so the caller (the home agent,
   * which answers the BU when update() returns) does not wait for the kernel's RCU grace period that
   * every deleting nftables transaction takes (~12 ms here; bench/profiles/outage.md). Until then a
   * binding's previous CoA still passes the source check, for a few ms after the BA. A failure makes the
   * next call reconcile.
   */
  private deferDeletes(ops: readonly NftOp[]): void {
    void this.queue.run(() =>
      this.kernel.nft(ops).catch((err) => {
        this.inSync = false;
        this.logger?.warn({ err }, 'deferred nftables deletes failed; the next update reconciles');
      }),
    );
  }
}
