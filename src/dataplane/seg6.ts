// seg6 backend (docs/dataplane.md): for kernels without ip6_tunnel, like ours. Tunnelling uses the kernel's SRv6
// lightweight tunnels: `encap seg6 mode encap.red` with a single segment puts a plain outer IPv6 header
// (no routing header) in front of the packet, i.e. RFC 2473 IPv6-in-IPv6, and `seg6local End.DX6`
// removes it again. So this backend interoperates with the ip6tnl one on the wire.
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
  type KernelRoute,
  type KernelRule,
  orderLocalRule,
  RT_PROTO,
  readRoutes,
  restoreLocalRule,
  ruleArgs,
  syncRules,
  tokenAfter,
} from './kernel.ts';
import { type MobileRouterHost, TunnelMobileRouterDataplane } from './mr.ts';
import { IpBatch } from './runner.ts';
import type { MobileRouterRoutes } from './types.ts';

const tunnelled = (k: KernelRule) => k.protocol === RT_PROTO && k.priority === 10 && k.ipproto !== undefined;

function decapRoute(addr: string, uplink: string, table: number): string[] {
  return [
    'route',
    'replace',
    `${addr}/128`,
    'proto',
    RT_PROTO,
    'encap',
    'seg6local',
    'action',
    'End.DX6',
    'nh6',
    '::',
    'dev',
    uplink,
    'table',
    String(table),
  ];
}

/** The single segment of an `encap seg6 mode encap.red` route via `dev`, or undefined. */
function seg6Target(route: KernelRoute, dev: string): string | undefined {
  const t = route.tokens;
  if (
    tokenAfter(t, 'encap') !== 'seg6' ||
    tokenAfter(t, 'mode') !== 'encap.red' ||
    tokenAfter(t, 'dev') !== dev
  )
    return undefined;
  if (tokenAfter(t, 'segs') !== '1') return undefined;
  const seg = tokenAfter(t, '[');
  return seg === undefined ? undefined : canonicalIPv6(seg);
}

/** Delete our routes in `table` other than `keep` (e.g. the decapsulation route of a former address). */
async function dropStaleRoutes(
  batch: IpBatch,
  runner: Parameters<typeof readRoutes>[0],
  table: number,
  keep: string,
): Promise<void> {
  for (const r of await readRoutes(runner, table)) {
    if (r.dst !== keep)
      batch.add(['route', 'del', r.dst, 'proto', RT_PROTO, 'table', String(table)], /No such process/);
  }
}

export class Seg6HomeAgentDataplane extends TunnelHomeAgentDataplane {
  readonly backend = 'seg6' as const;
  protected routeArgs(dst: string, coa: string): string[] {
    return [
      dst,
      'proto',
      RT_PROTO,
      'encap',
      'seg6',
      'mode',
      'encap.red',
      'segs',
      coa,
      'dev',
      this.options.uplink,
    ];
  }

  protected routeCoa(route: KernelRoute): string | undefined {
    return seg6Target(route, this.options.uplink);
  }

  protected async hostSetup(batch: IpBatch, rules: readonly KernelRule[]): Promise<void> {
    const { haAddress, uplink, table } = this.options;
    orderLocalRule(batch, rules);
    batch.add(['sr', 'tunsrc', 'set', haAddress]);
    syncRules(batch, rules, [{ priority: 10, to: haAddress, tunnelled: true, table }], tunnelled);
    await dropStaleRoutes(batch, this.runner, table, `${haAddress}/128`);
    batch.add(decapRoute(haAddress, uplink, table));
  }

  protected async hostTeardown(batch: IpBatch, rules: readonly KernelRule[]): Promise<void> {
    syncRules(batch, rules, [], tunnelled);
    batch.add(['route', 'flush', 'table', String(this.options.table), 'proto', RT_PROTO]);
    restoreLocalRule(batch, rules);
    batch.add(['sr', 'tunsrc', 'set', '::']);
  }
}

export class Seg6MobileRouterDataplane extends TunnelMobileRouterDataplane {
  readonly backend = 'seg6' as const;
  protected async hostSetup(
    batch: IpBatch,
    rules: readonly KernelRule[],
    host: MobileRouterHost,
  ): Promise<void> {
    orderLocalRule(batch, rules);
    batch.add(['sr', 'tunsrc', 'set', host.coa]);
    syncRules(
      batch,
      rules,
      [{ priority: 10, from: host.haAddress, to: host.coa, tunnelled: true, table: host.table }],
      tunnelled,
    );
    await dropStaleRoutes(batch, this.runner, host.table, `${host.coa}/128`);
    batch.add(decapRoute(host.coa, host.uplink, host.table));
  }

  protected async hostTeardown(batch: IpBatch): Promise<void> {
    batch.add(['sr', 'tunsrc', 'set', '::']);
  }

  protected defaultRouteArgs(r: MobileRouterRoutes): string[] {
    return this.peerRouteArgs(r, r.haAddress);
  }

  protected peerRouteArgs(r: MobileRouterRoutes, peer: string): string[] {
    return ['proto', RT_PROTO, 'encap', 'seg6', 'mode', 'encap.red', 'segs', peer, 'dev', r.uplink];
  }

  /** The HA's decapsulation rule again, from `peer` (the decapsulation route for the CoA is there). */
  async acceptTunnelFrom(host: { coa: string; table: number }, peer: string): Promise<void> {
    const spec = {
      priority: 10,
      from: canonicalIPv6(peer),
      to: canonicalIPv6(host.coa),
      tunnelled: true,
      table: host.table,
    };
    await new IpBatch().add(['rule', 'add', ...ruleArgs(spec)], /File exists/).run(this.runner);
  }
}
