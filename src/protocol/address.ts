// IPv6 address and prefix text (RFC 4291 §2.2–2.3) and its canonical form (RFC 5952 §4): the one address
// module of the project (the wire codec, the configs and the data plane alike). Canonical text is also
// what iproute2 and nft print (inet_ntop), so the data plane compares what it wants with what they report
// as text.
import { OfflinkError } from '../errors.ts';

/** Text that is not an IPv6 address (code ERR_INVALID_ADDRESS) or prefix (ERR_INVALID_PREFIX). */
export class AddressError extends OfflinkError {}

const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;
const IPV4_OCTET = /^(?:0|[1-9][0-9]{0,2})$/;

function invalidAddress(text: string, why: string): AddressError {
  return new AddressError('ERR_INVALID_ADDRESS', `invalid IPv6 address ${JSON.stringify(text)}: ${why}`);
}

/** Dotted-quad IPv4 text into 4 octets, or undefined. Leading zeros are refused (octal ambiguity). */
function parseIPv4(text: string): number[] | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  const out: number[] = [];
  for (const p of parts) {
    if (!IPV4_OCTET.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    out.push(n);
  }
  return out;
}

/** Text groups (no "::") into 16-bit values; the last group may be embedded IPv4 (RFC 4291 §2.2 form 3). */
function parseGroups(text: string, parts: string[], allowIPv4: boolean): number[] {
  const groups: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    if (allowIPv4 && i === parts.length - 1 && p.includes('.')) {
      const v4 = parseIPv4(p);
      if (!v4) throw invalidAddress(text, `bad embedded IPv4 part "${p}"`);
      groups.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
    } else {
      if (!HEX_GROUP.test(p)) throw invalidAddress(text, `bad group "${p}"`);
      groups.push(Number.parseInt(p, 16));
    }
  }
  return groups;
}

/**
 * The common forms (hex groups, at most one "::") in one pass over the character codes, or undefined for
 * anything else (embedded IPv4, any error), which the general parser below then handles. Every BU and BA
 * parses several addresses (authenticator, checksum, header), so this is on the home agent's hot path
 * (bench/profiles/ha-core.md).
 */
function parseIPv6Fast(text: string): Uint8Array | undefined {
  const len = text.length;
  if (len < 2 || len > 39) return undefined;
  const out = new Uint8Array(16);
  let n = 0; // groups written
  let gap = -1; // group index where "::" stands
  let i = 0;
  if (text.charCodeAt(0) === 58) {
    if (text.charCodeAt(1) !== 58) return undefined;
    gap = 0;
    i = 2;
    if (len === 2) return out;
  }
  for (;;) {
    let v = 0;
    let digits = 0;
    while (i < len) {
      const code = text.charCodeAt(i);
      const d =
        code >= 48 && code <= 57
          ? code - 48
          : code >= 97 && code <= 102
            ? code - 87
            : code >= 65 && code <= 70
              ? code - 55
              : -1;
      if (d < 0) break;
      v = v * 16 + d;
      digits++;
      i++;
    }
    if (digits === 0 || digits > 4 || n >= 8) return undefined;
    out[2 * n] = v >> 8;
    out[2 * n + 1] = v & 0xff;
    n++;
    if (i === len) break;
    if (text.charCodeAt(i) !== 58) return undefined;
    i++;
    if (i === len) return undefined;
    if (text.charCodeAt(i) === 58) {
      if (gap >= 0) return undefined;
      gap = n;
      i++;
      if (i === len) break;
    }
  }
  if (gap < 0) return n === 8 ? out : undefined;
  if (n > 7) return undefined;
  const tail = (n - gap) * 2;
  out.copyWithin(16 - tail, gap * 2, n * 2);
  out.fill(0, gap * 2, 16 - tail);
  return out;
}

/** IPv6 text (any RFC 4291 §2.2 form, embedded IPv4 included) into 16 octets. */
export function parseIPv6(text: string): Uint8Array {
  if (typeof text !== 'string') throw invalidAddress(String(text), 'not a string');
  const fast = parseIPv6Fast(text);
  if (fast) return fast;
  const halves = text.split('::');
  if (halves.length > 2) throw invalidAddress(text, 'more than one "::"');
  let groups: number[];
  if (halves.length === 2) {
    const head = halves[0] === '' ? [] : halves[0]!.split(':');
    const tail = halves[1] === '' ? [] : halves[1]!.split(':');
    const h = parseGroups(text, head, false);
    const t = parseGroups(text, tail, true);
    // "::" stands for at least one zero group (RFC 4291 §2.2 form 2).
    if (h.length + t.length > 7) throw invalidAddress(text, 'too many groups');
    groups = [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  } else {
    groups = parseGroups(text, text.split(':'), true);
    if (groups.length !== 8) throw invalidAddress(text, 'needs 8 groups');
  }
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    out[i * 2] = groups[i]! >> 8;
    out[i * 2 + 1] = groups[i]! & 0xff;
  }
  return out;
}

/** 16 octets at `offset` as RFC 5952 canonical text. */
export function formatIPv6(buf: Uint8Array, offset = 0): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((buf[offset + i * 2]! << 8) | buf[offset + i * 2 + 1]!);
  // RFC 5952 §5: IPv4-mapped addresses (::ffff:0:0/96) are written in mixed notation.
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    const ipv4At = offset + 12;
    return `::ffff:${buf[ipv4At]}.${buf[ipv4At + 1]}.${buf[ipv4At + 2]}.${buf[ipv4At + 3]}`;
  }
  // RFC 5952 §4.2: compress the longest run of two or more zero groups, the first one on a tie.
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number) => g.slice(from, to).map((x) => x.toString(16));
  if (bestStart < 0) return hex(0, 8).join(':');
  return `${hex(0, bestStart).join(':')}::${hex(bestStart + bestLen, 8).join(':')}`;
}

/**
 * Any IPv6 text in RFC 5952 canonical form; the argument itself when it already is (a home agent keeps
 * 100k of these). Throws ERR_INVALID_ADDRESS.
 */
export function canonicalIPv6(text: string): string {
  const canonical = formatIPv6(parseIPv6(text));
  return canonical === text ? text : canonical;
}

function invalidPrefix(cidr: string, why: string): AddressError {
  return new AddressError('ERR_INVALID_PREFIX', `invalid IPv6 prefix ${JSON.stringify(cidr)}: ${why}`);
}

function parsePrefixBytes(cidr: string): { bytes: Uint8Array; length: number } {
  if (typeof cidr !== 'string') throw invalidPrefix(String(cidr), 'not a string');
  const slash = cidr.indexOf('/');
  if (slash < 0) throw invalidPrefix(cidr, 'missing "/length"');
  const lenText = cidr.slice(slash + 1);
  if (!/^(?:0|[1-9][0-9]{0,2})$/.test(lenText) || Number(lenText) > 128) {
    throw invalidPrefix(cidr, 'length must be 0..128');
  }
  let bytes: Uint8Array;
  try {
    bytes = parseIPv6(cidr.slice(0, slash));
  } catch (err) {
    throw invalidPrefix(cidr, (err as Error).message);
  }
  const length = Number(lenText);
  clearHostBits(bytes, length);
  return { bytes, length };
}

/** Zeroes every bit after the first `length` (RFC 4291 §2.3: the prefix is the leftmost bits). */
function clearHostBits(bytes: Uint8Array, length: number): void {
  for (let i = 0; i < 16; i++) {
    const keep = Math.max(0, Math.min(8, length - i * 8));
    bytes[i] = bytes[i]! & ((0xff00 >> keep) & 0xff);
  }
}

export interface Prefix {
  /** Network address, host bits cleared, canonical text. */
  readonly address: string;
  readonly length: number;
  /** `address/length`, the form `ip` and nft print and accept. */
  readonly text: string;
}

function prefixOf(bytes: Uint8Array, length: number, given: string): Prefix {
  const address = formatIPv6(bytes);
  const text = `${address}/${length}`;
  // Already canonical: keep the caller's string rather than a new copy (the data plane holds many).
  return text === given
    ? { address: given.slice(0, given.lastIndexOf('/')), length, text: given }
    : { address, length, text };
}

/** "2001:DB8::1/64" → { address: "2001:db8::", length: 64, text: "2001:db8::/64" }. Throws ERR_INVALID_PREFIX. */
export function parsePrefix(cidr: string): Prefix {
  const { bytes, length } = parsePrefixBytes(cidr);
  return prefixOf(bytes, length, cidr);
}

/**
 * A route's destination as iproute2 takes and prints it: a prefix, a bare address (a /128) or `default`
 * (::/0). Throws ERR_INVALID_PREFIX.
 */
export function parseDestination(text: string): Prefix {
  if (text === 'default') return { address: '::', length: 0, text: '::/0' };
  if (typeof text === 'string' && !text.includes('/')) {
    let bytes: Uint8Array;
    try {
      bytes = parseIPv6(text);
    } catch (err) {
      throw invalidPrefix(text, (err as Error).message);
    }
    return prefixOf(bytes, 128, `${text}/128`);
  }
  return parsePrefix(text);
}

/** Whether the first `length` bits of a and b are equal. */
function samePrefix(a: Uint8Array, b: Uint8Array, length: number): boolean {
  for (let i = 0; i < 16 && i * 8 < length; i++) {
    const keep = Math.min(8, length - i * 8);
    const mask = (0xff00 >> keep) & 0xff;
    if ((a[i]! & mask) !== (b[i]! & mask)) return false;
  }
  return true;
}

/** Whether `address` lies inside `cidr`. */
export function prefixContains(cidr: string, address: string): boolean {
  const { bytes, length } = parsePrefixBytes(cidr);
  return samePrefix(bytes, parseIPv6(address), length);
}

/** Whether the prefix `innerCidr` lies wholly inside `outerCidr` (equal prefixes cover each other). */
export function prefixCovers(outerCidr: string, innerCidr: string): boolean {
  const outer = parsePrefixBytes(outerCidr);
  const inner = parsePrefixBytes(innerCidr);
  return inner.length >= outer.length && samePrefix(outer.bytes, inner.bytes, outer.length);
}

/** The netmask of a prefix length as IPv6 text (nftables `ip6 saddr & <mask>`). */
export function prefixMask(length: number): string {
  const bytes = new Uint8Array(16);
  for (let bit = 0; bit < length; bit++) bytes[bit >> 3]! |= 0x80 >> (bit & 7);
  return formatIPv6(bytes);
}

function toBigInt(bytes: Uint8Array): bigint {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  return n;
}

function fromBigInt(n: bigint): Uint8Array {
  const bytes = new Uint8Array(16);
  for (let i = 15; i >= 0; i--) {
    bytes[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return bytes;
}

/** The first and last address of a destination (prefix or address), as 128-bit integers. */
export function prefixRange(text: string): { start: bigint; end: bigint } {
  const p = parseDestination(text);
  const start = toBigInt(parseIPv6(p.address));
  return { start, end: start + (1n << BigInt(128 - p.length)) - 1n };
}

/**
 * The fewest prefixes that cover exactly the addresses `prefixes` (destinations) cover: contained
 * prefixes dropped, sibling halves merged into their parent (2001:db8::/64 + 2001:db8:0:1::/64 =
 * 2001:db8::/63), never anything more. Canonical text, sorted.
 */
export function aggregatePrefixes(prefixes: Iterable<string>): string[] {
  const items = [...prefixes].map((t) => {
    const p = parseDestination(t);
    return { start: toBigInt(parseIPv6(p.address)), length: p.length };
  });
  items.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : a.length - b.length));
  const out: { start: bigint; length: number }[] = [];
  for (const item of items) {
    const last = out[out.length - 1];
    if (last && item.start < last.start + (1n << BigInt(128 - last.length))) continue; // contained
    out.push(item);
    for (;;) {
      const b = out[out.length - 1]!;
      const a = out[out.length - 2];
      if (!a || a.length !== b.length || a.length === 0) break;
      const size = 1n << BigInt(128 - a.length);
      if ((a.start & size) !== 0n || b.start !== a.start + size) break;
      out.splice(out.length - 2, 2, { start: a.start, length: a.length - 1 });
    }
  }
  return out.map((p) => `${formatIPv6(fromBigInt(p.start))}/${p.length}`);
}

// IPv4 prefixes (RFC 4632 CIDR text), for dual-stack mobile networks (RFC 5555): a mobile network's
// prefixes may be IPv4 as well, told apart from IPv6 by their text (dotted quad, no colon).

function invalidIPv4Prefix(text: string, why: string): AddressError {
  return new AddressError('ERR_INVALID_PREFIX', `invalid IPv4 prefix ${JSON.stringify(text)}: ${why}`);
}

/** Whether `text` is written as IPv4 (`10.1.0.0/24`, `10.1.0.1`): a dot and no colon. */
export function isIPv4Text(text: string): boolean {
  return typeof text === 'string' && text.includes('.') && !text.includes(':');
}

/**
 * "10.1.0.7/24" → { address: "10.1.0.0", length: 24, text: "10.1.0.0/24" } (host bits cleared, as IPv6
 * prefixes are); a bare address is a /32, `default` 0.0.0.0/0. Throws ERR_INVALID_PREFIX naming the fault.
 */
export function parseIPv4Destination(text: string): Prefix {
  if (text === 'default') return { address: '0.0.0.0', length: 0, text: '0.0.0.0/0' };
  if (typeof text !== 'string') throw invalidIPv4Prefix(String(text), 'not a string');
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  const lenText = slash < 0 ? '32' : text.slice(slash + 1);
  if (!/^(?:0|[1-9][0-9]?)$/.test(lenText) || Number(lenText) > 32)
    throw invalidIPv4Prefix(text, 'length must be 0..32');
  const octets = parseIPv4(addr);
  if (!octets) throw invalidIPv4Prefix(text, `"${addr}" is not a dotted-quad IPv4 address (a.b.c.d, 0..255)`);
  const length = Number(lenText);
  const net = octets.map((o, i) => o & ((0xff00 >> Math.max(0, Math.min(8, length - 8 * i))) & 0xff));
  const address = net.join('.');
  return { address, length, text: `${address}/${length}` };
}

/** A dotted-quad IPv4 address as its 32-bit number (10.1.0.1 → 167837697); the text must be valid. */
export function ipv4Number(dotted: string): number {
  return dotted.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);
}

/** A route's destination of either family: IPv4 text as parseIPv4Destination, anything else parseDestination. */
export function parseAnyDestination(text: string): Prefix {
  return isIPv4Text(text) ? parseIPv4Destination(text) : parseDestination(text);
}

/** An IPv4 prefix as the IPv4-mapped IPv6 prefix that holds it (RFC 4291 §2.5.5.2): 10.1.0.0/24 → ::ffff:10.1.0.0/120. */
export function mappedPrefix(v4: string): string {
  const p = parseIPv4Destination(v4);
  return `::ffff:${p.address}/${96 + p.length}`;
}

/** The inverse of mappedPrefix (an IPv6 prefix inside ::ffff:0:0/96 → IPv4 CIDR text). */
export function unmappedPrefix(v6: string): string {
  const p = parseDestination(v6);
  const bytes = parseIPv6(p.address);
  return `${[...bytes.subarray(12)].join('.')}/${p.length - 96}`;
}

/** Whether an IPv6 prefix lies inside ::ffff:0:0/96 (IPv4-mapped addresses), where IPv4 keys live. */
export function isMappedPrefix(v6: string): boolean {
  return prefixCovers('::ffff:0:0/96', parseDestination(v6).text);
}
