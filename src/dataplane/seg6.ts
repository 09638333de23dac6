// seg6 backend (docs/dataplane.md): for kernels with SRv6 lightweight tunnels. `encap seg6 mode encap.red`
// with a single segment puts a plain outer IPv6 header (no routing header) in front of the packet, i.e.
// RFC 2473 IPv6-in-IPv6, and `seg6local End.DX6` removes it again: on the wire the same as the bpf backend.
//
// Home agent installs (RFC 3963 §6.3: MNP routes point into the bi-directional tunnel to the CoA):
//   ip -6 rule  pref 1000 lookup local (proto 241), pref 0 removed — decap must run before local delivery
//   ip sr tunsrc set <HA>                                  outer source of every tunnelled packet
//   ip -6 rule  pref 10 to <HA> ipproto 41 lookup <T>      + <HA>/128 End.DX6 route in table <T>
//   ip -6 route <MNP>|<HoA>/128 proto 241 encap seg6 mode encap.red segs <CoA> dev <uplink>   per binding
//   nft table ip6 offlink (nft.ts): registered-CoA filter, inner-source check, MSS clamping
// Mobile router installs (the reverse tunnel, RFC 3963 §5.4):
//   the same rule order; ip sr tunsrc set <CoA>; pref 10 from <HA> to <CoA> ipproto 41 lookup <T>
//   + <CoA>/128 End.DX6 in <T>; per network: pref <P> from <MNP> iif <bridge> lookup <N>,
//   default encap seg6 mode encap.red segs <HA> dev <uplink> table <N>; nft table ip6 offlink-mr (clamping).
//
// MTU: seg6 encapsulates on input, before forwarding, so an oversized packet is dropped after
// encapsulation without an ICMPv6 Packet Too Big to its sender (RFC 2473 §7 cannot be honoured); hence
// the guest MTU of 1460 and TCP MSS clamping (docs/dataplane.md).

import { canonicalIPv6 } from '../protocol/address.ts';
import { TunnelHomeAgentDataplane } from './ha.ts';
import {
  type Encap,
  type InstalledRoute,
  type InstalledRule,
  type NetKernel,
  type NetOp,
  orderLocalRule,
  type Route,
  restoreLocalRule,
  syncRules,
} from './kernel.ts';
import { type MobileRouterHost, TunnelMobileRouterDataplane } from './mr.ts';

const tunnelled = (k: InstalledRule) => k.ours && k.priority === 10 && k.tunnelled === true;

const tunnelTo = (segment: string): Encap => ({ type: 'seg6', segment });

/** The End.DX6 route that decapsulates what is tunnelled to `addr`. */
function decapRoute(addr: string, uplink: string, table: number): Route {
  return { dst: `${addr}/128`, table, dev: uplink, encap: { type: 'seg6local', action: 'End.DX6' } };
}

/** Delete our routes in `table` other than `keep` (e.g. the decapsulation route of a former address). */
async function staleRoutesGone(kernel: NetKernel, table: number, keep: string): Promise<NetOp[]> {
  return (await kernel.routes(table))
    .filter((r) => r.dst !== keep)
    .map((r) => ({ op: 'delete-route', dst: r.dst, table }));
}

/** Per host: `lookup local` after the decapsulation rule, seg6's outer source, decapsulation for `addr`. */
async function decapsulation(
  kernel: NetKernel,
  rules: readonly InstalledRule[],
  host: { addr: string; from?: string; uplink: string; table: number },
): Promise<NetOp[]> {
  const { addr, uplink, table } = host;
  const from = host.from === undefined ? {} : { from: `${host.from}/128` };
  const rule = { priority: 10, ...from, to: `${addr}/128`, tunnelled: true, table };
  return [
    ...orderLocalRule(rules),
    { op: 'set-tunnel-source', address: addr },
    ...syncRules(rules, [rule], tunnelled),
    ...(await staleRoutesGone(kernel, table, `${addr}/128`)),
    { op: 'replace-route', route: decapRoute(addr, uplink, table) },
  ];
}

export class Seg6HomeAgentDataplane extends TunnelHomeAgentDataplane {
  readonly backend = 'seg6' as const;

  protected route(dst: string, coa: string): Route {
    return { dst, table: 'main', dev: this.options.uplink, encap: tunnelTo(coa) };
  }

  protected routeCoa(route: InstalledRoute): string | undefined {
    if (route.dev !== this.options.uplink || route.encap?.type !== 'seg6') return undefined;
    return route.encap.segment;
  }

  protected hostSetup(rules: readonly InstalledRule[]): Promise<NetOp[]> {
    const { haAddress, uplink, table } = this.options;
    return decapsulation(this.kernel, rules, { addr: haAddress, uplink, table });
  }

  protected hostTeardown(rules: readonly InstalledRule[]): NetOp[] {
    return [
      ...syncRules(rules, [], tunnelled),
      { op: 'flush-routes', table: this.options.table },
      ...restoreLocalRule(rules),
      { op: 'set-tunnel-source', address: '::' },
    ];
  }
}

export class Seg6MobileRouterDataplane extends TunnelMobileRouterDataplane {
  readonly backend = 'seg6' as const;

  protected hostSetup(rules: readonly InstalledRule[], host: MobileRouterHost): Promise<NetOp[]> {
    const { coa, haAddress, uplink, table } = host;
    return decapsulation(this.kernel, rules, { addr: coa, from: haAddress, uplink, table });
  }

  protected hostTeardown(): NetOp[] {
    return [{ op: 'set-tunnel-source', address: '::' }];
  }

  protected tunnelTo(peer: string): Encap {
    return tunnelTo(peer);
  }

  /** The HA's decapsulation rule again, from `peer` (the decapsulation route for the CoA is there). */
  async acceptTunnelFrom(host: { coa: string; table: number }, peer: string): Promise<void> {
    const rule = {
      priority: 10,
      from: `${canonicalIPv6(peer)}/128`,
      to: `${canonicalIPv6(host.coa)}/128`,
      tunnelled: true,
      table: host.table,
    };
    await this.kernel.apply([{ op: 'add-rule', rule }]);
  }
}
