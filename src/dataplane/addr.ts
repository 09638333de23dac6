// IPv6 addresses and prefixes as the kernel prints them. The data plane compares what it wants with what
// `ip` and `nft` report, so every address is brought to one canonical text (RFC 5952) first; and since
// addresses end up in `ip -batch` / `nft -f` scripts, anything that is not an address is refused here.
import { OfflinkError } from '../errors.ts';

export class AddressError extends OfflinkError {
  constructor(message: string) {
    super('ERR_ADDRESS', message);
  }
}

/** Parse an IPv6 address (with optional embedded IPv4 tail) into 16 bytes. */
export function parseIPv6(text: string): Uint8Array {
  const fail = (): never => {
    throw new AddressError(`not an IPv6 address: ${JSON.stringify(text)}`);
  };
  if (!/^[0-9a-fA-F:.]{2,45}$/.test(text)) fail();
  let head = text;
  const tail: number[] = [];
  const v4 = /^(.*:)(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    head = `${v4[1]}0:0`;
    for (const part of v4.slice(2)) {
      const n = Number(part);
      if (n > 255) fail();
      tail.push(n);
    }
  }
  const halves = head.split('::');
  if (halves.length > 2) fail();
  const group = (s: string): number[] =>
    s === '' ? [] : s.split(':').map((g) => (/^[0-9a-fA-F]{1,4}$/.test(g) ? Number.parseInt(g, 16) : fail()));
  const left = group(halves[0]!);
  const right = halves.length === 2 ? group(halves[1]!) : [];
  const fill = 8 - left.length - right.length;
  if ((halves.length === 1 && fill !== 0) || (halves.length === 2 && fill < 1)) fail();
  const words = [...left, ...new Array<number>(halves.length === 2 ? fill : 0).fill(0), ...right];
  const bytes = new Uint8Array(16);
  words.forEach((w, i) => {
    bytes[2 * i] = w >> 8;
    bytes[2 * i + 1] = w & 0xff;
  });
  if (tail.length === 4) bytes.set(tail, 12);
  return bytes;
}

/** RFC 5952 text: lower case, longest run (≥ 2) of zero groups compressed, first one on a tie. */
export function formatIPv6(bytes: Uint8Array): string {
  const words = Array.from({ length: 8 }, (_, i) => (bytes[2 * i]! << 8) | bytes[2 * i + 1]!);
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
  const hex = words.map((w) => w.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

export function canonicalAddress(text: string): string {
  return formatIPv6(parseIPv6(text));
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
  return { address, length, text: `${address}/${length}` };
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
