// The guest link of one mobile network (docs/dataplane.md): a bridge with MTU 1460, a MAC derived from the
// network's name, gateway MNP::1 and link-local fe80::1 — identical on every host that may hold the
// network, so a migrated guest's neighbour cache stays valid — plus router advertisements (radvd) that
// run only while this host is active. The bridge exists on standby hosts too.
import { createHash } from 'node:crypto';
import { SerialQueue } from '../dataplane/serial.ts';
import { formatIPv6, isIPv4Text, parseIPv4Destination, parseIPv6, parsePrefix } from '../protocol/address.ts';
import type { HostComponents } from './components.ts';
import type { Dhcp4Config } from './config.ts';
import { Dhcp4Server } from './dhcp4.ts';
import { DEFAULT_RADVD_TIMING, Radvd, type RadvdTiming } from './radvd.ts';

/** seg6 encapsulates on input and cannot send Packet Too Big, so the guest MTU leaves room (docs/dataplane.md). */
export const GUEST_MTU = 1460;
export const GATEWAY_LINK_LOCAL = 'fe80::1';

/** What the mobile router needs of a guest link; unit tests fake it. */
export interface GuestLinkControl {
  /** Create or repair the bridge and its addresses. Idempotent; done on standby hosts too. */
  ensure(): Promise<void>;
  /**
   * Forget neighbour entries on the bridge. Called when this host takes the network over: entries left
   * FAILED or STALE from the last time the guests were here would hold their traffic for hundreds of
   * milliseconds before the kernel resolves them again (measured: ~450 ms on every return to a host).
   */
  flushNeighbours(): Promise<void>;
  /** Start router advertisements, and DHCPv4 when configured (only while active). Idempotent. */
  startAdvertising(): Promise<void>;
  /** Stop router advertisements and DHCPv4. Idempotent. */
  stopAdvertising(): Promise<void>;
  /** Stop advertising and remove the bridge. */
  destroy(): Promise<void>;
}

export interface GuestLinkOptions {
  network: string;
  bridge: string;
  /** The network's MNPs (CIDR, /64 or shorter). */
  prefixes: readonly string[];
  mtu?: number;
  /** Directory for radvd's config and pid files (e.g. /run/offlink). */
  runDir: string;
  radvd?: Partial<RadvdTiming>;
  /** DHCPv4 for the guests (dnsmasq, while active; dhcp4.ts); the network's IPv4 prefixes are its ranges. */
  dhcp4?: Dhcp4Config;
}

/**
 * Locally administered unicast MAC from a stable hash of the network name: the same on every host, so
 * a guest's neighbour entry for its gateway stays right after migration.
 */
export function bridgeMac(network: string): string {
  const h = createHash('sha256').update(`offlink guest link ${network}`).digest();
  h[0] = (h[0]! & 0xfc) | 0x02;
  return [...h.subarray(0, 6)].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** The /64 of an MNP that the guest link uses for SLAAC (the MNP itself when it is a /64). */
export function linkPrefix(mnp: string): string {
  return `${parsePrefix(mnp).address}/64`;
}

/** Gateway address MNP::1 on the link /64. */
export function gatewayAddress(mnp: string): string {
  const bytes = parseIPv6(parsePrefix(mnp).address);
  bytes.fill(0, 8);
  bytes[15] = 1;
  return formatIPv6(bytes);
}

/**
 * IPv4 gateway of a dual-stack network's IPv4 prefix: its first host address (10.1.0.0/24 → 10.1.0.1), on
 * the bridge of every host, with the bridge's MAC, so a guest's default gateway and its ARP entry stay
 * right after migration. IPv4 guests are addressed statically or by DHCP; there is no SLAAC for IPv4.
 */
export function ipv4GatewayAddress(prefix: string): string {
  const { address } = parseIPv4Destination(prefix);
  const octets = address.split('.').map(Number);
  octets[3] = (octets[3] ?? 0) + 1;
  return octets.join('.');
}

export class GuestLink implements GuestLinkControl {
  private readonly radvd: Radvd;
  private dhcp4: Dhcp4Server | undefined;
  /** The advertising daemons start and stop one change at a time (a reload's DHCPv4 change, a handover). */
  private readonly daemons = new SerialQueue();
  private readonly mtu: number;
  private readonly undo: Array<{ what: string; fn: () => Promise<void> }> = [];

  constructor(
    private readonly components: HostComponents,
    private readonly options: GuestLinkOptions,
  ) {
    this.mtu = options.mtu ?? GUEST_MTU;
    this.radvd = new Radvd(components, {
      bridge: options.bridge,
      linkPrefixes: [...new Set(options.prefixes.filter((p) => !isIPv4Text(p)).map(linkPrefix))],
      mtu: this.mtu,
      timing: { ...DEFAULT_RADVD_TIMING, ...options.radvd },
      runDir: options.runDir,
    });
    if (options.dhcp4) this.dhcp4 = this.dhcp4Server(options.dhcp4);
  }

  private dhcp4Server(config: Dhcp4Config): Dhcp4Server {
    return new Dhcp4Server(this.components, {
      bridge: this.options.bridge,
      prefixes: [...new Set(this.options.prefixes.filter(isIPv4Text))],
      mtu: this.mtu,
      config,
      runDir: this.options.runDir,
    });
  }

  /**
   * DHCPv4 settings from a reloaded config: a running dnsmasq restarts with them; DHCPv4 added starts it
   * when the network is active here, removed stops it.
   */
  setDhcp4(config: Dhcp4Config | undefined): Promise<string> {
    return this.daemons.run(() => this.applyDhcp4(config));
  }

  private async applyDhcp4(config: Dhcp4Config | undefined): Promise<string> {
    const server = this.dhcp4;
    if (!config) {
      this.dhcp4 = undefined;
      await server?.stop();
      return server ? 'stopped' : 'unchanged';
    }
    if (server) return server.update(config);
    this.dhcp4 = this.dhcp4Server(config);
    if (!this.radvd.running) return 'stored';
    await this.dhcp4.start();
    return 'started';
  }

  get mac(): string {
    return bridgeMac(this.options.network);
  }

  get advertising(): boolean {
    return this.radvd.running;
  }

  async ensure(): Promise<void> {
    const { kernel } = this.components;
    const br = this.options.bridge;
    if (await kernel.ensureBridge({ name: br, mac: this.mac, mtu: this.mtu }))
      this.undo.push({ what: `bridge ${br}`, fn: () => kernel.deleteLink(br) });
    // a bridge that was up before it lost its kernel-made link-local still carries its EUI-64 one
    for (const a of await kernel.addresses(br, 'link'))
      if (a.address !== GATEWAY_LINK_LOCAL) await kernel.deleteAddress(br, a.address, a.prefixLength);
    await kernel.replaceAddress(br, GATEWAY_LINK_LOCAL, 64);
    for (const p of new Set(this.options.prefixes)) {
      if (isIPv4Text(p)) await kernel.replaceAddress(br, ipv4GatewayAddress(p), Number(p.split('/')[1]));
      else await kernel.replaceAddress(br, gatewayAddress(p), 64);
    }
    await kernel.setUp(br);
  }

  async flushNeighbours(): Promise<void> {
    await this.components.kernel.flushNeighbours(this.options.bridge);
  }

  startAdvertising(): Promise<void> {
    return this.daemons.run(async () => {
      await Promise.all([this.radvd.start(), this.dhcp4?.start()]);
    });
  }

  stopAdvertising(): Promise<void> {
    return this.daemons.run(async () => {
      await Promise.all([this.radvd.stop(), this.dhcp4?.stop()]);
    });
  }

  /** Whether dnsmasq runs (DHCPv4 configured and the network active here). */
  get servingDhcp4(): boolean {
    return this.dhcp4?.running ?? false;
  }

  async destroy(): Promise<void> {
    await this.stopAdvertising();
    for (let u = this.undo.pop(); u !== undefined; u = this.undo.pop()) {
      try {
        await u.fn();
      } catch (err) {
        this.components.logger.warn({ err, what: u.what }, 'guest link: undo failed');
      }
    }
    // A bridge adopted from an earlier run has no undo entry; destroy() removes it all the same.
    await this.components.kernel.deleteLink(this.options.bridge);
  }
}
