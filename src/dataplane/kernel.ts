// The kernel as the data plane backends see it: typed values in, typed values out (STYLE: wireguard-go's
// tun.Device, tailscale's Router). A backend says which routes, rules, nftables elements and tc programs
// it wants; `Iproute2Kernel` (iproute2.ts) turns them into `ip`, `tc`, `bridge` and `nft` commands and is
// tested against the real kernel in namespaces (test/kernel.test.ts); `FakeKernel` (fake-kernel.ts)
// holds them as values for unit tests and records every operation.
//
// Everything offlink installs carries the routing protocol number RT_PROTO, so reading, reconciling and
// flushing see only offlink's routes and rules and never touch anyone else's.
import { OfflinkError } from '../errors.ts';
import { parseAnyDestination } from '../protocol/address.ts';
import { type Family, familyOf } from './family.ts';

/** `proto 241` on every route and rule offlink installs (not in /etc/iproute2/rt_protos: free for local use). */
export const RT_PROTO = 241;

/** A routing table: a number, or one of the kernel's named tables. */
export type TableId = number | 'main' | 'local' | 'default';

/** How a route sends packets on. */
export type Encap =
  /** `encap seg6 mode encap.red` with one segment: a plain outer IPv6 header (RFC 2473), no routing header. */
  | { type: 'seg6'; segment: string }
  /** `encap seg6local action End.DX6`: strip the outer header and route the inner packet. */
  | { type: 'seg6local'; action: 'End.DX6' }
  /** `encap bpf xmit`: the eBPF encapsulation program, loaded with this daemon's bpffs. */
  | { type: 'bpf'; object: string; section: string; headroom: number; bpffs: string };

/**
 * A route offlink installs (always with RT_PROTO). IPv6, or IPv4 when `dst` is IPv4 text (RFC 5555 dual-stack
 * mobile networks; only the bpf encapsulation carries IPv4): it then goes to the IPv4 table of that number.
 */
export interface Route {
  /** Canonical prefix (`::/0`, `0.0.0.0/0`: the default route). */
  dst: string;
  table: TableId;
  dev: string;
  encap: Encap;
}

/** How an installed route sends packets on, as far as it can be read back ('other': not one of ours). */
export type InstalledEncap =
  | { type: 'seg6'; segment: string }
  | { type: 'seg6local'; action: string }
  | { type: 'bpf' }
  | { type: 'other' };

/** One of offlink's routes as the kernel holds it. */
export interface InstalledRoute {
  /** Canonical prefix (`::/0`: the default route). */
  dst: string;
  table: TableId;
  dev?: string;
  encap?: InstalledEncap;
}

/** A policy rule: IPv6, or IPv4 when `from`/`to` (canonical prefixes) are IPv4 text. */
export interface Rule {
  priority: number;
  from?: string;
  to?: string;
  iif?: string;
  /** Only IPv6-in-IPv6 packets (protocol 41, RFC 2473). */
  tunnelled?: boolean;
  table: TableId;
}

/** A rule as the kernel holds it; `ours`: it carries RT_PROTO. */
export interface InstalledRule extends Rule {
  ours: boolean;
}

/**
 * One change to routes and rules. Each is idempotent: adding what is there, or deleting what is not,
 * succeeds. `owner: 'kernel'` names the kernel's own rule (`lookup local`), which carries no RT_PROTO.
 */
export type NetOp =
  | { op: 'replace-route'; route: Route }
  | { op: 'delete-route'; dst: string; table: TableId }
  /** Our routes of the family (default 6) in the table. */
  | { op: 'flush-routes'; table: TableId | 'all'; family?: Family }
  | { op: 'add-rule'; rule: Rule; owner?: 'kernel' }
  | { op: 'delete-rule'; rule: Rule; owner?: 'kernel' }
  /** The outer source address of seg6 encapsulation ('::': none). */
  | { op: 'set-tunnel-source'; address: string };

/** nftables table families offlink uses. */
export type NftFamily = 'ip6' | 'ip';

/** A named rule of an nftables chain; `counter` names a counted rule (read back by nftTable). */
export interface NftRule {
  statement: string;
  verdict?: 'accept' | 'drop';
  counter?: string;
}

export interface NftChain {
  name: string;
  hook: 'prerouting' | 'forward';
  priority: 'mangle' | 'filter';
  rules: readonly NftRule[];
}

/** A set (`ipv6_addr` or `ipv6_addr . mark`) or a map (`ipv6_addr : mark`). */
export interface NftSet {
  name: string;
  kind: 'set' | 'map';
  type: 'address' | 'address . mark' | 'address : mark';
}

/** An `ip6` table (or `ip`, for IPv4 packets: RFC 5555 dual-stack networks): its sets and chains, and every chain's rules. */
export interface NftTable {
  name: string;
  /** Default ip6. An `ip` table holds chains only (sets are of IPv6 addresses). */
  family?: NftFamily;
  sets: readonly NftSet[];
  chains: readonly NftChain[];
}

/** An element: an address, with the mark for a concatenated set or a map. */
export interface NftElement {
  address: string;
  mark?: number;
}

/** One change to nftables; a list of them is one transaction (packets see all of it or none). */
export type NftOp =
  /** Create the table, sets and chains that are missing (sets keep their elements); rewrite every chain's rules. */
  | { op: 'define-table'; table: NftTable }
  /** Remove the table (of the family, default ip6) if it exists. */
  | { op: 'delete-table'; name: string; family?: NftFamily }
  | { op: 'add-elements'; table: string; set: string; kind: 'set' | 'map'; elements: readonly NftElement[] }
  /** Elements that are not there are no error. */
  | {
      op: 'delete-elements';
      table: string;
      set: string;
      kind: 'set' | 'map';
      elements: readonly NftElement[];
    }
  | { op: 'delete-set'; table: string; set: string };

/** What a table holds: every set's and map's elements, and the packets each counted rule counted. */
export interface NftTableState {
  sets: Map<string, NftElement[]>;
  counters: Record<string, number>;
}

/** The eBPF program of `section` of `object` on `dev`'s tc `hook` (clsact), sharing this daemon's maps. */
export interface TcProgram {
  dev: string;
  hook: 'ingress' | 'egress';
  object: string;
  section: string;
  bpffs: string;
}

/** A tc bpf filter's program as the kernel reports it. */
export interface AttachedProgram {
  id: number;
  name: string;
}

export interface Link {
  name: string;
  index: number;
}

/** An entry of a bridge's forwarding database. */
export interface FdbEntry {
  mac: string;
  /** The port (or the bridge itself, for its own addresses). */
  dev: string;
  master?: string;
  permanent: boolean;
  vlan?: number;
}

/** A change of a forwarding database, as the kernel announces it. */
export interface FdbEvent {
  deleted: boolean;
  mac: string;
  dev: string;
  master: string;
}

/** A running watch; `stop()` ends it, `exited` resolves when it ended (by stop() or on its own). */
export interface Watch {
  stop(): void;
  readonly exited: Promise<unknown>;
}

/** The network kernel of one namespace. */
export interface NetKernel {
  /** Every policy rule of the family (default IPv6). */
  rules(family?: Family): Promise<InstalledRule[]>;
  /** offlink's routes of the family (default IPv6) in `table` (none when the table does not exist). */
  routes(table: TableId | 'all', family?: Family): Promise<InstalledRoute[]>;
  /**
   * Apply `ops` in order, in one go. Ops that fail for a lack of kernel memory are retried (`retried`
   * counts them); others throw KernelOpsError naming each failed op.
   */
  apply(ops: readonly NetOp[]): Promise<{ retried: number }>;
  /** One nftables transaction. */
  nft(ops: readonly NftOp[]): Promise<void>;
  /** What `ip6` table `name` holds, or undefined if there is none. */
  nftTable(name: string): Promise<NftTableState | undefined>;
  /** Attach (or atomically replace) offlink's program on a tc hook. */
  attachProgram(program: TcProgram): Promise<void>;
  /** Remove offlink's program from a tc hook, if there; the clsact qdisc too if nothing else uses it. */
  detachProgram(dev: string, hook: 'ingress' | 'egress'): Promise<void>;
  /** The eBPF programs on a tc hook (none when the device or the hook has none). */
  programs(dev: string, hook: 'ingress' | 'egress'): Promise<AttachedProgram[]>;
  link(name: string): Promise<Link | undefined>;
  /** Links that are bridges, or the ports of one bridge. */
  links(filter: { type: 'bridge' } | { master: string }): Promise<Link[]>;
  fdb(bridge: string): Promise<FdbEntry[]>;
  /** Follow every forwarding-database change; undefined where it cannot (then: poll fdb()). */
  watchFdb(onEvent: (event: FdbEvent) => void): Watch | undefined;
  /** The inode of the network namespace this kernel acts in (names it on this host). */
  netnsInode(): Promise<string>;
}

/** Some ops of an `apply` failed; `failures` names each with the kernel's message. */
export class KernelOpsError extends OfflinkError {
  readonly failures: readonly { op: NetOp; message: string }[];
  constructor(failures: readonly { op: NetOp; message: string }[]) {
    const first = failures.slice(0, 3).map((f) => `${describeOp(f.op)}: ${f.message}`);
    super('ERR_KERNEL_OPS', `${failures.length} kernel operation(s) failed: ${first.join('; ')}`);
    this.failures = failures;
  }
}

/** An op in a few words, for messages and logs. */
export function describeOp(op: NetOp): string {
  switch (op.op) {
    case 'replace-route':
      return `route ${op.route.dst} table ${op.route.table} via ${op.route.encap.type} on ${op.route.dev}`;
    case 'delete-route':
      return `delete route ${op.dst} table ${op.table}`;
    case 'flush-routes':
      return `flush${op.family === 4 ? ' IPv4' : ''} routes table ${op.table}`;
    case 'add-rule':
    case 'delete-rule':
      return `${op.op === 'add-rule' ? 'add' : 'delete'} rule ${ruleKey(op.rule)}`;
    case 'set-tunnel-source':
      return `tunnel source ${op.address}`;
  }
}

/** An address flag that makes an address unfit to register (RFC 4862 states, RFC 8981 temporary). */
export type AddressFlag = 'tentative' | 'deprecated' | 'dadfailed' | 'temporary';

/** An IPv6 address of an interface. */
export interface InterfaceAddress {
  address: string;
  prefixLength: number;
  scope: 'global' | 'link' | 'host' | 'other';
  flags: readonly AddressFlag[];
}

/** A mobile network's guest bridge: no STP, no forwarding delay, no kernel-made link-local. */
export interface BridgeSpec {
  name: string;
  mac: string;
  mtu: number;
}

/**
 * The host side of a mobile router: its guest bridges, their addresses and neighbours, and the uplink's
 * addresses (the care-of address). Every change is idempotent.
 */
export interface LinkKernel {
  /** Create the bridge, or give an existing one the MAC and MTU; true when it was created. */
  ensureBridge(spec: BridgeSpec): Promise<boolean>;
  /** Bring a link up. */
  setUp(name: string): Promise<void>;
  /** Remove a link (none: no error). */
  deleteLink(name: string): Promise<void>;
  /** The IPv6 addresses of `dev` in `scope`, oldest first; none when there is no such device. */
  addresses(dev: string, scope: 'global' | 'link'): Promise<InterfaceAddress[]>;
  /** Add (or refresh) an address, without duplicate address detection. */
  replaceAddress(dev: string, address: string, prefixLength: number): Promise<void>;
  /** Remove an address (absent: no error). */
  deleteAddress(dev: string, address: string, prefixLength: number): Promise<void>;
  /** Forget the IPv6 neighbours learnt on `dev` (no such device: no error). */
  flushNeighbours(dev: string): Promise<void>;
  /** Call `onChange` whenever any IPv6 address changes; undefined where it cannot (then: poll). */
  watchAddresses(onChange: () => void): Watch | undefined;
}

/** A route or rule prefix as canonical text (`2001:db8::1` → `2001:db8::1/128`, `10.1.0.1` → `10.1.0.1/32`). */
export function prefixText(prefix: string): string {
  return parseAnyDestination(prefix).text;
}

/** The address family an op acts in: that of its prefixes (a rule without any, and a flush by default: 6). */
export function opFamily(op: NetOp): Family {
  const v4 = (p: string | undefined) => p !== undefined && familyOf(p) === 4;
  switch (op.op) {
    case 'replace-route':
      return v4(op.route.dst) ? 4 : 6;
    case 'delete-route':
      return v4(op.dst) ? 4 : 6;
    case 'flush-routes':
      return op.family ?? 6;
    case 'add-rule':
    case 'delete-rule':
      return v4(op.rule.from) || v4(op.rule.to) ? 4 : 6;
    case 'set-tunnel-source':
      return 6;
  }
}

/** The family of a rule (its prefixes'; none: IPv6). */
export function ruleFamily(rule: Rule): Family {
  return opFamily({ op: 'add-rule', rule });
}

/** One text per rule, equal for equal rules (to compare). */
export function ruleKey(rule: Rule): string {
  return [
    rule.priority,
    rule.from ?? '',
    rule.to ?? '',
    rule.iif ?? '',
    rule.tunnelled ? 41 : '',
    String(rule.table),
  ].join(' ');
}

export function sameRule(a: Rule, b: Rule): boolean {
  return ruleKey(a) === ruleKey(b);
}

/** The rule without `ours` (to delete it, or to compare). */
export function ruleOf(rule: InstalledRule): Rule {
  const { ours: _ours, ...plain } = rule;
  return plain;
}

/** Ops that add the wanted rules that are missing and delete our rules within `scope` that are not wanted. */
export function syncRules(
  installed: readonly InstalledRule[],
  wanted: readonly Rule[],
  scope: (rule: InstalledRule) => boolean,
): NetOp[] {
  const ops: NetOp[] = [];
  const ours = installed.filter((r) => r.ours);
  for (const rule of ours) {
    if (scope(rule) && !wanted.some((w) => sameRule(w, rule)))
      ops.push({ op: 'delete-rule', rule: ruleOf(rule) });
  }
  for (const w of wanted) if (!ours.some((h) => sameRule(w, h))) ops.push({ op: 'add-rule', rule: w });
  return ops;
}

/**
 * docs/dataplane.md: decapsulation rules (pref 10) must run before local delivery, so the `lookup local`
 * rule moves from pref 0 to pref 1000 (ours, so that flush can move it back).
 */
export function orderLocalRule(installed: readonly InstalledRule[]): NetOp[] {
  const local = installed.filter((r) => r.table === 'local');
  const ops: NetOp[] = [];
  if (!local.some((r) => r.priority === 1000))
    ops.push({ op: 'add-rule', rule: { priority: 1000, table: 'local' } });
  if (local.some((r) => r.priority === 0))
    ops.push({ op: 'delete-rule', rule: { priority: 0, table: 'local' }, owner: 'kernel' });
  return ops;
}

/** Undo orderLocalRule: `lookup local` back at pref 0, and our pref-1000 copy gone. */
export function restoreLocalRule(installed: readonly InstalledRule[]): NetOp[] {
  const local = installed.filter((r) => r.table === 'local');
  const ops: NetOp[] = [];
  if (!local.some((r) => r.priority === 0))
    ops.push({ op: 'add-rule', rule: { priority: 0, table: 'local' }, owner: 'kernel' });
  for (const r of local) if (r.priority === 1000 && r.ours) ops.push({ op: 'delete-rule', rule: ruleOf(r) });
  return ops;
}

/** Ops that delete every rule offlink installed (except the moved `lookup local`) and restore the order. */
export function removeOurRules(installed: readonly InstalledRule[]): NetOp[] {
  const ops: NetOp[] = installed
    .filter((r) => r.ours && !(r.table === 'local' && r.priority === 1000))
    .map((r) => ({ op: 'delete-rule', rule: ruleOf(r) }));
  return [...ops, ...restoreLocalRule(installed)];
}
