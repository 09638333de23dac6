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
import { applyChanges, type Entry, touchedBy } from './bindings.ts';
import { checkInterfaceName } from './ifname.ts';
import { type KernelRoute, type KernelRule, RT_PROTO, readRoutes, readRules } from './kernel.ts';
import {
  deleteTableScript,
  elementDiff,
  elementDiffScript,
  emptyElements,
  HA_TABLE,
  type HaElements,
  type HaTableState,
  haTableScript,
  parseHaTable,
} from './nft.ts';
import type { ProcessSpawner } from './process.ts';
import { IpBatch } from './runner.ts';
import { SerialQueue } from './serial.ts';
import type {
  BindingChange,
  CommandRunner,
  HomeAgentDataplane,
  HomeAgentDataplaneOptions,
  TunnelBinding,
} from './types.ts';

export interface DataplaneComponents {
  runner: CommandRunner;
  logger?: Logger;
  /** Long-running processes (the bpf mobile router's `bridge monitor fdb`); without: polling. */
  spawner?: ProcessSpawner;
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
  protected readonly runner: CommandRunner;
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
    this.runner = components.runner;
    this.logger = components.logger;
    checkInterfaceName(options.uplink);
    if (!Number.isInteger(options.table) || options.table <= 0)
      throw new OfflinkError('ERR_CONFIG', `bad table ${options.table}`);
    this.options = { ...options, haAddress: canonicalIPv6(options.haAddress) };
  }

  /** `route replace <dst> …` arguments that send `dst` into the tunnel to `coa`. */
  protected abstract routeArgs(dst: string, coa: string): string[];
  /** The CoA an installed route tunnels to, or undefined if it is not exactly what routeArgs installs. */
  protected abstract routeCoa(route: KernelRoute): string | undefined;
  /** Per-host state: rule order, tunnel source, decapsulation. */
  protected abstract hostSetup(batch: IpBatch, rules: readonly KernelRule[]): Promise<void>;
  protected abstract hostTeardown(batch: IpBatch, rules: readonly KernelRule[]): Promise<void>;
  /** Extra nftables prerouting rules of the backend. */
  protected preRules(): string[] {
    return [];
  }

  init(): Promise<void> {
    return this.queue.run(async () => {
      const batch = new IpBatch();
      await this.hostSetup(batch, await readRules(this.runner));
      await batch.run(this.runner);
      await this.nft(this.tableScript());
    });
  }

  reconcile(bindings: readonly TunnelBinding[]): Promise<void> {
    return this.queue.run(() =>
      this.reconcileAll(
        applyChanges(
          new Map(),
          bindings.map((b) => ({ op: 'set', binding: b })),
        ),
      ),
    );
  }

  update(changes: readonly BindingChange[]): Promise<void> {
    return this.queue.run(async () => {
      if (!this.inSync) {
        await this.reconcileAll(applyChanges(new Map(this.entries), changes));
        return;
      }
      await this.updateSome(changes);
    });
  }

  flush(): Promise<void> {
    return this.queue.run(async () => {
      const batch = new IpBatch();
      batch.add(['route', 'flush', 'table', 'main', 'proto', RT_PROTO]);
      await this.hostTeardown(batch, await readRules(this.runner));
      await this.nft(deleteTableScript(HA_TABLE));
      await batch.run(this.runner);
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

  private async routes(batch: IpBatch): Promise<void> {
    const { retried } = await batch.run(this.runner);
    if (retried > 0)
      this.logger?.info({ lines: batch.size, retried }, 'ip -batch lines retried after ENOMEM');
  }

  protected async nft(script: string): Promise<void> {
    await this.runner.run(['nft', '-f', '-'], { input: script });
  }

  private tableScript(extra: Iterable<number> = []): string {
    const { haAddress, mss } = this.options;
    return haTableScript({
      haAddress,
      mss,
      lengths: [...new Set([...this.lengths, ...extra])],
      preRules: this.preRules(),
    });
  }

  private async readTable(): Promise<HaTableState> {
    const r = await this.runner.run(['nft', '-j', 'list', 'table', 'ip6', HA_TABLE], { allowFailure: true });
    if (r.exitCode === 0) return parseHaTable(r.stdout);
    if (/No such file or directory/.test(r.stderr))
      return { exists: false, elements: emptyElements(), counters: {}, lengths: [] };
    throw new OfflinkError('ERR_COMMAND', `nft list table ip6 ${HA_TABLE}: ${r.stderr.trim()}`);
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
    const [routes, table] = await Promise.all([readRoutes(this.runner, 'main'), this.readTable()]);
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
    let script = this.tableScript();
    const staleLengths = table.lengths.filter((l) => !wantLengths.has(l));
    for (const kind of ['allowed', 'mnp'] as const) for (const l of staleLengths) have[kind].delete(l);
    script += elementDiffScript(have, want);
    for (const l of staleLengths)
      script += `delete set ip6 ${HA_TABLE} allowed_${l}\ndelete set ip6 ${HA_TABLE} mnp_${l}\n`;
    await this.nft(script);

    const wantRoutes = new Map<string, string>();
    for (const e of desired.values()) for (const d of e.dsts) wantRoutes.set(d, e.coa);
    const batch = new IpBatch();
    const seen = new Set<string>();
    for (const r of routes) {
      seen.add(r.dst);
      const coa = wantRoutes.get(r.dst);
      if (coa === undefined) batch.add(['route', 'del', r.dst, 'proto', RT_PROTO], /No such process/);
      else if (this.routeCoa(r) !== coa) batch.add(['route', 'replace', ...this.routeArgs(r.dst, coa)]);
    }
    for (const [dst, coa] of wantRoutes)
      if (!seen.has(dst)) batch.add(['route', 'replace', ...this.routeArgs(dst, coa)]);
    await this.routes(batch);

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
      [...refs.keys()].filter((c) => this.marks.has(c)).map((c) => [c, this.marks.get(c)!]),
    );
    to.coa2id = marks;
    const newLengths = [...to.allowed.keys()].filter((l) => !this.lengths.has(l));
    const { adds, dels } = elementDiff(from, to);
    const script = (newLengths.length > 0 ? this.tableScript(newLengths) : '') + adds;

    const oldRoutes = new Map<string, string>();
    for (const o of olds) for (const d of o.dsts) oldRoutes.set(d, o.coa);
    const batch = new IpBatch();
    const newRoutes = new Set<string>();
    for (const n of news) {
      for (const d of n.dsts) {
        newRoutes.add(d);
        if (oldRoutes.get(d) !== n.coa) batch.add(['route', 'replace', ...this.routeArgs(d, n.coa)]);
      }
    }
    for (const dst of oldRoutes.keys())
      if (!newRoutes.has(dst)) batch.add(['route', 'del', dst, 'proto', RT_PROTO], /No such process/);

    // The elements to add and the routes go in together: neither needs the other (a route towards a CoA
    // whose mark is not in the map yet carries traffic to the MR, which the marks do not check; packets
    // from a CoA not yet in the map are dropped as they were before). What goes away is deleted after
    // this update returns, i.e. after the BA (deferDeletes).
    this.inSync = false;
    const done = await Promise.allSettled([script === '' ? undefined : this.nft(script), this.routes(batch)]);
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
    if (dels !== '') this.deferDeletes(dels);
  }

  /**
   * Delete set and map elements as the next job of the serial queue, so the caller (the home agent,
   * which answers the BU when update() returns) does not wait for the kernel's RCU grace period that
   * every deleting nftables transaction takes (~12 ms here; bench/profiles/outage.md). Until then a
   * binding's previous CoA still passes the source check, for a few ms after the BA. A failure makes the
   * next call reconcile.
   */
  private deferDeletes(script: string): void {
    void this.queue.run(() =>
      this.nft(script).catch((err) => {
        this.inSync = false;
        this.logger?.warn({ err }, 'deferred nftables deletes failed; the next update reconciles');
      }),
    );
  }
}
