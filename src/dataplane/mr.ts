// The mobile router data plane shared by both backends (docs/dataplane.md, "MR (active)"): per network, policy
// rules send the guests' traffic (source in an MNP, arriving on the network's bridge) to the network's
// table, whose default route tunnels to the home agent (RFC 3963 §5.4, reverse tunnelling); per host,
// the decapsulation of what the HA sends to the CoA and TCP MSS clamping.
import { OfflinkError } from '../errors.ts';
import { canonicalIPv6, parseDestination } from '../protocol/address.ts';
import type { DataplaneComponents } from './ha.ts';
import { checkInterfaceName } from './ifname.ts';
import {
  type KernelRule,
  RT_PROTO,
  type RuleSpec,
  readRules,
  restoreLocalRule,
  ruleArgs,
  ruleSpecOf,
  syncRules,
} from './kernel.ts';
import { deleteTableScript, MR_TABLE, mrTableScript } from './nft.ts';
import { IpBatch } from './runner.ts';
import { SerialQueue } from './serial.ts';
import type { CommandRunner, MobileRouterDataplane, MobileRouterRoutes } from './types.ts';

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
  protected readonly runner: CommandRunner;
  protected readonly mss: number;
  private readonly queue = new SerialQueue();

  constructor(components: DataplaneComponents, options: MobileRouterDataplaneOptions = {}) {
    this.runner = components.runner;
    this.mss = options.mss ?? 1400;
  }

  /** Per-host setup: rule order, tunnel source, decapsulation for `host.coa` (replacing an older CoA's). */
  protected abstract hostSetup(
    batch: IpBatch,
    rules: readonly KernelRule[],
    host: MobileRouterHost,
  ): Promise<void>;
  protected abstract hostTeardown(batch: IpBatch, rules: readonly KernelRule[]): Promise<void>;
  /** `route replace default …` arguments (without `table`) that tunnel to the HA. */
  protected abstract defaultRouteArgs(routes: MobileRouterRoutes): string[];
  /** Extra prerouting rules for the host's nftables table. */
  protected preRules(_host: MobileRouterHost): string[] {
    return [];
  }

  async initHost(options: MobileRouterHost): Promise<void> {
    const host = {
      coa: canonicalIPv6(options.coa),
      haAddress: canonicalIPv6(options.haAddress),
      uplink: checkInterfaceName(options.uplink),
      table: checkTable(options.table),
    };
    return this.queue.run(async () => {
      const batch = new IpBatch();
      await this.hostSetup(batch, await readRules(this.runner), host);
      await batch.run(this.runner);
      await this.nft(mrTableScript({ uplink: host.uplink, mss: this.mss, preRules: this.preRules(host) }));
    });
  }

  async activate(routes: MobileRouterRoutes): Promise<void> {
    const r = checkRoutes(routes);
    return this.queue.run(async () => {
      const batch = new IpBatch();
      const rules = await readRules(this.runner);
      // (also ends a forwarding to a peer: its rules are not wanted, and its routes go)
      syncRules(batch, rules, this.networkRules(r), (k) => this.inNetwork(k, r));
      if (rules.some((k) => this.inNetwork(k, r) && ruleSpecOf(k).iif === r.uplink))
        this.flushPrefixRoutes(batch, r);
      batch.add(['route', 'replace', 'default', ...this.defaultRouteArgs(r), 'table', String(r.table)]);
      await batch.run(this.runner);
    });
  }

  async deactivate(routes: MobileRouterRoutes): Promise<void> {
    const r = checkRoutes(routes);
    return this.queue.run(async () => {
      const batch = new IpBatch();
      syncRules(batch, await readRules(this.runner), [], (k) => this.inNetwork(k, r));
      batch.add(['route', 'del', 'default', 'proto', RT_PROTO, 'table', String(r.table)], /No such process/);
      this.flushPrefixRoutes(batch, r);
      await batch.run(this.runner);
    });
  }

  /**
   * The network's prefixes, arriving on the uplink (i.e. decapsulated from the HA's tunnel), looked up in
   * the network's table, where a route per prefix tunnels them on to `peer`. One `ip` process: rule and
   * routes go in together. Nothing else changes (the egress route and rules stay).
   */
  async forward(routes: MobileRouterRoutes, peer: string): Promise<void> {
    const r = checkRoutes(routes);
    const to = canonicalIPv6(peer);
    return this.queue.run(async () => {
      const batch = new IpBatch();
      for (const p of r.prefixes)
        batch.add(['route', 'replace', p, ...this.peerRouteArgs(r, to), 'table', String(r.table)]);
      for (const spec of this.forwardRules(r)) batch.add(['rule', 'add', ...ruleArgs(spec)], /File exists/);
      await batch.run(this.runner);
    });
  }

  /** Tunnel-route arguments (without `table`) towards another host's CoA (for `forward`). */
  protected abstract peerRouteArgs(routes: MobileRouterRoutes, peer: string): string[];

  private forwardRules(r: MobileRouterRoutes): RuleSpec[] {
    return r.prefixes.map((p) => ({ priority: r.rulePref, to: p, iif: r.uplink, table: r.table }));
  }

  /** Per-prefix routes of the network's table (what `forward` added). */
  private flushPrefixRoutes(batch: IpBatch, r: MobileRouterRoutes): void {
    for (const p of r.prefixes)
      batch.add(['route', 'del', p, 'proto', RT_PROTO, 'table', String(r.table)], /No such process/);
  }

  /** Remove everything offlink installed on this host: all networks' rules and routes, decapsulation, nft table. */
  flushHost(): Promise<void> {
    return this.queue.run(async () => {
      const rules = await readRules(this.runner);
      const batch = new IpBatch();
      for (const k of rules) {
        if (k.protocol === RT_PROTO && !(k.table === 'local' && k.priority === 1000)) {
          batch.add(['rule', 'del', ...ruleArgs(ruleSpecOf(k))], /No such file or directory/);
        }
      }
      restoreLocalRule(batch, rules);
      batch.add(['route', 'flush', 'table', 'all', 'proto', RT_PROTO]);
      await this.hostTeardown(batch, rules);
      await batch.run(this.runner);
      await this.nft(deleteTableScript(MR_TABLE));
    });
  }

  private networkRules(r: MobileRouterRoutes): RuleSpec[] {
    return r.prefixes.map((p) => ({ priority: r.rulePref, from: p, iif: r.bridge, table: r.table }));
  }

  /** Our non-tunnel rules that belong to this network (its table or its bridge). */
  private inNetwork(k: KernelRule, r: MobileRouterRoutes): boolean {
    const spec = ruleSpecOf(k);
    return (
      !spec.tunnelled &&
      k.table !== 'local' &&
      (String(spec.table) === String(r.table) || spec.iif === r.bridge)
    );
  }

  protected async nft(script: string): Promise<void> {
    await this.runner.run(['nft', '-f', '-'], { input: script });
  }
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
    prefixes: r.prefixes.map((p) => parseDestination(p).text),
    table: checkTable(r.table),
  };
}
