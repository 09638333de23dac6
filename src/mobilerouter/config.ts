// Configuration of a mobile router: the host-level part (uplink, home agent) and one mobile network
// (DESIGN §1: HoA + MNPs + guest bridge + security association). Validated with zod; every problem
// becomes one ConfigError naming the key (`networks[1].bridge: longer than 15 characters`). Key and
// name formats match the home agent's config so the same values are pasted into both.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../errors.ts';
import { canonicalIPv6, parsePrefix } from '../protocol/address.ts';
import { SIGNALING_PORT } from '../protocol/constants.ts';
import type { AuthAlgorithm } from '../protocol/types.ts';
import { DEFAULT_RETRANSMIT, type RetransmitOptions } from '../signaling/bul.ts';

/** Shortest key accepted: 128 bits, as the home agent requires. */
export const MIN_KEY_BYTES = 16;
/** Largest lifetime a BU can express: 0xffff units of 4 s (RFC 6275 §6.1.7). */
export const MAX_LIFETIME_SECONDS = 0xffff * 4;
/** Linux IFNAMSIZ is 16 including the terminating NUL. */
export const MAX_IFNAME = 15;

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
}

/** What every network on one host shares. */
export interface MobileRouterHostConfig {
  uplink: string;
  haAddress: string;
  haPort: number;
  /** Routing table of the host's decapsulation route (DESIGN §4, `<T>`). */
  decapTable: number;
}

const IFNAME_CHARS = /^[A-Za-z0-9_.-]+$/;

function isIPv6(text: string): boolean {
  try {
    canonicalIPv6(text);
    return !text.includes('/');
  } catch {
    return false;
  }
}

const ipv6 = z.string().refine(isIPv6, 'not an IPv6 address').transform(canonicalIPv6);

const prefix = z.string().transform((text, ctx) => {
  let parsed: { prefix: string; length: number };
  try {
    parsed = parsePrefix(text);
  } catch {
    ctx.addIssue({ code: 'custom', message: `${text}: not an IPv6 prefix (address/length)` });
    return z.NEVER;
  }
  const slash = text.indexOf('/');
  if (slash < 0 || canonicalIPv6(text.slice(0, slash)) !== parsed.prefix) {
    ctx.addIssue({
      code: 'custom',
      message: `${text}: host bits set (the network is ${parsed.prefix}/${parsed.length})`,
    });
    return z.NEVER;
  }
  // The guest link needs a /64 for SLAAC (RFC 4862 §5.5.3 with 64-bit interface ids).
  if (parsed.length > 64 || parsed.length < 1) {
    ctx.addIssue({
      code: 'custom',
      message: `${text}: must be a /64 or shorter (guests autoconfigure from a /64)`,
    });
    return z.NEVER;
  }
  return `${parsed.prefix}/${parsed.length}`;
});

export const interfaceName = z
  .string()
  .min(1, 'empty interface name')
  .refine((s) => s.length <= MAX_IFNAME, {
    message: `longer than ${MAX_IFNAME} characters (Linux IFNAMSIZ)`,
  })
  .refine((s) => IFNAME_CHARS.test(s) && s !== '.' && s !== '..', {
    message: 'invalid characters in interface name (letters, digits, "_", ".", "-")',
  });

const hexKey = z
  .string()
  .regex(/^(?:[0-9a-fA-F]{2})+$/, 'not a hex string')
  .transform((k) => Buffer.from(k, 'hex'))
  .refine(
    (k) => k.length >= MIN_KEY_BYTES,
    `too short (at least ${MIN_KEY_BYTES} bytes, ${MIN_KEY_BYTES * 2} hex digits)`,
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

const tableNumber = z
  .number()
  .int()
  .min(1)
  .max(0xfffffff0)
  .refine((t) => t < 253 || t > 255, 'tables 253–255 are the kernel’s default, main and local');

export const networkSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'letters, digits, ".", "_", "-" (1–63)'),
  homeAddress: ipv6,
  prefixes: z.array(prefix).min(1, 'at least one prefix'),
  bridge: interfaceName,
  // RFC 4285 §5: SPI values 0–255 are reserved.
  spi: z.number().int().min(256, 'SPI 0–255 is reserved (RFC 4285 §5)').max(0xffffffff),
  key: hexKey.optional(),
  keyFile: z.string().min(1).optional(),
  algorithm: z.enum(['hmac-sha1', 'hmac-sha256']).default('hmac-sha1'),
  mode: z.enum(['explicit', 'implicit']).default('explicit'),
  lifetimeSeconds: z.number().int().min(4).max(MAX_LIFETIME_SECONDS).default(600),
  retransmit,
  table: tableNumber.optional(),
  // After `lookup local` (moved to pref 1000 for decapsulation): a guest's packets to the MR's own
  // addresses (its gateway MNP::1) are delivered locally instead of hairpinning through the HA
  // (docs/dataplane.md). DESIGN §4's example uses 100.
  rulePref: z.number().int().min(1001).max(32765).default(1100),
});

export const hostSchema = z.strictObject({
  uplink: interfaceName,
  haAddress: ipv6,
  haPort: z.number().int().min(1).max(65535).default(SIGNALING_PORT),
  decapTable: tableNumber.default(200),
});

export type MobileNetworkInput = z.input<typeof networkSchema>;
export type MobileRouterHostInput = z.input<typeof hostSchema>;

type Path = readonly PropertyKey[];

function formatPath(prefixPath: string, path: Path): string {
  let out = prefixPath;
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out;
}

function firstIssue(error: z.ZodError, at: string): ConfigError {
  const issue = error.issues[0]!;
  if (issue.code === 'unrecognized_keys')
    return new ConfigError(formatPath(at, [...issue.path, issue.keys[0]!]), 'unknown key');
  if (issue.code === 'invalid_type' && issue.input === undefined)
    return new ConfigError(formatPath(at, issue.path), 'required');
  return new ConfigError(formatPath(at, issue.path), issue.message);
}

/**
 * Default routing table of a network: a stable hash of its name into 10000–1009999, so every host picks
 * the same number without coordination. Set `table` explicitly if two names ever collide on a host.
 */
export function defaultTable(name: string): number {
  let h = 0x811c9dc5;
  for (const c of Buffer.from(name, 'utf8')) h = Math.imul(h ^ c, 0x01000193) >>> 0;
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
  if (!parsed.success) throw firstIssue(parsed.error, at);
  const n = parsed.data;
  return {
    name: n.name,
    homeAddress: n.homeAddress,
    prefixes: [...new Set(n.prefixes)],
    bridge: n.bridge,
    spi: n.spi,
    key: resolveKey(n, at, options.baseDir ?? process.cwd()),
    algorithm: n.algorithm,
    mode: n.mode,
    lifetimeSeconds: n.lifetimeSeconds,
    retransmit: n.retransmit,
    table: n.table ?? defaultTable(n.name),
    rulePref: n.rulePref,
  };
}

/** Validate the host-level part. */
export function parseMobileRouterHost(input: unknown, options: { at?: string } = {}): MobileRouterHostConfig {
  const parsed = hostSchema.safeParse(input);
  if (!parsed.success) throw firstIssue(parsed.error, options.at ?? '');
  return parsed.data;
}

function resolveKey(
  n: { key?: Buffer | undefined; keyFile?: string | undefined },
  at: string,
  baseDir: string,
): Buffer {
  const keyPath = formatPath(at, ['key']);
  if (n.key !== undefined && n.keyFile !== undefined)
    throw new ConfigError(keyPath, 'give key or keyFile, not both');
  if (n.key !== undefined) return n.key;
  if (n.keyFile === undefined) throw new ConfigError(keyPath, 'required (or keyFile)');
  const filePath = formatPath(at, ['keyFile']);
  let text: string;
  try {
    text = readFileSync(resolve(baseDir, n.keyFile), 'utf8');
  } catch (err) {
    throw new ConfigError(
      filePath,
      `cannot read ${n.keyFile}: ${(err as NodeJS.ErrnoException).code ?? err}`,
    );
  }
  // Same format as the home agent: hex text (`openssl rand -hex 32`), whitespace ignored.
  const parsed = hexKey.safeParse(text.replace(/\s+/g, ''));
  if (!parsed.success) throw new ConfigError(filePath, `${n.keyFile}: ${parsed.error.issues[0]!.message}`);
  return parsed.data;
}
