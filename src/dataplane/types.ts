// The kernel side, as small interfaces (STYLE: wireguard-go's tun.Device, tailscale's Router.Set).
// Core code (homeagent/, mobilerouter/) depends only on these; backends: seg6 (works here), ip6tnl, fake.

/** One home registration as the HA's data plane sees it. */
export interface TunnelBinding {
  /** Home address (the binding's key). */
  hoa: string;
  /** Current care-of address: the outer destination of tunnelled packets. */
  coa: string;
  /**
   * Mobile network prefixes in CIDR form ("2001:db8:100::/64"); IPv4 prefixes of a dual-stack network
   * (RFC 5555) in the same list, told apart by their form ("10.1.0.0/24"). Only the bpf backend tunnels
   * IPv4 (seg6 refuses it); the tunnel is IPv6 either way (IPv4 inner packets: next header 4).
   */
  prefixes: readonly string[];
  /**
   * Small positive integer that names the binding in the kernel (nftables mark, docs/dataplane.md). Stable for
   * the binding's life; assigned by the home agent, 1..2^31-1.
   */
  id: number;
}

export type BindingChange = { op: 'set'; binding: TunnelBinding } | { op: 'delete'; binding: TunnelBinding };

/** Home agent data plane (docs/dataplane.md). Every method is idempotent. */
export interface HomeAgentDataplane {
  /** Which backend this is (bpf, seg6; absent for fakes). */
  readonly backend?: string;
  /** Install the per-HA state (rule order, tunnel source, decap rule/route, nftables table). */
  init(): Promise<void>;
  /**
   * Make the kernel hold exactly `bindings`: reads what is installed and adds, replaces or removes the
   * difference. Used on start (after a restart, what expired while down is removed here).
   */
  reconcile(bindings: readonly TunnelBinding[]): Promise<void>;
  /** Apply changes in one batch. A `set` whose CoA changed replaces routes in place (never delete + add). */
  update(changes: readonly BindingChange[]): Promise<void>;
  /** Remove everything this HA installed (`offlink ha flush`). */
  flush(): Promise<void>;
  /** Packets the data plane counted, by name (tunnelled, dropped by reason…); absent where it cannot. */
  packetCounters?(): Promise<Record<string, number>>;
}

export interface HomeAgentDataplaneOptions {
  /** The HA's own address: tunnel endpoint and BU destination. */
  haAddress: string;
  /** Interface towards the mobile routers' care-of addresses. */
  uplink: string;
  /** Routing table for the decapsulation route. */
  table: number;
  /** TCP MSS for SYNs to and from MNPs (guest MTU 1460 minus 60 for headers); 0 disables clamping. */
  mss: number;
  /**
   * Every prefix and home address a binding may claim (the prefix table), IPv4 prefixes included. The bpf
   * backend routes them into the tunnel once, aggregated, so that a binding is only map entries.
   */
  tunnelled?: readonly string[];
  /** Where the bpf backend mounts its bpffs (`<runDir>/bpf/…`). Default /run/offlink. */
  runDir?: string;
}

/** What an active mobile router installs for one network (docs/dataplane.md, "MR (active)"). */
export interface MobileRouterRoutes {
  network: string;
  haAddress: string;
  coa: string;
  uplink: string;
  bridge: string;
  /** The network's prefixes, IPv6 and (dual stack, RFC 5555; bpf backend only) IPv4, as in TunnelBinding. */
  prefixes: readonly string[];
  /** Routing table of this network's egress route (one per network on a host). */
  table: number;
  /** Policy-rule preference for `from <MNP> iif <bridge>`. */
  rulePref: number;
}

/** Mobile router data plane. Every method is idempotent. */
export interface MobileRouterDataplane {
  /** Which backend this is (bpf, seg6; absent for fakes). */
  readonly backend?: string;
  /** Packets the data plane counted, by name; absent where it cannot count. */
  packetCounters?(): Promise<Record<string, number>>;
  /** Per-host state shared by all networks on the host: rule order, decapsulation for the CoA. */
  initHost(options: { coa: string; haAddress: string; uplink: string; table: number }): Promise<void>;
  /** Install (or re-point, e.g. after a CoA change) the network's egress route and rules. */
  activate(routes: MobileRouterRoutes): Promise<void>;
  /** Remove the network's egress route and rules, and any forwarding to a peer (`forward`). */
  deactivate(routes: MobileRouterRoutes): Promise<void>;
  /**
   * Handover, on the host the guests leave: from now on, what arrives from the HA for the network's
   * prefixes goes on through a tunnel to `peer` (the new host's CoA) instead of onto the bridge — the
   * previous router's forwarding of fast handovers (RFC 5568 §4.1), so packets the HA still sends here
   * until it has switched reach the guests. Ends with `deactivate` (or `activate`, if they come back).
   * Absent where the backend cannot.
   */
  forward?(routes: MobileRouterRoutes, peer: string): Promise<void>;
  /**
   * Handover, on the host the guests come to: accept tunnelled packets from `peer` (the old host's CoA)
   * as from the HA, for what it forwards. Replaced by the next `initHost`. Absent where the backend cannot.
   */
  acceptTunnelFrom?(host: { coa: string; table: number }, peer: string): Promise<void>;
}
