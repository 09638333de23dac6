// The mobile router data plane shared by both backends (docs/dataplane.md, "MR (active)"): per network, policy
// rules send the guests' traffic (source in an MNP, arriving on the network's bridge) to the network's
// table, whose default route tunnels to the home agent (RFC 3963 §5.4, reverse tunnelling); per host,
// the decapsulation of what the HA sends to the CoA and TCP MSS clamping.
import { OfflinkError } from '../errors.ts';
import { canonicalIPv6 } from '../protocol/address.ts';
import { mnpText, refuseIPv4 } from './family.ts';
import type { DataplaneComponents } from './ha.ts';
import { checkInterfaceName } from './ifname.ts';
import {
  type Encap,
  type InstalledRule,
  type NetKernel,
  type NetOp,
  type Rule,
  removeOurRules,
  syncRules,
} from './kernel.ts';
import { MR_TABLE, mrTable } from './nft.ts';
import { SerialQueue } from './serial.ts';
import type { MobileRouterDataplane, MobileRouterRoutes } from './types.ts';

export interface MobileRouterDataplaneOptions {
  /** TCP MSS for guests' SYNs (guest MTU 1460 minus 60); 0 disables clamping. Default 1400. */
  mss?: number;
  /** Where the bpf backend mounts its bpffs (`<runDir>/bpf/…`). Default /run/offlink. */
  runDir?: string;
}

export interface MobileRouterHost {
  coa: string;
  haAddress: string;
  uplink: string;
  table: number;
}

export abstract class TunnelMobileRouterDataplane implements MobileRouterDataplane {
  protected readonly kernel: NetKernel;
  protected readonly mss: number;
  private readonly queue = new SerialQueue();

  /** The backend's name (also in errors). */
  abstract readonly backend: string;

  constructor(components: DataplaneComponents, options: MobileRouterDataplaneOptions = {}) {
    this.kernel = components.kernel;
    this.mss = options.mss ?? 1400;
  }

  /** Per-host setup: rule order, tunnel source, decapsulation for `host.coa` (replacing an older CoA's). */
  protected abstract hostSetup(rules: readonly InstalledRule[], host: MobileRouterHost): Promise<NetOp[]>;
  /** Per-host state beyond rules and routes (which flushHost removes). */
  protected abstract hostTeardown(): NetOp[];
  /** How a route tunnels to `peer` (the HA, or another host's CoA). */
  protected abstract tunnelTo(peer: string): Encap;

  async initHost(options: MobileRouterHost): Promise<void> {
    const host = checkHost(options);
    return this.queue.run(async () => {
      await this.kernel.apply(await this.hostSetup(await this.kernel.rules(), host));
      await this.kernel.nft(mrTable({ uplink: host.uplink, mss: this.mss }));
    });
  }

  async activate(routes: MobileRouterRoutes): Promise<void> {
    const r = checkRoutes(routes);
    refuseIPv4(r.prefixes, this.backend);
    return this.queue.run(async () => {
      const rules = await this.kernel.rules();
      // (also ends a forwarding to a peer: its rules are not wanted, and its routes go)
      const ops = syncRules(rules, this.networkRules(r), (k) => this.inNetwork(k, r));
      if (rules.some((k) => this.inNetwork(k, r) && k.iif === r.uplink))
        ops.push(...this.prefixRoutesGone(r));
      ops.push({ op: 'replace-route', route: this.defaultRoute(r) });
      await this.kernel.apply(ops);
    });
  }

  async deactivate(routes: MobileRouterRoutes): Promise<void> {
    const r = checkRoutes(routes);
    return this.queue.run(async () => {
      const ops = syncRules(await this.kernel.rules(), [], (k) => this.inNetwork(k, r));
      ops.push({ op: 'delete-route', dst: '::/0', table: r.table }, ...this.prefixRoutesGone(r));
      await this.kernel.apply(ops);
    });
  }

  /**
   * The network's prefixes, arriving on the uplink (i.e. decapsulated from the HA's tunnel), looked up in
   * the network's table, where a route per prefix tunnels them on to `peer`. One `ip` process: rule and
   * routes go in together. Nothing else changes (the egress route and rules stay).
   */
  async forward(routes: MobileRouterRoutes, peer: string): Promise<void> {
    const r = checkRoutes(routes);
    refuseIPv4(r.prefixes, this.backend);
    const to = canonicalIPv6(peer);
    return this.queue.run(async () => {
      const ops: NetOp[] = r.prefixes.map((p) => ({
        op: 'replace-route',
        route: { dst: p, table: r.table, dev: r.uplink, encap: this.tunnelTo(to) },
      }));
      for (const rule of this.forwardRules(r)) ops.push({ op: 'add-rule', rule });
      await this.kernel.apply(ops);
    });
  }

  private defaultRoute(r: MobileRouterRoutes) {
    return { dst: '::/0', table: r.table, dev: r.uplink, encap: this.tunnelTo(r.haAddress) };
  }

  private forwardRules(r: MobileRouterRoutes): Rule[] {
    return r.prefixes.map((p) => ({ priority: r.rulePref, to: p, iif: r.uplink, table: r.table }));
  }

  /** Per-prefix routes of the network's table (what `forward` added) go. */
  private prefixRoutesGone(r: MobileRouterRoutes): NetOp[] {
    return r.prefixes.map((p) => ({ op: 'delete-route', dst: p, table: r.table }));
  }

  /** Remove everything offlink installed on this host: all networks' rules and routes, decapsulation, nft table. */
  flushHost(): Promise<void> {
    return this.queue.run(async () => {
      const ops = removeOurRules(await this.kernel.rules());
      ops.push({ op: 'flush-routes', table: 'all' }, ...this.hostTeardown());
      await this.kernel.apply(ops);
      await this.kernel.nft([{ op: 'delete-table', name: MR_TABLE }]);
    });
  }

  private networkRules(r: MobileRouterRoutes): Rule[] {
    return r.prefixes.map((p) => ({ priority: r.rulePref, from: p, iif: r.bridge, table: r.table }));
  }

  /** Our non-tunnel rules that belong to this network (its table or its bridge). */
  private inNetwork(k: InstalledRule, r: MobileRouterRoutes): boolean {
    return !k.tunnelled && k.table !== 'local' && (k.table === r.table || k.iif === r.bridge);
  }
}

/** `host` with its addresses canonical; a bad address, interface name or table throws. */
export function checkHost(host: MobileRouterHost): MobileRouterHost {
  return {
    coa: canonicalIPv6(host.coa),
    haAddress: canonicalIPv6(host.haAddress),
    uplink: checkInterfaceName(host.uplink),
    table: checkTable(host.table),
  };
}

export function checkTable(table: number): number {
  if (!Number.isInteger(table) || table <= 0 || table === 253 || table === 254 || table === 255) {
    throw new OfflinkError('ERR_CONFIG', `bad routing table ${table}`);
  }
  return table;
}

export function checkRoutes(r: MobileRouterRoutes): MobileRouterRoutes {
  // pref 10 holds the decapsulation rule, 1000 `lookup local` (see docs/dataplane.md on choosing > 1000)
  if (!Number.isInteger(r.rulePref) || r.rulePref <= 10 || r.rulePref === 1000 || r.rulePref >= 32766) {
    throw new OfflinkError('ERR_CONFIG', `bad rule preference ${r.rulePref}`);
  }
  return {
    ...r,
    haAddress: canonicalIPv6(r.haAddress),
    coa: canonicalIPv6(r.coa),
    uplink: checkInterfaceName(r.uplink),
    bridge: checkInterfaceName(r.bridge),
    prefixes: r.prefixes.map(mnpText),
    table: checkTable(r.table),
  };
}
