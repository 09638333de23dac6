// A NetKernel that holds routes, rules, nftables tables, tc programs, links and a forwarding database as
// values, for unit tests (STYLE: tailscale's router test keeps a fake OS state and checks it after each
// config). It records every call as a value, so tests compare typed operations, never command lines.
// The semantics it plays are the kernel's as the backends rely on them (idempotent adds and deletes,
// one nftables transaction all or nothing, an nftables map refusing a second value for a key); the real
// translation is tested against the kernel in test/kernel.test.ts.
import { OfflinkError } from '../errors.ts';
import { type Family, familyOf } from './family.ts';
import {
  type AttachedProgram,
  type BridgeSpec,
  type FdbEntry,
  type FdbEvent,
  type InstalledEncap,
  type InstalledRoute,
  type InstalledRule,
  type InterfaceAddress,
  KernelOpsError,
  type Link,
  type LinkKernel,
  type NetKernel,
  type NetOp,
  type NftElement,
  type NftFamily,
  type NftOp,
  type NftRule,
  type NftSet,
  type NftTableState,
  prefixText,
  type Route,
  ruleFamily,
  sameRule,
  type TableId,
  type TcProgram,
  type Watch,
} from './kernel.ts';

/** One call of the NetKernel interface, as the fake recorded it. */
export type KernelCall =
  | { call: 'rules'; family?: 4 }
  | { call: 'routes'; table: TableId | 'all'; family?: 4 }
  | { call: 'apply'; ops: readonly NetOp[] }
  | { call: 'nft'; ops: readonly NftOp[] }
  | { call: 'nftTable'; name: string }
  | { call: 'attachProgram'; program: TcProgram }
  | { call: 'detachProgram'; dev: string; hook: 'ingress' | 'egress' }
  | { call: 'programs'; dev: string; hook: 'ingress' | 'egress' }
  | { call: 'link'; name: string }
  | { call: 'links'; filter: { type: 'bridge' } | { master: string } }
  | { call: 'fdb'; bridge: string }
  | { call: 'watchFdb' }
  | { call: 'netnsInode' }
  | { call: 'ensureBridge'; spec: BridgeSpec }
  | { call: 'setUp'; name: string }
  | { call: 'deleteLink'; name: string }
  | { call: 'addresses'; dev: string; scope: 'global' | 'link' }
  | { call: 'replaceAddress'; dev: string; address: string; prefixLength: number }
  | { call: 'deleteAddress'; dev: string; address: string; prefixLength: number }
  | { call: 'flushNeighbours'; dev: string }
  | { call: 'watchAddresses' };

interface FakeSet {
  kind: NftSet['kind'];
  /** element key (`address` or `address . mark`; a map: `address`) → element */
  elements: Map<string, NftElement>;
}

/** An nftables table as the fake holds it. */
export interface FakeNftTable {
  sets: Map<string, FakeSet>;
  chains: Map<string, readonly NftRule[]>;
}

/** A link as the fake holds it. */
export interface FakeLink extends Link {
  bridge: boolean;
  master?: string;
  up: boolean;
  mac?: string;
  mtu?: number;
  /** IPv6 addresses, oldest first. */
  addresses: InterfaceAddress[];
}

const WRITES = new Set([
  'apply',
  'nft',
  'attachProgram',
  'detachProgram',
  'ensureBridge',
  'setUp',
  'deleteLink',
  'replaceAddress',
  'deleteAddress',
  'flushNeighbours',
]);

/** The kernel's IPv6 rules in a fresh namespace (IPv6 has no `lookup default` rule). */
function kernelRules(): InstalledRule[] {
  return [
    { priority: 0, table: 'local', ours: false },
    { priority: 32766, table: 'main', ours: false },
  ];
}

export class FakeKernel implements NetKernel, LinkKernel {
  readonly calls: KernelCall[] = [];
  /** `${table} ${dst}` → route */
  readonly routeTable = new Map<string, InstalledRoute>();
  ruleList: InstalledRule[] = kernelRules();
  tunnelSource = '::';
  readonly nftTables = new Map<string, FakeNftTable>();
  /** Packets counted by counted nftables rules, by counter name (what nftTable reports). */
  readonly nftCounters: Record<string, number> = {};
  /** `${dev} ${hook}` → the attached program */
  readonly tc = new Map<string, TcProgram & { id: number }>();
  readonly linkTable = new Map<string, FakeLink>();
  fdbEntries: FdbEntry[] = [];
  /** Whether watchFdb and watchAddresses work (a real kernel without a process spawner cannot). */
  canWatch = true;
  netns = '4026531840';
  /** Fail the op at this index of the next apply (the others are applied, as `ip -force -batch` does). */
  failApply: { at: number; message?: string } | undefined;
  /** Called with the bpffs whenever the eBPF object is loaded (a tc program, a route through it). */
  onLoad: ((bpffs: string) => void) | undefined;
  private readonly watchers = new Set<(event: FdbEvent) => void>();
  private readonly addressWatchers = new Set<() => void>();
  private readonly watchEnds = new Set<() => void>();
  private nextProgramId = 1;

  constructor(options: { onLoad?: (bpffs: string) => void } = {}) {
    this.onLoad = options.onLoad;
    this.addLink('lo', { index: 1 });
  }

  // --- what tests set up and look at

  addLink(
    name: string,
    o: { index?: number; bridge?: boolean; master?: string; addresses?: InterfaceAddress[] } = {},
  ): this {
    const index = o.index ?? this.linkTable.size + 1;
    this.linkTable.set(name, {
      name,
      index,
      bridge: o.bridge ?? false,
      up: true,
      addresses: o.addresses ?? [],
      ...(o.master ? { master: o.master } : {}),
    });
    return this;
  }

  /** Give `dev` these addresses (oldest first) and tell the address watchers, as the kernel would. */
  setAddresses(dev: string, addresses: InterfaceAddress[]): void {
    const link = this.linkTable.get(dev);
    if (!link) throw new Error(`FakeKernel: no link ${dev}`);
    link.addresses = addresses;
    for (const w of this.addressWatchers) w();
  }

  /** Announce a forwarding-database change to the watchers (as `bridge monitor fdb` would). */
  emitFdb(event: FdbEvent): void {
    for (const w of this.watchers) w(event);
  }

  /** The routes of one table, by destination. */
  table(t: TableId): Map<string, InstalledRoute> {
    const out = new Map<string, InstalledRoute>();
    for (const r of this.routeTable.values()) if (String(r.table) === String(t)) out.set(r.dst, r);
    return out;
  }

  /** The calls that changed something (apply, nft, attaching and detaching programs). */
  writes(): KernelCall[] {
    return this.calls.filter((c) => WRITES.has(c.call));
  }

  /** Every NetOp applied since the last clear(), in order. */
  netOps(): NetOp[] {
    return this.calls.flatMap((c) => (c.call === 'apply' ? c.ops : []));
  }

  /** Every NftOp since the last clear(), in order. */
  nftOps(): NftOp[] {
    return this.calls.flatMap((c) => (c.call === 'nft' ? c.ops : []));
  }

  clear(): void {
    this.calls.length = 0;
  }

  /** The elements of an nftables set or map, by key (`address`, or `address . mark` for a set of pairs). */
  elements(table: string, set: string): Map<string, NftElement> | undefined {
    return this.nftTables.get(table)?.sets.get(set)?.elements;
  }

  // --- NetKernel

  /** Rules of the family (IPv4: those with IPv4 prefixes; the kernel's own IPv4 rules are not modelled). */
  async rules(family: Family = 6): Promise<InstalledRule[]> {
    this.calls.push(family === 4 ? { call: 'rules', family } : { call: 'rules' });
    return structuredClone(this.ruleList.filter((r) => ruleFamily(r) === family));
  }

  async routes(table: TableId | 'all', family: Family = 6): Promise<InstalledRoute[]> {
    this.calls.push(family === 4 ? { call: 'routes', table, family } : { call: 'routes', table });
    const all = [...this.routeTable.values()].filter((r) => familyOf(r.dst) === family);
    return structuredClone(table === 'all' ? all : all.filter((r) => String(r.table) === String(table)));
  }

  async apply(ops: readonly NetOp[]): Promise<{ retried: number }> {
    this.calls.push({ call: 'apply', ops: structuredClone(ops) });
    const fail = this.failApply;
    this.failApply = undefined;
    const failures: { op: NetOp; message: string }[] = [];
    ops.forEach((op, i) => {
      if (fail?.at === i) failures.push({ op, message: fail.message ?? 'Invalid argument' });
      else this.applyOne(op);
    });
    if (failures.length > 0) throw new KernelOpsError(failures);
    return { retried: 0 };
  }

  async nft(ops: readonly NftOp[]): Promise<void> {
    this.calls.push({ call: 'nft', ops: structuredClone(ops) });
    const next = new Map([...this.nftTables].map(([k, t]) => [k, cloneTable(t)]));
    for (const op of ops) nftOne(next, op);
    this.nftTables.clear();
    for (const [k, t] of next) this.nftTables.set(k, t);
  }

  async nftTable(name: string): Promise<NftTableState | undefined> {
    this.calls.push({ call: 'nftTable', name });
    const t = this.nftTables.get(name);
    if (!t) return undefined;
    const sets = new Map([...t.sets].map(([n, s]) => [n, structuredClone([...s.elements.values()])]));
    const counters: Record<string, number> = {};
    for (const rules of t.chains.values())
      for (const r of rules)
        if (r.counter !== undefined) counters[r.counter] = this.nftCounters[r.counter] ?? 0;
    return { sets, counters };
  }

  async attachProgram(program: TcProgram): Promise<void> {
    this.calls.push({ call: 'attachProgram', program: { ...program } });
    if (!this.linkTable.has(program.dev))
      throw new OfflinkError('ERR_COMMAND', `Cannot find device "${program.dev}"`);
    this.tc.set(`${program.dev} ${program.hook}`, { ...program, id: this.nextProgramId++ });
    this.onLoad?.(program.bpffs);
  }

  async detachProgram(dev: string, hook: 'ingress' | 'egress'): Promise<void> {
    this.calls.push({ call: 'detachProgram', dev, hook });
    this.tc.delete(`${dev} ${hook}`);
  }

  async programs(dev: string, hook: 'ingress' | 'egress'): Promise<AttachedProgram[]> {
    this.calls.push({ call: 'programs', dev, hook });
    const p = this.tc.get(`${dev} ${hook}`);
    return p ? [{ id: p.id, name: p.section }] : [];
  }

  async link(name: string): Promise<Link | undefined> {
    this.calls.push({ call: 'link', name });
    const l = this.linkTable.get(name);
    return l ? { name: l.name, index: l.index } : undefined;
  }

  async links(filter: { type: 'bridge' } | { master: string }): Promise<Link[]> {
    this.calls.push({ call: 'links', filter });
    return [...this.linkTable.values()]
      .filter((l) => ('type' in filter ? l.bridge : l.master === filter.master))
      .map((l) => ({ name: l.name, index: l.index }));
  }

  async fdb(bridge: string): Promise<FdbEntry[]> {
    this.calls.push({ call: 'fdb', bridge });
    return structuredClone(this.fdbEntries.filter((e) => e.master === bridge || e.dev === bridge));
  }

  watchFdb(onEvent: (event: FdbEvent) => void): Watch | undefined {
    this.calls.push({ call: 'watchFdb' });
    return this.canWatch ? this.watch(this.watchers, onEvent) : undefined;
  }

  async ensureBridge(spec: BridgeSpec): Promise<boolean> {
    this.calls.push({ call: 'ensureBridge', spec: { ...spec } });
    const have = this.linkTable.get(spec.name);
    if (have) {
      Object.assign(have, { bridge: true, mac: spec.mac, mtu: spec.mtu });
      return false;
    }
    this.addLink(spec.name, { bridge: true });
    Object.assign(this.linkTable.get(spec.name) ?? {}, { mac: spec.mac, mtu: spec.mtu, up: false });
    return true;
  }

  async setUp(name: string): Promise<void> {
    this.calls.push({ call: 'setUp', name });
    const link = this.linkTable.get(name);
    if (!link) throw new OfflinkError('ERR_COMMAND', `Cannot find device "${name}"`);
    link.up = true;
  }

  async deleteLink(name: string): Promise<void> {
    this.calls.push({ call: 'deleteLink', name });
    this.linkTable.delete(name);
  }

  async addresses(dev: string, scope: 'global' | 'link'): Promise<InterfaceAddress[]> {
    this.calls.push({ call: 'addresses', dev, scope });
    return structuredClone((this.linkTable.get(dev)?.addresses ?? []).filter((a) => a.scope === scope));
  }

  async replaceAddress(dev: string, address: string, prefixLength: number): Promise<void> {
    this.calls.push({ call: 'replaceAddress', dev, address, prefixLength });
    const link = this.linkTable.get(dev);
    if (!link) throw new OfflinkError('ERR_COMMAND', `Cannot find device "${dev}"`);
    if (link.addresses.some((a) => a.address === address && a.prefixLength === prefixLength)) return;
    const scope = address.startsWith('fe80:') ? 'link' : 'global';
    link.addresses.push({ address, prefixLength, scope, flags: [] });
  }

  async deleteAddress(dev: string, address: string, prefixLength: number): Promise<void> {
    this.calls.push({ call: 'deleteAddress', dev, address, prefixLength });
    const link = this.linkTable.get(dev);
    if (link)
      link.addresses = link.addresses.filter(
        (a) => !(a.address === address && a.prefixLength === prefixLength),
      );
  }

  async flushNeighbours(dev: string): Promise<void> {
    this.calls.push({ call: 'flushNeighbours', dev });
  }

  watchAddresses(onChange: () => void): Watch | undefined {
    this.calls.push({ call: 'watchAddresses' });
    return this.canWatch ? this.watch(this.addressWatchers, onChange) : undefined;
  }

  /** End every watch as if its process died (the watcher must notice and start again). */
  killWatches(): void {
    for (const end of [...this.watchEnds]) end();
  }

  async netnsInode(): Promise<string> {
    this.calls.push({ call: 'netnsInode' });
    return this.netns;
  }

  private watch<F>(set: Set<F>, listener: F): Watch {
    set.add(listener);
    let end = () => {};
    const exited = new Promise<void>((resolve) => {
      end = () => {
        set.delete(listener);
        this.watchEnds.delete(end);
        resolve();
      };
    });
    this.watchEnds.add(end);
    return { stop: () => end(), exited };
  }

  private applyOne(op: NetOp): void {
    switch (op.op) {
      case 'replace-route': {
        const r = installed(op.route);
        this.routeTable.set(`${r.table} ${r.dst}`, r);
        if (op.route.encap.type === 'bpf') this.onLoad?.(op.route.encap.bpffs);
        return;
      }
      case 'delete-route':
        this.routeTable.delete(`${op.table} ${prefixText(op.dst)}`);
        return;
      case 'flush-routes':
        for (const [k, r] of this.routeTable)
          if (
            (op.table === 'all' || String(r.table) === String(op.table)) &&
            familyOf(r.dst) === (op.family ?? 6)
          )
            this.routeTable.delete(k);
        return;
      case 'add-rule': {
        const ours = op.owner !== 'kernel';
        if (this.ruleList.some((r) => r.ours === ours && sameRule(r, op.rule))) return;
        this.ruleList.push({ ...op.rule, ours });
        this.ruleList.sort((a, b) => a.priority - b.priority);
        return;
      }
      case 'delete-rule': {
        // `ip rule del` with protocol 241 matches only ours; without (the kernel's rule), any
        const i = this.ruleList.findIndex((r) => (op.owner === 'kernel' || r.ours) && sameRule(r, op.rule));
        if (i >= 0) this.ruleList.splice(i, 1);
        return;
      }
      case 'set-tunnel-source':
        this.tunnelSource = op.address;
        return;
    }
  }
}

function installed(route: Route): InstalledRoute {
  const encap: InstalledEncap = route.encap.type === 'bpf' ? { type: 'bpf' } : { ...route.encap };
  return { dst: prefixText(route.dst), table: route.table, dev: route.dev, encap };
}

function cloneTable(t: FakeNftTable): FakeNftTable {
  return {
    sets: new Map([...t.sets].map(([k, s]) => [k, { kind: s.kind, elements: new Map(s.elements) }])),
    chains: new Map(t.chains),
  };
}

const nftError = (message: string) => new OfflinkError('ERR_COMMAND', `nft: ${message}`);

/** Tables are held by name; a table of the `ip` family as `ip <name>`. */
export function nftKey(name: string, family: NftFamily | undefined): string {
  return family === 'ip' ? `ip ${name}` : name;
}

/** One op of a transaction on the tables (a throw leaves the committed tables untouched). */
function nftOne(tables: Map<string, FakeNftTable>, op: NftOp): void {
  if (op.op === 'define-table') {
    const key = nftKey(op.table.name, op.table.family);
    const t = tables.get(key) ?? { sets: new Map(), chains: new Map() };
    tables.set(key, t);
    for (const s of op.table.sets)
      if (!t.sets.has(s.name)) t.sets.set(s.name, { kind: s.kind, elements: new Map() });
    for (const c of op.table.chains) t.chains.set(c.name, [...c.rules]);
    return;
  }
  if (op.op === 'delete-table') {
    tables.delete(nftKey(op.name, op.family));
    return;
  }
  const table = tables.get(op.table);
  const set = table?.sets.get(op.set);
  if (!table || !set) throw nftError(`No such file or directory: set ${op.table} ${op.set}`);
  if (op.op === 'delete-set') {
    table.sets.delete(op.set);
    return;
  }
  for (const e of op.elements) {
    const key = set.kind === 'map' || e.mark === undefined ? e.address : `${e.address} . ${e.mark}`;
    // deletes are written add-then-delete, so for a map both refuse a key that holds another value
    const held = set.elements.get(key);
    if (set.kind === 'map' && held !== undefined && held.mark !== e.mark)
      throw nftError(`File exists: ${op.set} ${key}`);
    if (op.op === 'delete-elements') set.elements.delete(key);
    else set.elements.set(key, { ...e });
  }
}
