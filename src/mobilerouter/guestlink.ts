// The guest link of one mobile network (docs/dataplane.md): a bridge with MTU 1460, a MAC derived from the
// network's name, gateway MNP::1 and link-local fe80::1 — identical on every host that may hold the
// network, so a migrated guest's neighbour cache stays valid — plus router advertisements (radvd) that
// run only while this host is active. The bridge exists on standby hosts too.
import { createHash } from 'node:crypto';
import { formatIPv6, parseIPv6, parsePrefix } from '../protocol/address.ts';
import type { HostComponents } from './process.ts';
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
  /** Start router advertisements (only while active). Idempotent. */
  startAdvertising(): Promise<void>;
  /** Stop router advertisements. Idempotent. */
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

interface AddrInfo {
  local?: string;
  prefixlen?: number;
  scope?: string;
}

export class GuestLink implements GuestLinkControl {
  private readonly radvd: Radvd;
  private readonly mtu: number;
  private readonly undo: Array<{ what: string; fn: () => Promise<void> }> = [];

  constructor(
    private readonly components: HostComponents,
    private readonly options: GuestLinkOptions,
  ) {
    this.mtu = options.mtu ?? GUEST_MTU;
    this.radvd = new Radvd(components, {
      bridge: options.bridge,
      linkPrefixes: [...new Set(options.prefixes.map(linkPrefix))],
      mtu: this.mtu,
      timing: { ...DEFAULT_RADVD_TIMING, ...options.radvd },
      runDir: options.runDir,
    });
  }

  get mac(): string {
    return bridgeMac(this.options.network);
  }

  get advertising(): boolean {
    return this.radvd.running;
  }

  private run(argv: readonly string[], allowFailure = false) {
    return this.components.runner.run(argv, { allowFailure });
  }

  async ensure(): Promise<void> {
    const br = this.options.bridge;
    const mtu = String(this.mtu);
    const exists = (await this.run(['ip', 'link', 'show', 'dev', br], true)).exitCode === 0;
    const bridgeArgs = [
      'address',
      this.mac,
      'mtu',
      mtu,
      'type',
      'bridge',
      'forward_delay',
      '0',
      'stp_state',
      '0',
    ];
    if (exists) {
      await this.run(['ip', 'link', 'set', 'dev', br, ...bridgeArgs]);
    } else {
      await this.run(['ip', 'link', 'add', br, ...bridgeArgs]);
      this.undo.push({ what: `bridge ${br}`, fn: () => this.deleteBridge() });
    }
    // No kernel-generated link-local: the gateway's link-local is fe80::1 on every host.
    await this.run(['ip', 'link', 'set', 'dev', br, 'addrgenmode', 'none']);
    await this.removeStrayLinkLocals();
    await this.run(['ip', '-6', 'addr', 'replace', `${GATEWAY_LINK_LOCAL}/64`, 'dev', br, 'nodad']);
    for (const p of new Set(this.options.prefixes)) {
      await this.run(['ip', '-6', 'addr', 'replace', `${gatewayAddress(p)}/64`, 'dev', br, 'nodad']);
    }
    await this.run(['ip', 'link', 'set', 'dev', br, 'up']);
  }

  /** A bridge that was up before addrgenmode none still carries its EUI-64 link-local. */
  private async removeStrayLinkLocals(): Promise<void> {
    const br = this.options.bridge;
    const out = await this.run(['ip', '-j', '-6', 'addr', 'show', 'dev', br, 'scope', 'link'], true);
    if (out.exitCode !== 0 || out.stdout.trim() === '') return;
    let parsed: Array<{ addr_info?: AddrInfo[] }>;
    try {
      parsed = JSON.parse(out.stdout);
    } catch {
      return;
    }
    for (const a of parsed.flatMap((l) => l.addr_info ?? [])) {
      if (a.local && a.local !== GATEWAY_LINK_LOCAL) {
        await this.run(['ip', '-6', 'addr', 'del', `${a.local}/${a.prefixlen ?? 64}`, 'dev', br], true);
      }
    }
  }

  private async deleteBridge(): Promise<void> {
    await this.run(['ip', 'link', 'del', 'dev', this.options.bridge], true);
  }

  async flushNeighbours(): Promise<void> {
    await this.run(['ip', '-6', 'neigh', 'flush', 'dev', this.options.bridge], true);
  }

  startAdvertising(): Promise<void> {
    return this.radvd.start();
  }

  stopAdvertising(): Promise<void> {
    return this.radvd.stop();
  }

  async destroy(): Promise<void> {
    await this.radvd.stop();
    while (this.undo.length > 0) {
      const u = this.undo.pop()!;
      try {
        await u.fn();
      } catch (err) {
        this.components.logger.warn({ err, what: u.what }, 'guest link: undo failed');
      }
    }
    // A bridge adopted from an earlier run has no undo entry; destroy() removes it all the same.
    await this.deleteBridge();
  }
}
