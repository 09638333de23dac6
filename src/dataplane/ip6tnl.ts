// ip6tnl backend: for kernels with the ip6_tunnel module (CONFIG_IPV6_TUNNEL). NOT EXERCISED AGAINST A
// KERNEL HERE: the development machine has no ip6_tunnel, so this file is tested only by unit tests that
// check the commands it emits (ip6tnl.test.ts). Its data path is untested; run test/dataplane-seg6.test.ts'
// scenarios against it on a kernel that has the module before relying on it.
//
// Choice: ONE collect-metadata ("external") ip6tnl device per host instead of one `ip -6 tunnel` per
// binding. Per-binding devices do not work anyway: the kernel refuses a second ip6ip6 device with the same
// (local, remote) pair, and many bindings share a CoA (one mobile router per network on a host). With the
// external device every tunnel route names its own outer destination, exactly like the seg6 backend:
//   ip link add ofl-tnl type ip6tnl mode ip6ip6 external; ip link set ofl-tnl up
//   HA: ip -6 route <MNP>|<HoA>/128 proto 241 encap ip6 dst <CoA> src <HA> dev ofl-tnl     per binding
//   MR: ip -6 route default proto 241 encap ip6 dst <HA> src <CoA> dev ofl-tnl table <N>   per network
// Packets are RFC 2473 IPv6-in-IPv6 (next header 41), the same as seg6 encap.red puts on the wire.
// Decapsulation needs no rule: the device takes every ip6ip6 packet addressed to a local address, so
// nftables drops tunnelled packets that are not for the tunnel endpoint (HA) or not from the HA (MR).
// The tunnel is a real device, so forwarding sees the inner packet and sends ICMPv6 Packet Too Big for
// oversized ones (RFC 2473 §7); MSS clamping stays on as in DESIGN §4 (harmless, and same behaviour).
// RFC 3963 §6.3's inner-source check is the same nftables table as seg6 (nft.ts): the mark set on the
// outer packet survives decapsulation in the same namespace (skb_scrub_packet keeps it).
import { canonicalAddress } from './addr.ts';
import { TunnelHomeAgentDataplane } from './ha.ts';
import { type KernelRoute, RT_PROTO, tokenAfter } from './kernel.ts';
import { type MobileRouterHost, TunnelMobileRouterDataplane } from './mr.ts';
import type { IpBatch } from './runner.ts';
import type { CommandRunner, MobileRouterRoutes } from './types.ts';

/** The collect-metadata tunnel device. */
export const TUNNEL_DEVICE = 'ofl-tnl';

async function ensureDevice(batch: IpBatch, runner: CommandRunner): Promise<void> {
  const r = await runner.run(['ip', '-j', 'link', 'show', 'dev', TUNNEL_DEVICE], { allowFailure: true });
  if (r.exitCode !== 0)
    batch.add(['link', 'add', 'name', TUNNEL_DEVICE, 'type', 'ip6tnl', 'mode', 'ip6ip6', 'external']);
  batch.add(['link', 'set', TUNNEL_DEVICE, 'up']);
}

function removeDevice(batch: IpBatch): void {
  batch.add(['link', 'del', TUNNEL_DEVICE], /Cannot find device/);
}

/** The tunnel destination of an `encap ip6 … src <src> … dev ofl-tnl` route, or undefined. */
function ip6Target(route: KernelRoute, src: string): string | undefined {
  const t = route.tokens;
  const at = t.indexOf('encap');
  if (at < 0 || t[at + 1] !== 'ip6' || tokenAfter(t, 'dev') !== TUNNEL_DEVICE) return undefined;
  const s = tokenAfter(t, 'src', at);
  const d = tokenAfter(t, 'dst', at);
  if (s === undefined || d === undefined || canonicalAddress(s) !== src) return undefined;
  return canonicalAddress(d);
}

export class Ip6tnlHomeAgentDataplane extends TunnelHomeAgentDataplane {
  protected routeArgs(dst: string, coa: string): string[] {
    return [
      dst,
      'proto',
      RT_PROTO,
      'encap',
      'ip6',
      'dst',
      coa,
      'src',
      this.options.haAddress,
      'dev',
      TUNNEL_DEVICE,
    ];
  }

  protected routeCoa(route: KernelRoute): string | undefined {
    return ip6Target(route, this.options.haAddress);
  }

  protected override preRules(): string[] {
    // the external device would decapsulate packets sent to any of our addresses: only the HA address counts
    return [
      `meta l4proto ipv6 ip6 daddr != ${this.options.haAddress} fib daddr type local counter drop comment "tunnel-to-other-address"`,
    ];
  }

  protected async hostSetup(batch: IpBatch): Promise<void> {
    await ensureDevice(batch, this.runner);
  }

  protected async hostTeardown(batch: IpBatch): Promise<void> {
    removeDevice(batch);
  }
}

export class Ip6tnlMobileRouterDataplane extends TunnelMobileRouterDataplane {
  protected async hostSetup(batch: IpBatch, _rules: unknown, _host: MobileRouterHost): Promise<void> {
    await ensureDevice(batch, this.runner);
  }

  protected async hostTeardown(batch: IpBatch): Promise<void> {
    removeDevice(batch);
  }

  protected override preRules(host: MobileRouterHost): string[] {
    return [
      `meta l4proto ipv6 ip6 saddr != ${host.haAddress} fib daddr type local counter drop comment "not-from-ha"`,
    ];
  }

  protected defaultRouteArgs(r: MobileRouterRoutes): string[] {
    return this.peerRouteArgs(r, r.haAddress);
  }

  // No acceptTunnelFrom: the prerouting rule above drops tunnelled packets not from the HA.
  protected peerRouteArgs(r: MobileRouterRoutes, peer: string): string[] {
    return ['proto', RT_PROTO, 'encap', 'ip6', 'dst', peer, 'src', r.coa, 'dev', TUNNEL_DEVICE];
  }
}
