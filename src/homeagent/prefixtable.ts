// The home agent's prefix table and security associations (RFC 3963 §6.1.2, RFC 4285 §5): which mobile
// router an SPI names, which home address it may register, and which prefixes it may claim.

import { parsePrefix, prefixCovers } from '../protocol/address.ts';
import { BaStatus } from '../protocol/constants.ts';
import type { AuthAlgorithm, SecurityAssociation } from '../protocol/types.ts';
import type { MobileRouterConfig } from './config.ts';

export interface MobileRouterEntry {
  name: string;
  homeAddress: string;
  /** Canonical CIDR text. */
  prefixes: readonly string[];
  sa: SecurityAssociation;
}

export type PrefixCheck = { ok: true; prefix: string } | { ok: false; status: number };

const ALGORITHMS: readonly AuthAlgorithm[] = ['hmac-sha1', 'hmac-sha256'];

/**
 * Held in columns rather than as an object per mobile router: a home agent serves 100k of them, and the
 * config's objects (and a SecurityAssociation each) cost ~800 B a router; the columns ~250 B (strings,
 * two map entries, key bytes in one buffer). Entries are built on lookup, once per BU.
 */
export class PrefixTable {
  private readonly spis = new Map<number, number>();
  private readonly hoas = new Map<string, number>();
  private readonly names: string[] = [];
  private readonly homeAddresses: string[] = [];
  private readonly prefixLists: (readonly string[])[] = [];
  private readonly spiOf: Uint32Array;
  private readonly algorithmOf: Uint8Array;
  /** Key i is keys[keyAt[i] .. keyAt[i + 1]). */
  private readonly keyAt: Uint32Array;
  private readonly keys: Buffer;

  constructor(mobileRouters: readonly MobileRouterConfig[]) {
    const n = mobileRouters.length;
    this.spiOf = new Uint32Array(n);
    this.algorithmOf = new Uint8Array(n);
    this.keyAt = new Uint32Array(n + 1);
    let bytes = 0;
    for (const mr of mobileRouters) bytes += mr.key.length;
    this.keys = Buffer.allocUnsafeSlow(bytes);
    mobileRouters.forEach((mr, i) => {
      this.names.push(mr.name);
      this.homeAddresses.push(mr.homeAddress);
      this.prefixLists.push(mr.prefixes.slice()); // exact length: the config's may have spare capacity
      this.spiOf[i] = mr.spi;
      this.algorithmOf[i] = ALGORITHMS.indexOf(mr.algorithm);
      this.keys.set(mr.key, this.keyAt[i]!);
      this.keyAt[i + 1] = this.keyAt[i]! + mr.key.length;
      this.spis.set(mr.spi, i);
      this.hoas.set(mr.homeAddress, i);
    });
  }

  get size(): number {
    return this.spis.size;
  }

  bySpi(spi: number): MobileRouterEntry | undefined {
    const i = this.spis.get(spi);
    return i === undefined ? undefined : this.entry(i);
  }

  /** `hoa` in canonical form. */
  byHomeAddress(hoa: string): MobileRouterEntry | undefined {
    const i = this.hoas.get(hoa);
    return i === undefined ? undefined : this.entry(i);
  }

  private entry(i: number): MobileRouterEntry {
    return {
      name: this.names[i]!,
      homeAddress: this.homeAddresses[i]!,
      prefixes: this.prefixLists[i]!,
      sa: {
        spi: this.spiOf[i]!,
        key: this.keys.subarray(this.keyAt[i]!, this.keyAt[i + 1]!),
        algorithm: ALGORITHMS[this.algorithmOf[i]!]!,
      },
    };
  }

  /**
   * Whether `mr` may claim the prefix of a Mobile Network Prefix option (RFC 3963 §6.1.2). A prefix equal
   * to or inside one of its configured prefixes is authorized; host bits are cleared. Length 0 or > 128
   * is 141 INVALID_PREFIX, anything else outside the table 142 NOT_AUTHORIZED_FOR_PREFIX.
   */
  authorize(mr: MobileRouterEntry, prefix: string, length: number): PrefixCheck {
    if (!Number.isInteger(length) || length < 1 || length > 128)
      return { ok: false, status: BaStatus.INVALID_PREFIX };
    let cidr: string;
    try {
      const p = parsePrefix(`${prefix}/${length}`);
      cidr = `${p.prefix}/${p.length}`;
    } catch {
      return { ok: false, status: BaStatus.INVALID_PREFIX };
    }
    // The configured string when it is the same prefix: bindings then share it instead of holding copies.
    for (const own of mr.prefixes)
      if (prefixCovers(own, cidr)) return { ok: true, prefix: own === cidr ? own : cidr };
    return { ok: false, status: BaStatus.NOT_AUTHORIZED_FOR_PREFIX };
  }
}
