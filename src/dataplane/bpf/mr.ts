// Mobile router on the eBPF backend. Per host: the decapsulation program on the uplink, which accepts
// tunnel packets addressed to the CoA only from trusted peers (the home agent; during a handover, the
// old host), and TCP MSS clamping. Per network: `from <MNP> iif <bridge> lookup <N>` rules and a default
// route in table N through the encapsulation program (installed once, at prepare or activation), plus
// map entries MNP → outer header {CoA, HA}. What changes at a handover is map entries only: the old host
// forwards (MNP → {CoA, new CoA}, rewritten in place by the decapsulation program), the new one trusts
// the old CoA, a CoA change re-points the entries. Each active network's bridge gets the fast path that
// hands decapsulated GSO packets straight to the guest's port (offlink.bpf.c `tc/bridge`), with the
// bridge's forwarding database mirrored into a map (fdb.ts).
// Dual-stack networks (RFC 5555): a network's IPv4 prefixes get the same rule and default route in the
// IPv4 tables (`ip -4 rule from <v4 MNP> iif <bridge> lookup <N>`, `0.0.0.0/0 encap bpf` in N); the same
// program tunnels them in IPv6 (next header 4) and decapsulates IPv4 from the HA (Linux >= 6.3, probed).
import { OfflinkError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import { canonicalIPv6 } from '../../protocol/address.ts';
import { defaultOf, type Family, ofFamily } from '../family.ts';
import {
  type InstalledRule,
  type NetKernel,
  type NetOp,
  type Rule,
  removeOurRules,
  syncRules,
} from '../kernel.ts';
import { checkHost, checkRoutes, type MobileRouterDataplaneOptions, type MobileRouterHost } from '../mr.ts';
import { MR_TABLE } from '../nft.ts';
import { SerialQueue } from '../serial.ts';
import type { MobileRouterDataplane, MobileRouterRoutes } from '../types.ts';
import { clampGone, clampTable } from './clamp.ts';
import { FdbMirror } from './fdb.ts';
import type { BpfDataplaneComponents } from './ha.ts';
import type { BpfMaps, Counters } from './maps.ts';
import { BpfProgram } from './program.ts';
import { type BpfSyscalls, decapsulatesIPv4, kernelBpf, NoIPv4DecapError, programObject } from './syscall.ts';

/** What makes a network's rules and route: when it is the same, a re-activation touches only maps. */
function routeKey(r: MobileRouterRoutes): string {
  return [r.uplink, r.bridge, r.table, r.rulePref, ...r.prefixes].join(' ');
}

export class BpfMobileRouterDataplane implements MobileRouterDataplane {
  readonly backend = 'bpf' as const;
  private readonly kernel: NetKernel;
  private readonly logger: Logger | undefined;
  private readonly sys: BpfSyscalls;
  private readonly object: string;
  private readonly mss: number;
  private readonly runDir: string;
  private program: BpfProgram | undefined;
  private host: MobileRouterHost | undefined;
  /** network → routeKey of the rules and route installed for it, and its prefixes then. */
  private readonly installed = new Map<string, { key: string; prefixes: readonly string[] }>();
  /** Bridges with the fast path attached. */
  private readonly fastBridges = new Set<string>();
  private readonly fdb: FdbMirror;
  private readonly queue = new SerialQueue();
  /** Whether the kernel decapsulates IPv4 in IPv6 (probed once, at the first IPv4 prefix). */
  private ipv4: boolean | undefined;

  constructor(components: BpfDataplaneComponents, options: MobileRouterDataplaneOptions = {}) {
    this.kernel = components.kernel;
    this.logger = components.logger;
    this.sys = components.sys ?? kernelBpf();
    this.object = components.object ?? programObject();
    this.mss = options.mss ?? 1400;
    this.runDir = options.runDir ?? '/run/offlink';
    this.fdb = new FdbMirror(
      {
        kernel: components.kernel,
        ...(components.clock ? { clock: components.clock } : {}),
        ...(components.logger ? { logger: components.logger } : {}),
      },
      () => this.program?.maps.fdb,
    );
  }

  async initHost(options: MobileRouterHost): Promise<void> {
    const host = checkHost(options);
    return this.queue.run(async () => {
      if (this.program === undefined || this.host?.uplink !== host.uplink) {
        await this.program?.detach();
        this.program = this.newProgram(host.uplink);
        await this.program.attach();
      }
      await this.kernel.nft(clampTable(MR_TABLE, host.uplink, this.mss));
      const maps = this.program.maps;
      maps.local.replace([host.coa]);
      maps.peers.replace([host.haAddress]);
      this.host = host;
    });
  }

  async activate(routes: MobileRouterRoutes): Promise<void> {
    const r = checkRoutes(routes);
    return this.queue.run(async () => {
      this.requireIPv4(r.prefixes);
      const key = routeKey(r);
      const before = this.installed.get(r.network);
      if (before?.key !== key) {
        const ops = await this.familyOps(r, 6, true);
        // IPv4 only where the network has (or had) IPv4 prefixes: an IPv6-only network's ops stay as they were
        const v4 = await this.familyOps(r, 4, ofFamily(r.prefixes, 4).length > 0);
        await this.kernel.apply([...ops, ...v4]);
        this.installed.set(r.network, { key, prefixes: r.prefixes });
      }
      if (!this.fastBridges.has(r.bridge)) {
        await this.requireProgram().attachBridge(r.bridge);
        this.fastBridges.add(r.bridge);
      }
      await this.fdb.watch(r.bridge);
      const { encapSrc, encapDst } = this.maps();
      encapSrc.setMany(r.prefixes.map((p) => [p, { src: r.coa, dst: r.haAddress }]));
      for (const p of r.prefixes) encapDst.delete(p); // a forwarding to another host ends
      // a prefix the network no longer has is no longer tunnelled
      for (const p of before?.prefixes ?? []) if (!r.prefixes.includes(p)) encapSrc.delete(p);
    });
  }

  async deactivate(routes: MobileRouterRoutes): Promise<void> {
    const r = checkRoutes(routes);
    return this.queue.run(async () => {
      if (this.program) {
        const { encapSrc, encapDst } = this.program.maps;
        for (const p of r.prefixes) {
          encapSrc.delete(p);
          encapDst.delete(p);
        }
      }
      const ops = [...(await this.familyOps(r, 6, false)), ...(await this.familyOps(r, 4, false))];
      await this.kernel.apply(ops);
      this.installed.delete(r.network);
      await this.fdb.unwatch(r.bridge);
    });
  }

  /** Handover, old host: the network's packets from the HA go on to `peer`, rewritten in place. */
  async forward(routes: MobileRouterRoutes, peer: string): Promise<void> {
    const r = checkRoutes(routes);
    const to = canonicalIPv6(peer);
    return this.queue.run(async () => {
      this.maps().encapDst.setMany(r.prefixes.map((p) => [p, { src: r.coa, dst: to }]));
    });
  }

  /** Handover, new host: tunnel packets from `peer` (the old host) are decapsulated as from the HA. */
  async acceptTunnelFrom(_host: { coa: string; table: number }, peer: string): Promise<void> {
    const from = canonicalIPv6(peer);
    return this.queue.run(async () => this.maps().peers.add(from));
  }

  /** Remove everything offlink installed on this host. */
  flushHost(): Promise<void> {
    return this.queue.run(async () => {
      const ops = removeOurRules(await this.kernel.rules());
      const v4 = (await this.kernel.rules(4)).filter((k) => k.ours);
      ops.push(...syncRules(v4, [], () => true));
      ops.push({ op: 'flush-routes', table: 'all' }, { op: 'flush-routes', table: 'all', family: 4 });
      await this.kernel.apply(ops);
      await this.kernel.nft(clampGone(MR_TABLE));
      await this.fdb.stop();
      const uplink = this.host?.uplink;
      const program = this.program ?? (uplink ? this.newProgram(uplink) : undefined);
      // the fast path on every bridge (also those of an earlier run, which this process did not attach)
      if (program)
        for (const b of await this.kernel.links({ type: 'bridge' }))
          await this.kernel.detachProgram(b.name, 'egress');
      this.fastBridges.clear();
      await program?.detach();
      this.program = undefined;
      this.host = undefined;
      this.installed.clear();
    });
  }

  async packetCounters(): Promise<Counters> {
    return this.maps().counters();
  }

  private newProgram(uplink: string): BpfProgram {
    return new BpfProgram(
      {
        kernel: this.kernel,
        sys: this.sys,
        object: this.object,
        ...(this.logger ? { logger: this.logger } : {}),
      },
      { role: 'mr', uplink, runDir: this.runDir },
    );
  }

  private requireProgram(): BpfProgram {
    if (!this.program) throw new OfflinkError('ERR_DATAPLANE', 'initHost() must come first');
    return this.program;
  }

  private maps(): BpfMaps {
    return this.requireProgram().maps;
  }

  /**
   * The ops that make the network's rules and default route of one family what they should be: present
   * (`wanted`, for the family's prefixes) or gone. A family with neither rules nor wanted prefixes costs
   * nothing (no ops).
   */
  private async familyOps(r: MobileRouterRoutes, family: Family, wanted: boolean): Promise<NetOp[]> {
    const rules = this.networkRules(r, family);
    const installed = await this.kernel.rules(family);
    const ops = syncRules(installed, wanted ? rules : [], (k) => this.inNetwork(k, r));
    const dst = defaultOf(family);
    if (wanted) {
      const encap = this.requireProgram().encap();
      ops.push({ op: 'replace-route', route: { dst, table: r.table, dev: r.uplink, encap } });
    } else if (family === 6 || ops.length > 0) ops.push({ op: 'delete-route', dst, table: r.table });
    return ops;
  }

  /** Throws NoIPv4DecapError if `prefixes` hold IPv4 ones and this kernel cannot decapsulate them. */
  private requireIPv4(prefixes: readonly string[]): void {
    const v4 = ofFamily(prefixes, 4);
    if (v4.length === 0) return;
    this.ipv4 ??= decapsulatesIPv4(this.sys);
    if (!this.ipv4) throw new NoIPv4DecapError(v4);
  }

  private networkRules(r: MobileRouterRoutes, family: Family): Rule[] {
    return ofFamily(r.prefixes, family).map((p) => ({
      priority: r.rulePref,
      from: p,
      iif: r.bridge,
      table: r.table,
    }));
  }

  /** Our rules that belong to this network: those into its table (each network has its own). */
  private inNetwork(k: InstalledRule, r: MobileRouterRoutes): boolean {
    return k.ours && k.table === r.table;
  }
}
