// Configuration of a mobile router: the host-level part (uplink, home agent) and one mobile network
// (docs/architecture.md: HoA + MNPs + guest bridge + security association). Validated with zod; every problem
// becomes one ConfigError naming the key (`networks[1].bridge: longer than 15 characters`). Key and
// name formats match the home agent's config so the same values are pasted into both.
import { z } from 'zod';
import { configError } from '../config/errors.ts';
import { resolveKey } from '../config/load.ts';
import {
  algorithm,
  hexKey,
  interfaceName,
  ipv6,
  keySource,
  MAX_LIFETIME_SECONDS,
  MIN_KEY_BYTES,
  macAddress,
  name,
  port,
  prefix,
  routingTable,
  spi,
} from '../config/schema.ts';
import { ConfigError } from '../errors.ts';
import { ipv4Number, isIPv4Text, parseIPv4Destination } from '../protocol/address.ts';
import { SIGNALING_PORT } from '../protocol/constants.ts';
import type { AuthAlgorithm } from '../protocol/types.ts';
import { DEFAULT_RETRANSMIT, type RetransmitOptions } from '../signaling/bul.ts';

export type RegistrationMode = 'explicit' | 'implicit';

/** One mobile network, resolved (key read, addresses canonical, defaults filled). */
export interface MobileNetworkConfig {
  name: string;
  homeAddress: string;
  /** Canonical CIDR text, host bits zero, each /64 or shorter. */
  prefixes: string[];
  bridge: string;
  spi: number;
  key: Buffer;
  algorithm: AuthAlgorithm;
  /** explicit: MNP options in the BU (RFC 3963 §5.2); implicit: the HA looks them up. */
  mode: RegistrationMode;
  lifetimeSeconds: number;
  retransmit: RetransmitOptions;
  /** Routing table of this network's egress route; unique per network on a host. */
  table: number;
  /** Preference of the `from <MNP> iif <bridge>` rule. */
  rulePref: number;
  /** DHCPv4 on the guest link (dnsmasq, while active): each guest's address reserved by its MAC. */
  dhcp4?: Dhcp4Config;
}

/**
 * DHCPv4 for a dual-stack network's guests. Every host that may hold the network serves the same
 * reservations, so a guest's address is a function of the config: a lease renewed on another host after a
 * migration gets the same address from that host's server, with nothing to carry between hosts.
 */
export interface Dhcp4Config {
  leaseSeconds: number;
  hosts: { mac: string; address: string }[];
  /** DNS servers offered to the guests (option 6); none when absent. */
  dns?: string[];
}

/** What every network on one host shares. */
export interface MobileRouterHostConfig {
  uplink: string;
  haAddress: string;
  haPort: number;
  /** Routing table of the host's decapsulation route (docs/dataplane.md, `<T>`). */
  decapTable: number;
}

const key = hexKey(MIN_KEY_BYTES);

// The guest link needs a /64 for SLAAC (RFC 4862 §5.5.3 with 64-bit interface ids). IPv4 prefixes of a
// dual-stack network (RFC 5555) take the gateway's .1 and guests' addresses: /30 or shorter.
const mnp = prefix({ longest: 64, why: 'guests autoconfigure from a /64' }, { ipv4: true }).refine(
  (p) => !isIPv4Text(p) || Number(p.split('/')[1]) <= 30,
  { message: 'an IPv4 prefix must be a /30 or shorter (the gateway and a guest)' },
);

const retransmit = z
  .strictObject({
    initialFirstMs: z.number().int().min(10).max(600_000).default(DEFAULT_RETRANSMIT.initialFirstMs),
    initialMs: z.number().int().min(10).max(600_000).default(DEFAULT_RETRANSMIT.initialMs),
    maxMs: z.number().int().min(10).max(3_600_000).default(DEFAULT_RETRANSMIT.maxMs),
  })
  .default(DEFAULT_RETRANSMIT)
  .refine((r) => r.initialFirstMs <= r.maxMs && r.initialMs <= r.maxMs, {
    message: 'initialFirstMs and initialMs must not exceed maxMs',
    path: ['maxMs'],
  });

export const networkSchema = z.strictObject({
  name,
  homeAddress: ipv6,
  prefixes: z
    .array(mnp)
    .min(1, 'at least one prefix')
    .refine((ps) => ps.some((p) => !isIPv4Text(p)), {
      message: 'at least one IPv6 prefix (the guest link and SLAAC)',
    }),
  bridge: interfaceName,
  spi,
  ...keySource(key),
  algorithm,
  mode: z.enum(['explicit', 'implicit']).default('explicit'),
  lifetimeSeconds: z.number().int().min(4).max(MAX_LIFETIME_SECONDS).default(600),
  retransmit,
  table: routingTable.optional(),
  // After `lookup local` (moved to pref 1000 for decapsulation): a guest's packets to the MR's own
  // addresses (its gateway MNP::1) are delivered locally instead of hairpinning through the HA
  // (docs/dataplane.md). docs/dataplane.md's example uses 100.
  rulePref: z.number().int().min(1001).max(32765).default(1100),
  dhcp4: z
    .strictObject({
      leaseSeconds: z.number().int().min(120).max(604_800).default(3600),
      hosts: z
        .array(
          z.strictObject({
            mac: macAddress.transform((m) => m.toLowerCase()),
            address: z.string().refine(isDottedQuad, 'not an IPv4 address (10.1.0.10)'),
          }),
        )
        .min(1, 'at least one reservation (mac and address)'),
      dns: z.array(z.string().refine(isDottedQuad, 'not an IPv4 address (192.0.2.53)')).min(1).optional(),
    })
    .optional(),
});

export const hostSchema = z.strictObject({
  uplink: interfaceName,
  haAddress: ipv6,
  haPort: port.default(SIGNALING_PORT),
  decapTable: routingTable.default(200),
});

export type MobileNetworkInput = z.input<typeof networkSchema>;
export type MobileRouterHostInput = z.input<typeof hostSchema>;

/**
 * Default routing table of a network: a stable hash of its name into 10000–1009999, so every host picks
 * the same number without coordination. Set `table` explicitly if two names ever collide on a host.
 */
export function defaultTable(name: string): number {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(name, 'utf8')) h = Math.imul(h ^ byte, 0x01000193) >>> 0;
  return 10000 + (h % 1_000_000);
}

/**
 * Validate one mobile network. `at` prefixes error paths (e.g. `networks[2]`); `baseDir` resolves a
 * relative keyFile. Throws ConfigError naming the key.
 */
export function parseMobileNetwork(
  input: unknown,
  options: { at?: string; baseDir?: string } = {},
): MobileNetworkConfig {
  const at = options.at ?? '';
  const parsed = networkSchema.safeParse(input);
  if (!parsed.success) throw configError(parsed.error, at);
  const n = parsed.data;
  return {
    name: n.name,
    homeAddress: n.homeAddress,
    prefixes: [...new Set(n.prefixes)],
    bridge: n.bridge,
    spi: n.spi,
    key: resolveKey(n, at, options.baseDir ?? process.cwd(), key),
    algorithm: n.algorithm,
    mode: n.mode,
    lifetimeSeconds: n.lifetimeSeconds,
    retransmit: n.retransmit,
    table: n.table ?? defaultTable(n.name),
    rulePref: n.rulePref,
    ...(n.dhcp4 ? { dhcp4: checkDhcp4(n.dhcp4, n.prefixes, `${at ? `${at}.` : ''}dhcp4`) } : {}),
  };
}

function isDottedQuad(text: string): boolean {
  try {
    return !text.includes('/') && isIPv4Text(text) && parseIPv4Destination(text).length === 32;
  } catch {
    return false;
  }
}

/**
 * DHCPv4 reservations against the network's IPv4 prefixes: each address a host address of one of them
 * (not the network or broadcast address, not the gateway .1 on the bridge), no MAC or address twice.
 */
function checkDhcp4(d: Dhcp4Config, prefixes: readonly string[], at: string): Dhcp4Config {
  const v4 = prefixes.filter(isIPv4Text).map(parseIPv4Destination);
  if (v4.length === 0)
    throw new ConfigError(
      at,
      'the network has no IPv4 prefix to serve (add one to prefixes, e.g. "10.1.0.0/24")',
    );
  const macs = new Map<string, number>();
  const addresses = new Map<string, number>();
  d.hosts.forEach((h, i) => {
    const key = `${at}.hosts[${i}]`;
    const n = ipv4Number(h.address);
    const block = (x: number, length: number) => Math.floor(x / 2 ** (32 - length));
    const p = v4.find((q) => block(n, q.length) === block(ipv4Number(q.address), q.length));
    if (!p)
      throw new ConfigError(
        `${key}.address`,
        `${h.address} is not in the network's IPv4 prefixes (${v4.map((q) => q.text).join(', ')})`,
      );
    const base = ipv4Number(p.address);
    const last = base + 2 ** (32 - p.length) - 1;
    if (n === base || n === last)
      throw new ConfigError(`${key}.address`, `${h.address} is ${p.text}'s network or broadcast address`);
    if (n === base + 1)
      throw new ConfigError(`${key}.address`, `${h.address} is ${p.text}'s gateway (on the guest link)`);
    const mac = macs.get(h.mac);
    if (mac !== undefined)
      throw new ConfigError(`${key}.mac`, `${h.mac} is reserved already in hosts[${mac}]`);
    const addr = addresses.get(h.address);
    if (addr !== undefined)
      throw new ConfigError(`${key}.address`, `${h.address} is reserved already in hosts[${addr}]`);
    macs.set(h.mac, i);
    addresses.set(h.address, i);
  });
  return d;
}

/** Validate the host-level part. */
export function parseMobileRouterHost(input: unknown, options: { at?: string } = {}): MobileRouterHostConfig {
  const parsed = hostSchema.safeParse(input);
  if (!parsed.success) throw configError(parsed.error, options.at);
  return parsed.data;
}
