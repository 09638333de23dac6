// What an active mobile network holds on its host (docs/dataplane.md, "MR (active)"): the signaling socket bound
// to the care-of address, the per-host decapsulation state for that CoA, the network's egress route and
// rules, and router advertisements on the guest bridge. Each piece is made idempotently and remembered,
// so it can be re-pointed after a CoA change and removed on standby.
import type { MobileRouterDataplane, MobileRouterRoutes } from '../dataplane/types.ts';
import type { Datagram } from '../signaling/udp.ts';
import type { MobileNetworkConfig, MobileRouterHostConfig } from './config.ts';
import type { GuestLinkControl } from './guestlink.ts';
import type { SignalingTransport } from './types.ts';

export class HostAttachment {
  private listening: string | undefined;
  private hostInitFor: string | undefined;
  private routes: MobileRouterRoutes | undefined;
  /** The peer CoA that `forward` tunnels the network's prefixes to, until the routes are re-installed. */
  private forwardingTo: string | undefined;

  constructor(
    private readonly components: {
      transport: SignalingTransport;
      dataplane: MobileRouterDataplane;
      guestLink: GuestLinkControl;
    },
    private readonly options: { network: MobileNetworkConfig; host: MobileRouterHostConfig },
    private readonly onDatagram: (d: Datagram) => void,
  ) {}

  /** The address the signaling socket is bound to, if open. */
  get listeningOn(): string | undefined {
    return this.listening;
  }

  get routesInstalled(): boolean {
    return this.routes !== undefined;
  }

  /** Bind the socket to `coa` so every BU leaves with the care-of address as its outer source. */
  async ensureSocket(coa: string): Promise<void> {
    if (this.listening === coa) return;
    await this.closeSocket();
    await this.components.transport.listen(coa, 0, this.onDatagram);
    this.listening = coa;
  }

  async closeSocket(): Promise<void> {
    if (this.listening === undefined) return;
    this.listening = undefined;
    await this.components.transport.close();
  }

  /** Per-host state for this CoA (shared by every network on the host; the data plane is idempotent). */
  async ensureHost(coa: string): Promise<void> {
    if (this.hostInitFor === coa) return;
    const { host } = this.options;
    await this.components.dataplane.initHost({
      coa,
      haAddress: host.haAddress,
      uplink: host.uplink,
      table: host.decapTable,
    });
    this.hostInitFor = coa;
  }

  /** Egress route + rules for `coa` (re-points them after a CoA change), then router advertisements. */
  async install(coa: string): Promise<void> {
    // prepare() may have done it; a forwarding to another host ends here (the guests are back).
    if (this.routes?.coa !== coa || this.forwardingTo !== undefined) await this.installRoutes(coa);
    await this.components.guestLink.startAdvertising();
  }

  /** Decapsulate what `peer` tunnels to `coa` (the old host of a handover, forwarding). */
  async acceptTunnelFrom(coa: string, peer: string): Promise<void> {
    await this.components.dataplane.acceptTunnelFrom?.({ coa, table: this.options.host.decapTable }, peer);
  }

  /** Tunnel what arrives for the network's prefixes on to `peer`; false where nothing can be. */
  async forward(peer: string): Promise<boolean> {
    if (!this.routes || !this.components.dataplane.forward) return false;
    await this.components.dataplane.forward(this.routes, peer);
    this.forwardingTo = peer;
    return true;
  }

  async installRoutes(coa: string): Promise<void> {
    const { network: n, host } = this.options;
    const routes: MobileRouterRoutes = {
      network: n.name,
      haAddress: host.haAddress,
      coa,
      uplink: host.uplink,
      bridge: n.bridge,
      prefixes: n.prefixes,
      table: n.table,
      rulePref: n.rulePref,
    };
    await this.components.dataplane.activate(routes);
    this.routes = routes;
    this.forwardingTo = undefined;
  }

  /** Stop advertisements and remove the egress route; the socket and the bridge stay. */
  async removeRoutes(): Promise<void> {
    await this.components.guestLink.stopAdvertising();
    const routes = this.routes;
    this.routes = undefined;
    this.forwardingTo = undefined;
    if (routes) await this.components.dataplane.deactivate(routes);
  }

  /** Everything activation made, except the bridge. */
  async teardown(): Promise<void> {
    await this.removeRoutes();
    await this.closeSocket();
  }
}
