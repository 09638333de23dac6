// IPv6 addresses and prefixes as the kernel prints them. The data plane compares what it wants with what
// `ip` and `nft` report, so every address is brought to one canonical text (RFC 5952) first; and since
// addresses end up in `ip -batch` / `nft -f` scripts, anything that is not an address is refused here.
import { OfflinkError } from '../errors.ts';

export class AddressError extends OfflinkError {
  constructor(message: string) {
    super('ERR_ADDRESS', message);
  }
}

/** Parse an IPv6 address (with optional embedded IPv4 tail) into eight 16-bit words. */
function parseWords(text: string): Uint16Array | undefined {
  const words = new Uint16Array(8);
  let n = 0; // words written
  let gap = -1; // index in words where "::" was
  let i = 0;
  const len = text.length;
  if (len < 2 || len > 45) return undefined;
  if (text.startsWith('::')) {
    gap = 0;
    i = 2;
    if (len === 2) return words;
  } else if (text[0] === ':') return undefined;
  while (i < len) {
    if (n >= 8) return undefined;
    let value = 0;
    let digits = 0;
    const start = i;
    while (i < len && digits < 5) {
      const c = text.charCodeAt(i);
      const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
      if (d < 0) break;
      value = value * 16 + d;
      digits++;
      i++;
    }
    if (i < len && text[i] === '.') {
      // embedded IPv4 in the last 32 bits
      const v4 = text.slice(start).split('.');
      if (v4.length !== 4 || n > 6) return undefined;
      const b = v4.map((p) => (/^\d{1,3}$/.test(p) ? Number(p) : 256));
      if (b.some((x) => x > 255)) return undefined;
      words[n++] = (b[0]! << 8) | b[1]!;
      words[n++] = (b[2]! << 8) | b[3]!;
      i = len;
      break;
    }
    if (digits === 0 || digits > 4) return undefined;
    words[n++] = value;
    if (i === len) break;
    if (text[i] !== ':') return undefined;
    i++;
    if (text[i] === ':') {
      if (gap >= 0) return undefined;
      gap = n;
      i++;
      if (i === len) break;
    } else if (i === len) return undefined;
  }
  if (gap < 0) return n === 8 ? words : undefined;
  if (n >= 8) return undefined;
  const tail = words.slice(gap, n);
  words.fill(0, gap);
  words.set(tail, 8 - tail.length);
  return words;
}

/** Parse an IPv6 address (with optional embedded IPv4 tail) into 16 bytes. */
export function parseIPv6(text: string): Uint8Array {
  const words = parseWords(text);
  if (!words) throw new AddressError(`not an IPv6 address: ${JSON.stringify(text)}`);
  const bytes = new Uint8Array(16);
  for (let w = 0; w < 8; w++) {
    bytes[2 * w] = words[w]! >> 8;
    bytes[2 * w + 1] = words[w]! & 0xff;
  }
  return bytes;
}

/** RFC 5952 text: lower case, longest run (≥ 2) of zero groups compressed, first one on a tie. */
export function formatIPv6(bytes: Uint8Array): string {
  const words: number[] = [];
  for (let w = 0; w < 8; w++) words.push((bytes[2 * w]! << 8) | bytes[2 * w + 1]!);
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j === i ? i + 1 : j;
  }
  let out = '';
  for (let w = 0; w < 8; w++) {
    if (w === best) {
      out += '::';
      w += bestLen - 1;
      continue;
    }
    if (out !== '' && !out.endsWith(':')) out += ':';
    out += words[w]!.toString(16);
  }
  return out;
}

/** Canonical text; the argument itself when it already is (a home agent keeps 100k of these). */
export function canonicalAddress(text: string): string {
  const canonical = formatIPv6(parseIPv6(text));
  return canonical === text ? text : canonical;
}

export interface Prefix {
  /** Network address, host bits cleared, canonical text. */
  readonly address: string;
  readonly length: number;
  /** `address/length`, the form `ip` accepts. */
  readonly text: string;
}

/** Parse "addr/len" (host bits are cleared) or a bare address (a /128). "default" is ::/0. */
export function parsePrefix(text: string): Prefix {
  if (text === 'default') return { address: '::', length: 0, text: '::/0' };
  const slash = text.indexOf('/');
  const length = slash < 0 ? 128 : Number(text.slice(slash + 1));
  if (
    !Number.isInteger(length) ||
    length < 0 ||
    length > 128 ||
    (slash >= 0 && !/^\d{1,3}$/.test(text.slice(slash + 1)))
  ) {
    throw new AddressError(`not an IPv6 prefix: ${JSON.stringify(text)}`);
  }
  const bytes = parseIPv6(slash < 0 ? text : text.slice(0, slash));
  for (let bit = length; bit < 128; bit++) bytes[bit >> 3]! &= ~(0x80 >> (bit & 7));
  const address = formatIPv6(bytes);
  const canonical = `${address}/${length}`;
  // Already canonical: keep the caller's string (and a slice of it) rather than two new copies.
  if (canonical === text) return { address: text.slice(0, slash), length, text };
  return { address, length, text: canonical };
}

/** The netmask of a prefix length as IPv6 text (nftables `ip6 saddr & <mask>`). */
export function prefixMask(length: number): string {
  const bytes = new Uint8Array(16);
  for (let bit = 0; bit < length; bit++) bytes[bit >> 3]! |= 0x80 >> (bit & 7);
  return formatIPv6(bytes);
}

/** Interface names go into command lines and nft scripts: Linux rules (≤ 15 bytes) and no odd characters. */
export function checkInterfaceName(name: string): string {
  if (!/^[A-Za-z0-9_.:-]{1,15}$/.test(name))
    throw new AddressError(`bad interface name: ${JSON.stringify(name)}`);
  return name;
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

/** The first and last address of a prefix, as 128-bit integers. */
export function prefixRange(text: string): { start: bigint; end: bigint } {
  const p = parsePrefix(text);
  const start = toBigInt(parseIPv6(p.address));
  return { start, end: start + (1n << BigInt(128 - p.length)) - 1n };
}

/**
 * The fewest prefixes that cover exactly the addresses `prefixes` cover: contained prefixes dropped,
 * sibling halves merged into their parent (2001:db8::/64 + 2001:db8:0:1::/64 = 2001:db8::/63), never
 * anything more. Canonical text, sorted.
 */
export function aggregatePrefixes(prefixes: Iterable<string>): string[] {
  const items = [...prefixes].map((t) => {
    const p = parsePrefix(t);
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
