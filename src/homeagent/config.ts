// Home agent configuration (examples/ha.yaml): YAML validated with a zod schema. Every problem becomes one
// ConfigError naming the key path (`mobileRouters[1].prefixes[0]: not an IPv6 prefix`), so a wrong config
// stops the daemon with a single line that says where to look.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../errors.ts';
import { canonicalIPv6, parseIPv6, parsePrefix, prefixCovers } from '../protocol/address.ts';
import type { AuthAlgorithm } from '../protocol/types.ts';

/** Shortest key accepted: 128 bits (RFC 2104 §3 recommends at least the hash output; 16 octets is the floor). */
export const MIN_KEY_BYTES = 16;
/** Largest lifetime a BA can express: 0xffff units of 4 s (RFC 6275 §6.1.7). */
export const MAX_LIFETIME_SECONDS = 0xffff * 4;

export interface MobileRouterConfig {
  name: string;
  homeAddress: string;
  /** Canonical CIDR text, host bits zero. */
  prefixes: string[];
  spi: number;
  key: Uint8Array;
  algorithm: AuthAlgorithm;
}

export interface HomeAgentConfig {
  homeAgent: {
    address: string;
    uplink: string;
    listen: { address: string; port: number };
    /** Status / metrics HTTP endpoint; undefined = disabled. */
    status: { host: string; port: number } | undefined;
    /** SQLite file (absolute, or ':memory:'). */
    database: string;
    dataplane: { backend: 'seg6' | 'ip6tnl'; table: number; mss: number };
    maxLifetimeSeconds: number;
    refreshAdviceSeconds: number | undefined;
    replayWindowSeconds: number;
    retainOnStop: boolean;
  };
  mobileRouters: MobileRouterConfig[];
}

function isIPv6(text: string): boolean {
  try {
    canonicalIPv6(text);
    return !text.includes('/');
  } catch {
    return false;
  }
}

function isPrefix(text: string): boolean {
  try {
    const { prefix, length } = parsePrefix(text);
    // Host bits set is almost always a typo (2001:db8:1::1/64); refuse rather than guess.
    return canonicalIPv6(text.slice(0, text.indexOf('/'))) === prefix && length > 0;
  } catch {
    return false;
  }
}

const ipv6 = z.string().refine(isIPv6, 'not an IPv6 address').transform(canonicalIPv6);
const prefix = z
  .string()
  .refine(isPrefix, 'not an IPv6 prefix (address/length with the host bits zero)')
  .transform((p) => {
    const { prefix: net, length } = parsePrefix(p);
    return `${net}/${length}`;
  });

const LOOPBACK_LISTEN = /^(?:\[(?<v6>[^\]]+)\]|(?<v4>[0-9.]+)):(?<port>[0-9]{1,5})$/;
const statusListen = z.string().transform((text, ctx) => {
  const m = LOOPBACK_LISTEN.exec(text);
  const host = m?.groups?.['v6'] ?? m?.groups?.['v4'];
  const port = Number(m?.groups?.['port']);
  const loopback =
    host !== undefined &&
    (/^127\.\d+\.\d+\.\d+$/.test(host) || (isIPv6(host) && canonicalIPv6(host) === '::1'));
  if (!m || !loopback || !(port > 0 && port < 65536)) {
    ctx.addIssue({
      code: 'custom',
      message: 'must be a loopback address and port ("127.0.0.1:9180" or "[::1]:9180")',
    });
    return z.NEVER;
  }
  return { host: host!, port };
});

const hexKey = z
  .string()
  .regex(/^(?:[0-9a-fA-F]{2})+$/, 'not a hex string')
  .transform((k) => Buffer.from(k, 'hex'))
  .refine(
    (k) => k.length >= MIN_KEY_BYTES,
    `too short (at least ${MIN_KEY_BYTES} bytes, ${MIN_KEY_BYTES * 2} hex digits)`,
  );

const mobileRouter = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'letters, digits, ".", "_", "-" (1–63)'),
  homeAddress: ipv6,
  prefixes: z.array(prefix).min(1, 'at least one prefix'),
  // RFC 4285 §5: SPI values 0–255 are reserved.
  spi: z.number().int().min(256, 'SPI 0–255 is reserved (RFC 4285 §5)').max(0xffffffff),
  key: hexKey.optional(),
  keyFile: z.string().min(1).optional(),
  algorithm: z.enum(['hmac-sha1', 'hmac-sha256']).default('hmac-sha1'),
});

const schema = z.strictObject({
  homeAgent: z.strictObject({
    address: ipv6,
    uplink: z.string().regex(/^[A-Za-z0-9_.:@-]{1,15}$/, 'not an interface name (1–15 characters)'),
    // Default: the HA address. Node cannot pick a datagram's source address, so a socket on '::' would
    // answer from whatever address routing picks, and an MR expects the BA from where it sent the BU.
    listen: z
      .strictObject({ address: ipv6.optional(), port: z.number().int().min(1).max(65535).default(4191) })
      .default({ port: 4191 }),
    status: z
      .union([z.literal(false), z.strictObject({ listen: statusListen })])
      .default({ listen: { host: '127.0.0.1', port: 9180 } }),
    database: z.string().min(1).default('/var/lib/offlink/ha.sqlite'),
    dataplane: z
      .strictObject({
        backend: z.enum(['seg6', 'ip6tnl']).default('seg6'),
        table: z
          .number()
          .int()
          .min(1)
          .max(0xfffffff0)
          .refine((t) => t < 253 || t > 255, 'tables 253–255 are the kernel’s default, main and local')
          .default(200),
        mss: z
          .number()
          .int()
          .refine((m) => m === 0 || (m >= 536 && m <= 65535), '0 (off) or 536–65535')
          .default(1400),
      })
      .default({ backend: 'seg6', table: 200, mss: 1400 }),
    maxLifetimeSeconds: z.number().int().min(4).max(MAX_LIFETIME_SECONDS).default(3600),
    refreshAdviceSeconds: z.number().int().min(4).max(MAX_LIFETIME_SECONDS).optional(),
    replayWindowSeconds: z.number().int().min(1).max(3600).default(7),
    retainOnStop: z.boolean().default(true),
  }),
  mobileRouters: z.array(mobileRouter).default([]),
});

type Path = readonly PropertyKey[];

/** `['mobileRouters', 1, 'prefixes', 0]` → `mobileRouters[1].prefixes[0]`. */
export function formatPath(path: Path): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out;
}

function firstIssue(error: z.ZodError): ConfigError {
  return issueError(error.issues[0]!);
}

function issueError(issue: z.core.$ZodIssue): ConfigError {
  if (issue.code === 'unrecognized_keys') {
    return new ConfigError(formatPath([...issue.path, issue.keys[0]!]), 'unknown key');
  }
  if (issue.code === 'invalid_type') {
    // zod does not report the input; its message ends in "received <type>".
    const received = /received (\w+)/.exec(issue.message)?.[1];
    if (received === 'undefined') return new ConfigError(formatPath(issue.path), 'required');
    const hint =
      issue.expected === 'string' && received === 'number'
        ? ' (quote it: YAML reads digits as a number)'
        : '';
    return new ConfigError(formatPath(issue.path), `must be a ${issue.expected}, not a ${received}${hint}`);
  }
  if (issue.code === 'invalid_union') {
    // A branch that got past the type check says more than "no branch matched".
    const deeper = issue.errors.flat().find((i) => i.path.length > 0);
    if (deeper) return issueError({ ...deeper, path: [...issue.path, ...deeper.path] });
    return new ConfigError(formatPath(issue.path), 'must be false or { listen: "127.0.0.1:9180" }');
  }
  return new ConfigError(formatPath(issue.path), issue.message);
}

/** Parse and validate config text. `baseDir` resolves relative `database` and `keyFile` paths. */
export function parseHomeAgentConfig(text: string, baseDir = process.cwd()): HomeAgentConfig {
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0)
    throw new ConfigError('', `not valid YAML: ${doc.errors[0]!.message.split('\n')[0]}`);
  const parsed = schema.safeParse(doc.toJS() ?? {});
  if (!parsed.success) throw firstIssue(parsed.error);
  const raw = parsed.data;
  const mobileRouters = raw.mobileRouters.map((mr, i) => ({
    name: mr.name,
    homeAddress: mr.homeAddress,
    prefixes: [...new Set(mr.prefixes)],
    spi: mr.spi,
    key: resolveKey(mr, i, baseDir),
    algorithm: mr.algorithm,
  }));
  checkUnique(mobileRouters);
  const ha = raw.homeAgent;
  if (ha.refreshAdviceSeconds !== undefined && ha.refreshAdviceSeconds >= ha.maxLifetimeSeconds) {
    throw new ConfigError('homeAgent.refreshAdviceSeconds', 'must be less than maxLifetimeSeconds');
  }
  return {
    homeAgent: {
      address: ha.address,
      uplink: ha.uplink,
      listen: { address: ha.listen.address ?? ha.address, port: ha.listen.port },
      status: ha.status === false ? undefined : ha.status.listen,
      database: ha.database === ':memory:' ? ha.database : resolve(baseDir, ha.database),
      dataplane: ha.dataplane,
      maxLifetimeSeconds: ha.maxLifetimeSeconds,
      refreshAdviceSeconds: ha.refreshAdviceSeconds,
      replayWindowSeconds: ha.replayWindowSeconds,
      retainOnStop: ha.retainOnStop,
    },
    mobileRouters,
  };
}

/** Read and validate a config file. */
export function loadHomeAgentConfig(path: string): HomeAgentConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError('', `cannot read config ${path}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  return parseHomeAgentConfig(text, dirname(resolve(path)));
}

function resolveKey(
  mr: { key?: Buffer | undefined; keyFile?: string | undefined },
  i: number,
  baseDir: string,
): Buffer {
  const at = `mobileRouters[${i}]`;
  if (mr.key !== undefined && mr.keyFile !== undefined)
    throw new ConfigError(`${at}.key`, 'give key or keyFile, not both');
  if (mr.key !== undefined) return mr.key;
  if (mr.keyFile === undefined) throw new ConfigError(`${at}.key`, 'required (or keyFile)');
  let text: string;
  try {
    text = readFileSync(resolve(baseDir, mr.keyFile), 'utf8');
  } catch (err) {
    throw new ConfigError(
      `${at}.keyFile`,
      `cannot read ${mr.keyFile}: ${(err as NodeJS.ErrnoException).code ?? err}`,
    );
  }
  // A key file holds the key as hex (e.g. `openssl rand -hex 32 > mr1.key`); whitespace is ignored.
  const parsed = hexKey.safeParse(text.replace(/\s+/g, ''));
  if (!parsed.success)
    throw new ConfigError(`${at}.keyFile`, `${mr.keyFile}: ${parsed.error.issues[0]!.message}`);
  return parsed.data;
}

function checkUnique(mrs: readonly MobileRouterConfig[]): void {
  const seen = {
    name: new Map<string, number>(),
    spi: new Map<number, number>(),
    hoa: new Map<string, number>(),
  };
  mrs.forEach((mr, i) => {
    const dup = (key: 'name' | 'spi' | 'homeAddress', prior: number | undefined) => {
      if (prior !== undefined)
        throw new ConfigError(`mobileRouters[${i}].${key}`, `duplicate of mobileRouters[${prior}]`);
    };
    dup('name', seen.name.get(mr.name));
    dup('spi', seen.spi.get(mr.spi));
    dup('homeAddress', seen.hoa.get(mr.homeAddress));
    seen.name.set(mr.name, i);
    seen.spi.set(mr.spi, i);
    seen.hoa.set(mr.homeAddress, i);
  });
  // Two MRs claiming overlapping prefixes would fight over the same routes (RFC 3963 §6.1.2 authorization).
  // Sorted by address then length, a prefix can only overlap the chain of prefixes still open before it:
  // O(n log n) for the 100k-MR scale target instead of pairwise.
  const all = mrs.flatMap((mr, i) =>
    mr.prefixes.map((p, j) => {
      const slash = p.indexOf('/');
      return {
        p,
        i,
        j,
        key: Buffer.from(parseIPv6(p.slice(0, slash))).toString('hex'),
        len: Number(p.slice(slash + 1)),
      };
    }),
  );
  all.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.len - b.len));
  const open: typeof all = [];
  for (const y of all) {
    while (open.length > 0 && !prefixCovers(open[open.length - 1]!.p, y.p)) open.pop();
    const x = open.find((o) => o.i !== y.i);
    if (x) {
      const [first, second] = x.i < y.i ? [x, y] : [y, x];
      throw new ConfigError(
        `mobileRouters[${second.i}].prefixes[${second.j}]`,
        `${second.p} overlaps ${first.p} of mobileRouters[${first.i}] (${mrs[first.i]!.name})`,
      );
    }
    open.push(y);
  }
}
