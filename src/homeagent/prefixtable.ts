// The home agent's prefix table and security associations (RFC 3963 §6.1.2, RFC 4285 §5): which mobile
// router an SPI names, which home address it may register, and which prefixes it may claim.

import { parsePrefix, prefixCovers } from '../protocol/address.ts';
import { BaStatus } from '../protocol/constants.ts';
import type { SecurityAssociation } from '../protocol/types.ts';
import type { MobileRouterConfig } from './config.ts';

export interface MobileRouterEntry {
  name: string;
  homeAddress: string;
  /** Canonical CIDR text. */
  prefixes: readonly string[];
  sa: SecurityAssociation;
}

export type PrefixCheck = { ok: true; prefix: string } | { ok: false; status: number };

export class PrefixTable {
  private readonly spis = new Map<number, MobileRouterEntry>();
  private readonly hoas = new Map<string, MobileRouterEntry>();

  constructor(mobileRouters: readonly MobileRouterConfig[]) {
    for (const mr of mobileRouters) {
      // The config entry is itself a valid SecurityAssociation (spi, key, algorithm): no copy per MR.
      const entry: MobileRouterEntry = {
        name: mr.name,
        homeAddress: mr.homeAddress,
        prefixes: mr.prefixes,
        sa: mr,
      };
      this.spis.set(mr.spi, entry);
      this.hoas.set(mr.homeAddress, entry);
    }
  }

  get size(): number {
    return this.spis.size;
  }

  bySpi(spi: number): MobileRouterEntry | undefined {
    return this.spis.get(spi);
  }

  /** `hoa` in canonical form. */
  byHomeAddress(hoa: string): MobileRouterEntry | undefined {
    return this.hoas.get(hoa);
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
