// The home agent's prefix table and security associations (RFC 3963 §6.1.2, RFC 4285 §5): which mobile
// router an SPI names, which home address it may register, and which prefixes it may claim.

import {
  isIPv4Text,
  mappedPrefix,
  parseIPv4Destination,
  parsePrefix,
  prefixCovers,
} from '../protocol/address.ts';
import { BaStatus, IPv4AckStatus } from '../protocol/constants.ts';
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

/** A PrefixTable as plain data (structured-cloneable): see `PrefixTable.columns`. */
export interface PrefixTableColumns {
  names: string[];
  homeAddresses: string[];
  prefixLists: (readonly string[])[];
  spiOf: Uint32Array<ArrayBuffer>;
  algorithmOf: Uint8Array<ArrayBuffer>;
  keyAt: Uint32Array<ArrayBuffer>;
  keys: Uint8Array<ArrayBuffer>;
}

/**
 * Held in columns rather than as an object per mobile router: a home agent serves 100k of them, and the
 * config's objects (and a SecurityAssociation each) cost ~800 B a router; the columns ~250 B (strings,
 * two map entries, key bytes in one buffer). Entries are built on lookup, once per BU. The config loader
 * fills the table one mobile router at a time (`add`), so the config never exists as 100k objects.
 */
export class PrefixTable {
  private readonly spis = new Map<number, number>();
  private readonly hoas = new Map<string, number>();
  private names: string[] = [];
  private homeAddresses: string[] = [];
  private prefixLists: (readonly string[])[] = [];
  private spiOf = new Uint32Array(16);
  private algorithmOf = new Uint8Array(16);
  /** Key i is keys[keyAt[i] .. keyAt[i + 1]). */
  private keyAt = new Uint32Array(17);
  private keys: Buffer = Buffer.alloc(0);

  constructor(mobileRouters: Iterable<MobileRouterConfig> = []) {
    for (const mr of mobileRouters) this.add(mr);
    this.trim();
  }

  /**
   * Append a mobile router; its SPI and home address must not be in the table yet (the config loader
   * reports duplicates with their key paths). Returns its index.
   */
  add(mr: MobileRouterConfig): number {
    const i = this.names.length;
    if (this.spis.has(mr.spi) || this.hoas.has(mr.homeAddress))
      throw new Error(`PrefixTable: SPI ${mr.spi} or home address ${mr.homeAddress} already present`);
    if (i === this.spiOf.length) this.grow(Math.max(16, 2 * i));
    const end = this.keyAt[i]! + mr.key.length;
    if (end > this.keys.length) this.keys = resized(this.keys, Math.max(end, 2 * this.keys.length));
    const hoa = flat(mr.homeAddress);
    this.names.push(flat(mr.name));
    this.homeAddresses.push(hoa);
    this.prefixLists.push(mr.prefixes.map(flat)); // exact length: the config's may have spare capacity
    this.spiOf[i] = mr.spi;
    this.algorithmOf[i] = ALGORITHMS.indexOf(mr.algorithm);
    this.keys.set(mr.key, this.keyAt[i]!);
    this.keyAt[i + 1] = end;
    this.spis.set(mr.spi, i);
    this.hoas.set(hoa, i);
    return i;
  }

  /**
   * The columns, for another thread to rebuild the table from (`fromColumns`): what the config loader's
   * worker sends back (configload.ts). The typed arrays are copies the caller may transfer.
   */
  columns(): PrefixTableColumns {
    this.trim();
    const keys = new Uint8Array(this.keys.length);
    keys.set(this.keys);
    return {
      names: this.names,
      homeAddresses: this.homeAddresses,
      prefixLists: this.prefixLists,
      spiOf: this.spiOf.slice(),
      algorithmOf: this.algorithmOf.slice(),
      keyAt: this.keyAt.slice(),
      keys,
    };
  }

  /** The table whose `columns()` these are (checked for consistent lengths, not validated again). */
  static fromColumns(c: PrefixTableColumns): PrefixTable {
    const n = c.names.length;
    if (
      c.homeAddresses.length !== n ||
      c.prefixLists.length !== n ||
      c.spiOf.length !== n ||
      c.algorithmOf.length !== n ||
      c.keyAt.length !== n + 1 ||
      c.keyAt[n] !== c.keys.length
    )
      throw new Error('PrefixTable.fromColumns: columns of different lengths');
    const t = new PrefixTable();
    t.names = c.names;
    t.homeAddresses = c.homeAddresses;
    t.prefixLists = c.prefixLists;
    t.spiOf = c.spiOf;
    t.algorithmOf = c.algorithmOf;
    t.keyAt = c.keyAt;
    t.keys = Buffer.from(c.keys.buffer, c.keys.byteOffset, c.keys.length);
    for (let i = 0; i < n; i++) {
      t.spis.set(c.spiOf[i]!, i);
      t.hoas.set(c.homeAddresses[i]!, i);
    }
    return t;
  }

  /** Give back the columns' spare capacity, once every mobile router is in. */
  trim(): void {
    const n = this.names.length;
    if (n < this.spiOf.length) this.grow(n);
    const bytes = this.keyAt[n]!;
    if (bytes < this.keys.length) this.keys = resized(this.keys, bytes);
  }

  private grow(capacity: number): void {
    const n = this.names.length;
    const copy = <T extends Uint32Array | Uint8Array>(a: T, make: (size: number) => T, size: number) => {
      const out = make(size);
      out.set(a.subarray(0, Math.min(a.length, size)));
      return out;
    };
    this.spiOf = copy(this.spiOf, (k) => new Uint32Array(k), capacity);
    this.algorithmOf = copy(this.algorithmOf, (k) => new Uint8Array(k), capacity);
    this.keyAt = copy(this.keyAt, (k) => new Uint32Array(k), Math.max(capacity, n) + 1);
  }

  /** Index of the mobile router with this SPI. */
  indexOfSpi(spi: number): number | undefined {
    return this.spis.get(spi);
  }

  /** Index of the mobile router with this home address (canonical form). */
  indexOfHomeAddress(hoa: string): number | undefined {
    return this.hoas.get(hoa);
  }

  /** The mobile router at `index` (0 ≤ index < size), in the order they were added. */
  at(index: number): MobileRouterEntry {
    return this.entry(index);
  }

  nameAt(index: number): string {
    return this.names[index]!;
  }

  prefixesAt(index: number): readonly string[] {
    return this.prefixLists[index]!;
  }

  get size(): number {
    return this.names.length;
  }

  /** Every prefix and home address (as a /128) a binding may claim: what the tunnel must be able to carry. */
  destinations(): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.names.length; i++)
      out.push(...this.prefixLists[i]!, `${this.homeAddresses[i]}/128`);
    return out;
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
      cidr = parsePrefix(`${prefix}/${length}`).text;
    } catch {
      return { ok: false, status: BaStatus.INVALID_PREFIX };
    }
    // The configured string when it is the same prefix: bindings then share it instead of holding copies.
    for (const own of mr.prefixes)
      if (!isIPv4Text(own) && prefixCovers(own, cidr)) return { ok: true, prefix: own === cidr ? own : cidr };
    return { ok: false, status: BaStatus.NOT_AUTHORIZED_FOR_PREFIX };
  }

  /**
   * Whether `mr` may claim the IPv4 prefix of an IPv4 Home Address option with the P flag (RFC 5555
   * §3.1.1, §4): equal to or inside one of its configured IPv4 prefixes. The status is the IPv4 Address
   * Acknowledgement's: 131 for an address or length that is not one, 133 for a prefix outside the table.
   */
  authorizeIPv4(mr: MobileRouterEntry, address: string, length: number): PrefixCheck {
    if (!Number.isInteger(length) || length < 1 || length > 32)
      return { ok: false, status: IPv4AckStatus.INVALID_IPV4_ADDRESS };
    let cidr: string;
    try {
      cidr = parseIPv4Destination(`${address}/${length}`).text;
    } catch {
      return { ok: false, status: IPv4AckStatus.INVALID_IPV4_ADDRESS };
    }
    const mapped = mappedPrefix(cidr);
    for (const own of mr.prefixes)
      if (isIPv4Text(own) && prefixCovers(mappedPrefix(own), mapped))
        return { ok: true, prefix: own === cidr ? own : cidr };
    return { ok: false, status: IPv4AckStatus.PREFIX_ALLOCATION_UNAUTHORIZED };
  }
}

/**
 * `text` as one flat string, shared with every other use of the same text (V8 internalizes property
 * keys). Config strings are built by concatenation (canonical addresses, `prefix/length`): V8 keeps those
 * as trees of pieces, ~2× the bytes of the text, and the table and the bindings keep them for the
 * daemon's life (100k MRs: 12 MB less, bench/profiles/ha-memory.md).
 */
function flat(text: string): string {
  return Object.keys({ [text]: 0 })[0]!;
}

/** A copy of `buf` in a buffer of `size` bytes, off Node's shared pool (a long-lived table). */
function resized(buf: Buffer, size: number): Buffer {
  const out = Buffer.allocUnsafeSlow(size);
  buf.copy(out, 0, 0, Math.min(buf.length, size));
  return out;
}
