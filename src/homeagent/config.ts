// Home agent configuration (examples/ha.yaml): YAML validated with a zod schema. Every problem becomes one
// ConfigError naming the key path (`mobileRouters[1].prefixes[0]: not an IPv6 prefix`), so a wrong config
// stops the daemon with a single line that says where to look.
import { resolve } from 'node:path';
import { z } from 'zod';
import { configError } from '../config/errors.ts';
import { loadConfigFile, parseYaml, resolveKey } from '../config/load.ts';
import {
  algorithm,
  backend,
  hexKey,
  ipv6,
  isIPv6,
  keySource,
  listenAddress,
  MAX_LIFETIME_SECONDS,
  MIN_KEY_BYTES,
  mss,
  name,
  port,
  prefix,
  routingTable,
  spi,
} from '../config/schema.ts';
import { ConfigError } from '../errors.ts';
import { canonicalIPv6, parseIPv6, prefixCovers } from '../protocol/address.ts';
import type { AuthAlgorithm } from '../protocol/types.ts';

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

const key = hexKey(MIN_KEY_BYTES);

function isLoopback(host: string): boolean {
  return /^127\.\d+\.\d+\.\d+$/.test(host) || (isIPv6(host) && canonicalIPv6(host) === '::1');
}

const mobileRouter = z.strictObject({
  name,
  homeAddress: ipv6,
  prefixes: z.array(prefix()).min(1, 'at least one prefix'),
  spi,
  ...keySource(key),
  algorithm,
});

const schema = z.strictObject({
  homeAgent: z.strictObject({
    address: ipv6,
    uplink: z.string().regex(/^[A-Za-z0-9_.:@-]{1,15}$/, 'not an interface name (1–15 characters)'),
    // Default: the HA address. Node cannot pick a datagram's source address, so a socket on '::' would
    // answer from whatever address routing picks, and an MR expects the BA from where it sent the BU.
    listen: z.strictObject({ address: ipv6.optional(), port: port.default(4191) }).default({ port: 4191 }),
    status: z
      .union(
        [
          z.literal(false),
          z.strictObject({
            listen: listenAddress(
              isLoopback,
              'must be a loopback address and port ("127.0.0.1:9180" or "[::1]:9180")',
            ),
          }),
        ],
        { error: 'must be false or { listen: "127.0.0.1:9180" }' },
      )
      .default({ listen: { host: '127.0.0.1', port: 9180 } }),
    database: z.string().min(1).default('/var/lib/offlink/ha.sqlite'),
    dataplane: z
      .strictObject({
        backend,
        table: routingTable.default(200),
        mss,
      })
      .default({ backend: 'seg6', table: 200, mss: 1400 }),
    maxLifetimeSeconds: z.number().int().min(4).max(MAX_LIFETIME_SECONDS).default(3600),
    refreshAdviceSeconds: z.number().int().min(4).max(MAX_LIFETIME_SECONDS).optional(),
    replayWindowSeconds: z.number().int().min(1).max(3600).default(7),
    retainOnStop: z.boolean().default(true),
  }),
  mobileRouters: z.array(mobileRouter).default([]),
});

/** Parse and validate config text. `baseDir` resolves relative `database` and `keyFile` paths. */
export function parseHomeAgentConfig(text: string, baseDir = process.cwd()): HomeAgentConfig {
  const parsed = schema.safeParse(parseYaml(text));
  if (!parsed.success) throw configError(parsed.error);
  const raw = parsed.data;
  const mobileRouters = raw.mobileRouters.map((mr, i) => ({
    name: mr.name,
    homeAddress: mr.homeAddress,
    prefixes: [...new Set(mr.prefixes)],
    spi: mr.spi,
    key: resolveKey(mr, `mobileRouters[${i}]`, baseDir, key),
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
  return loadConfigFile(path, parseHomeAgentConfig);
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
