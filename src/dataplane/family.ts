// Dual-stack mobile networks (RFC 5555): a mobile network's prefixes, and the prefixes a home agent
// tunnels, may be IPv4 as well as IPv6. Both live in the same string lists; IPv4 is told apart by its
// text (`10.1.0.0/24`). Routes and rules of each family go to the kernel's table of that family
// (kernel.ts), and the eBPF maps hold IPv4 prefixes as IPv4-mapped IPv6 keys (bpf/maps.ts).
import { OfflinkError } from '../errors.ts';
import {
  AddressError,
  aggregatePrefixes,
  isIPv4Text,
  isMappedPrefix,
  mappedPrefix,
  parseAnyDestination,
  unmappedPrefix,
} from '../protocol/address.ts';

export type Family = 4 | 6;

export function familyOf(prefix: string): Family {
  return isIPv4Text(prefix) ? 4 : 6;
}

/**
 * A mobile network prefix of either family as canonical text (`10.1.0.0/24`, `2001:db8:100::/64`); a
 * bare address is a /32 or /128. Throws ERR_INVALID_PREFIX naming the fault. An IPv6 prefix inside
 * ::ffff:0:0/96 is refused: it would stand for IPv4 addresses, which are written as IPv4.
 */
export function mnpText(prefix: string): string {
  const text = parseAnyDestination(prefix).text;
  if (familyOf(text) === 6 && text !== '::/0' && isMappedPrefix(text))
    throw new AddressError(
      'ERR_INVALID_PREFIX',
      `invalid prefix ${JSON.stringify(prefix)}: IPv4-mapped (::ffff:0:0/96); write IPv4 prefixes as IPv4 (10.1.0.0/24)`,
    );
  return text;
}

/** The prefixes of one family. */
export function ofFamily(prefixes: readonly string[], family: Family): string[] {
  return prefixes.filter((p) => familyOf(p) === family);
}

/** aggregatePrefixes for a list of both families: each family aggregated on its own, IPv6 first. */
export function aggregateAny(prefixes: readonly string[]): string[] {
  const v4 = aggregatePrefixes(ofFamily(prefixes, 4).map(mappedPrefix)).map(unmappedPrefix);
  return [...aggregatePrefixes(ofFamily(prefixes, 6)), ...v4];
}

/** The default route of a family. */
export function defaultOf(family: Family): string {
  return family === 4 ? '0.0.0.0/0' : '::/0';
}

/** An IPv4 prefix as the IPv6 prefix that holds it in the eBPF maps' key space; IPv6 as it is. */
export function keySpace(prefix: string): string {
  return familyOf(prefix) === 4 ? mappedPrefix(prefix) : prefix;
}

/**
 * Refuse IPv4 prefixes on a backend that tunnels IPv6 only (seg6 here). Kernel seg6 has End.DX4 for the
 * decapsulation in principle, but the IPv4 routes, rules and nftables checks it would need are not written,
 * and no machine this was built on has seg6 to test them (docs/dataplane.md).
 */
export function refuseIPv4(prefixes: Iterable<string>, backend: string): void {
  const v4 = [...prefixes].filter((p) => familyOf(p) === 4);
  if (v4.length === 0) return;
  throw new OfflinkError(
    'ERR_DATAPLANE_IPV4',
    `the ${backend} data plane tunnels IPv6 prefixes only; IPv4 prefixes (${v4.slice(0, 3).join(', ')}) of a ` +
      'dual-stack network (RFC 5555) need the bpf data plane',
  );
}
