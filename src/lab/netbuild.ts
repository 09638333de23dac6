// The one builder of namespace networks: `offlink lab` (topology.ts) and every integration test describe
// their network as values — namespaces, bridges, veth pairs, addresses, routes — and `buildNet` makes
// it with iproute2, in a fixed order (namespaces, bridges, links, addresses, routes), so a test's
// topology reads as a table and the lab and the tests share every command that builds them.
import type { CommandRunner } from '../system/runner.ts';

export interface NamespaceSpec {
  name: string;
  /** IPv6 forwarding (routers, hosts, the home agent). Default off. */
  forwarding?: boolean;
  /** More `sysctl -w` settings (`net.ipv6.conf.up0.accept_ra=2`). */
  sysctls?: readonly string[];
}

/** One end of a veth pair. */
export interface LinkEnd {
  ns: string;
  dev: string;
  /** CIDR addresses, added without DAD. */
  addresses?: readonly string[];
  mac?: string;
  mtu?: number;
  /** A bridge in the same namespace to enslave this end to. */
  master?: string;
  /** Bring the end up (default true); false leaves it down for the caller (e.g. until radvd runs). */
  up?: boolean;
  /** Per-interface IPv6 settings (`net.ipv6.conf.<dev>.<key>`), set before the end comes up. */
  ipv6?: Readonly<Record<string, number>>;
  /** Per-interface IPv4 settings (`net.ipv4.conf.<dev>.<key>`), likewise. */
  ipv4?: Readonly<Record<string, number>>;
}

export interface VethSpec {
  a: LinkEnd;
  b: LinkEnd;
}

/** A bridge as the mobile router's guest link makes one: no STP, no forwarding delay; up. */
export interface NetBridgeSpec {
  ns: string;
  name: string;
  mac?: string;
  mtu?: number;
  addresses?: readonly string[];
}

export interface AddressSpec {
  ns: string;
  dev: string;
  /** CIDR, added without DAD. */
  address: string;
}

export interface RouteSpec {
  ns: string;
  /** A prefix or `default` (IPv4 when `to` or `via` is an IPv4 address). */
  to: string;
  via?: string;
  dev?: string;
}

export interface NetSpec {
  namespaces?: readonly NamespaceSpec[];
  bridges?: readonly NetBridgeSpec[];
  veths?: readonly VethSpec[];
  /** Addresses on devices the spec does not make (`lo`) or made by someone else. */
  addresses?: readonly AddressSpec[];
  routes?: readonly RouteSpec[];
}

export interface BuildNetOptions {
  signal?: AbortSignal;
  /** Called when `ip netns add` fails (the namespace exists): the caller's error says what to do. */
  onNamespaceExists?: (ns: string, stderr: string) => Error;
}

/** Make `spec`. On failure what was made stays, for the caller's cleanup (which knows the namespaces). */
export async function buildNet(
  spec: NetSpec,
  runner: CommandRunner,
  options: BuildNetOptions = {},
): Promise<void> {
  const run = (argv: string[]) => runner.run(argv, options.signal ? { signal: options.signal } : {});
  const ip = (ns: string, ...argv: string[]) => run(['ip', '-n', ns, ...argv]);
  for (const n of spec.namespaces ?? []) {
    const made = await runner.run(['ip', 'netns', 'add', n.name], { allowFailure: true });
    if (made.exitCode !== 0) {
      throw (
        options.onNamespaceExists?.(n.name, made.stderr) ??
        new Error(`ip netns add ${n.name}: ${made.stderr.trim()}`)
      );
    }
    await ip(n.name, 'link', 'set', 'lo', 'up');
    await sysctl(run, n.name, [
      'net.ipv6.conf.all.accept_dad=0',
      'net.ipv6.conf.default.accept_dad=0',
      `net.ipv6.conf.all.forwarding=${n.forwarding ? 1 : 0}`,
      ...(n.sysctls ?? []),
    ]);
  }
  for (const b of spec.bridges ?? []) await addBridge(ip, b);
  for (const v of spec.veths ?? []) await addVeth(run, ip, v);
  for (const a of spec.addresses ?? []) await addAddress(ip, a.ns, a.dev, a.address);
  for (const r of spec.routes ?? []) await addRoute(ip, r);
}

type Ip = (ns: string, ...argv: string[]) => Promise<unknown>;

function sysctl(run: (argv: string[]) => Promise<unknown>, ns: string, settings: readonly string[]) {
  return run(['ip', 'netns', 'exec', ns, 'sysctl', '-qw', ...settings]);
}

async function addBridge(ip: Ip, b: NetBridgeSpec): Promise<void> {
  const attrs = [...(b.mac ? ['address', b.mac] : []), ...(b.mtu ? ['mtu', String(b.mtu)] : [])];
  await ip(b.ns, 'link', 'add', b.name, ...attrs, 'type', 'bridge', 'forward_delay', '0', 'stp_state', '0');
  for (const a of b.addresses ?? []) await addAddress(ip, b.ns, b.name, a);
  await ip(b.ns, 'link', 'set', b.name, 'up');
}

async function addVeth(run: (argv: string[]) => Promise<unknown>, ip: Ip, v: VethSpec): Promise<void> {
  await run([
    'ip',
    'link',
    'add',
    v.a.dev,
    'netns',
    v.a.ns,
    'type',
    'veth',
    'peer',
    'name',
    v.b.dev,
    'netns',
    v.b.ns,
  ]);
  for (const end of [v.a, v.b]) {
    const attrs = [
      ...(end.mac ? ['address', end.mac] : []),
      ...(end.mtu ? ['mtu', String(end.mtu)] : []),
      ...(end.master ? ['master', end.master] : []),
    ];
    if (attrs.length > 0) await ip(end.ns, 'link', 'set', end.dev, ...attrs);
    const settings = (['ipv6', 'ipv4'] as const).flatMap((family) =>
      Object.entries(end[family] ?? {}).map(
        ([key, value]) => `net.${family}.conf.${end.dev}.${key}=${value}`,
      ),
    );
    if (settings.length > 0) await sysctl(run, end.ns, settings);
    for (const a of end.addresses ?? []) await addAddress(ip, end.ns, end.dev, a);
    if (end.up !== false) await ip(end.ns, 'link', 'set', end.dev, 'up');
  }
}

export function addAddress(ip: Ip, ns: string, dev: string, cidr: string): Promise<unknown> {
  return ip(ns, 'addr', 'add', cidr, 'dev', dev, 'nodad');
}

function addRoute(ip: Ip, r: RouteSpec): Promise<unknown> {
  const family = r.to.includes('.') || r.via?.includes('.') ? '-4' : '-6';
  return ip(
    r.ns,
    family,
    'route',
    'add',
    r.to,
    ...(r.via ? ['via', r.via] : []),
    ...(r.dev ? ['dev', r.dev] : []),
  );
}

/**
 * A namespace on its own subnet behind a router: the veth `dev` ↔ `routerDev`, the router `<subnet>1`,
 * the namespace `<subnet><hostId>` with its default route through the router. `subnet` is a /64 prefix
 * written as `2001:db8:a::`. The star of sites around one router is every testbed's Internet.
 */
export function site(o: {
  router: string;
  routerDev: string;
  ns: string;
  dev: string;
  subnet: string;
  hostId?: string;
  mtu?: number;
  mac?: string;
  up?: boolean;
}): { veth: VethSpec; route: RouteSpec; address: string } {
  const address = `${o.subnet}${o.hostId ?? '2'}`;
  return {
    veth: {
      a: {
        ns: o.ns,
        dev: o.dev,
        addresses: [`${address}/64`],
        ...(o.mtu ? { mtu: o.mtu } : {}),
        ...(o.mac ? { mac: o.mac } : {}),
        ...(o.up === false ? { up: false } : {}),
      },
      b: { ns: o.router, dev: o.routerDev, addresses: [`${o.subnet}1/64`] },
    },
    route: { ns: o.ns, to: 'default', via: `${o.subnet}1` },
    address,
  };
}

/** Rename every namespace in `spec` with `rename` (tests prefix theirs with a unique tag). */
export function renameNamespaces(spec: NetSpec, rename: (ns: string) => string): NetSpec {
  const end = (e: LinkEnd): LinkEnd => ({ ...e, ns: rename(e.ns) });
  return {
    ...(spec.namespaces ? { namespaces: spec.namespaces.map((n) => ({ ...n, name: rename(n.name) })) } : {}),
    ...(spec.bridges ? { bridges: spec.bridges.map((b) => ({ ...b, ns: rename(b.ns) })) } : {}),
    ...(spec.veths ? { veths: spec.veths.map((v) => ({ a: end(v.a), b: end(v.b) })) } : {}),
    ...(spec.addresses ? { addresses: spec.addresses.map((a) => ({ ...a, ns: rename(a.ns) })) } : {}),
    ...(spec.routes ? { routes: spec.routes.map((r) => ({ ...r, ns: rename(r.ns) })) } : {}),
  };
}
