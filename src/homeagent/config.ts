// Home agent configuration (examples/ha.yaml): YAML validated with a zod schema. Every problem becomes one
// ConfigError naming the key path (`mobileRouters[1].prefixes[0]: not an IPv6 or IPv4 prefix`), so a wrong config
// stops the daemon with a single line that says where to look. The mobile routers (100k of them at scale)
// are parsed, validated and put into the prefix table a slice at a time, so the config never exists as
// 100k objects (bench/profiles/ha-memory.md); the error for a bad config is the one the whole document,
// validated at once, gives: YAML errors first, then zod's first issue (homeAgent, then mobileRouters, then
// unknown top-level keys), then key and key file errors, duplicates, overlapping prefixes, and last the
// homeAgent checks that span keys.
import { resolve } from 'node:path';
import { z } from 'zod';
import { configError } from '../config/errors.ts';
import { loadConfigFile, parseYamlList, resolveKey } from '../config/load.ts';
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
  metricsSection,
  mss,
  name,
  port,
  prefix,
  routingTable,
  sameSocket,
  spi,
} from '../config/schema.ts';
import type { BackendChoice } from '../dataplane/probe.ts';
import { ConfigError } from '../errors.ts';
import { canonicalIPv6, isIPv4Text, mappedPrefix, parseIPv6, prefixCovers } from '../protocol/address.ts';
import type { AuthAlgorithm } from '../protocol/types.ts';
import { PrefixTable } from './prefixtable.ts';

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
    /** Status / metrics HTTP endpoint on loopback; undefined = disabled. */
    status: { host: string; port: number } | undefined;
    /** Unsigned GET /metrics and /healthz for Prometheus, on any address; undefined = none. */
    metrics?: { host: string; port: number } | undefined;
    /** SQLite file (absolute, or ':memory:'); unused with store etcd. */
    database: string;
    /** Where bindings are kept: a local SQLite file (default) or an etcd cluster shared by home agents. */
    store?: 'sqlite' | 'etcd';
    /** With store etcd (issue 16): the cluster (etcdstore.ts). */
    etcd?: EtcdSettings | undefined;
    /**
     * The HA address on a tun device this process owns, announced (by BGP, from the routing daemon that
     * watches the device) while the HA can serve (anycast.ts); undefined = the address is configured
     * outside offlink.
     */
    anycast?: { device: string } | undefined;
    /** Runtime state (the bpf data plane's bpffs), absolute. */
    runDir: string;
    dataplane: { backend: BackendChoice; table: number; mss: number };
    maxLifetimeSeconds: number;
    refreshAdviceSeconds: number | undefined;
    replayWindowSeconds: number;
    retainOnStop: boolean;
  };
  mobileRouters: MobileRouterConfig[];
}

export interface EtcdSettings {
  endpoints: string[];
  prefix: string;
  timeoutMs: number;
  maxTxnOps: number;
  /** The cluster lease (cluster.ts); default 5. */
  leaseTtlSeconds?: number;
  name?: string | undefined;
}

const key = hexKey(MIN_KEY_BYTES);

/** An etcd member's client URL: http(s)://host:port, nothing after the port. */
const etcdEndpoint = z.string().superRefine((text, ctx) => {
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {}
  const why = !url
    ? 'not a URL'
    : url.protocol !== 'http:' && url.protocol !== 'https:'
      ? 'must be http:// or https://'
      : url.port === ''
        ? 'needs a port (etcd listens on 2379)'
        : url.pathname !== '/' || url.search || url.hash || url.username
          ? 'only scheme, host and port'
          : undefined;
  if (why) ctx.addIssue({ code: 'custom', message: `${why} ("http://[2001:db8::10]:2379")` });
});

const etcdSection = z.strictObject(
  {
    endpoints: z.array(etcdEndpoint).min(1, 'at least one etcd endpoint'),
    prefix: z
      .string()
      .regex(/^\/[\x21-\x7e]*\/$/, 'must start and end with "/" (printable ASCII, no spaces): "/offlink/"')
      .default('/offlink/'),
    /** Per etcd request; a commit that takes longer fails its BUs with 130. */
    timeoutMs: z.number().int().min(100).max(60_000).default(5000),
    /** The cluster's `--max-txn-ops` (etcd's default 128): bounds the BUs one commit holds. */
    maxTxnOps: z.number().int().min(2).max(1_000_000).default(128),
    /** TTL of this HA's cluster lease: how long a dead or partitioned HA keeps its membership and expiry. */
    leaseTtlSeconds: z.number().int().min(2).max(300).default(5),
    /** This home agent's name in the records it writes; default random per start. */
    name: name.optional(),
  },
  {
    error: (issue) =>
      issue.code === 'invalid_type' ? 'must be { endpoints: ["http://…:2379"] }' : undefined,
  },
);

function isLoopback(host: string): boolean {
  return /^127\.\d+\.\d+\.\d+$/.test(host) || (isIPv6(host) && canonicalIPv6(host) === '::1');
}

const mobileRouter = z.strictObject({
  name,
  homeAddress: ipv6,
  prefixes: z.array(prefix(undefined, { ipv4: true })).min(1, 'at least one prefix'),
  spi,
  ...keySource(key),
  algorithm,
});

const homeAgent = z.strictObject({
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
  metrics: metricsSection.optional(),
  database: z.string().min(1).default('/var/lib/offlink/ha.sqlite'),
  store: z.enum(['sqlite', 'etcd'], { error: 'must be "sqlite" or "etcd"' }).default('sqlite'),
  etcd: etcdSection.optional(),
  anycast: z
    .strictObject({
      device: z
        .string()
        .regex(/^[A-Za-z0-9_.-]{1,15}$/, 'not an interface name (1–15 characters)')
        .default('offlink-ha'),
    })
    .optional(),
  /** Runtime state: the bpf data plane's own bpffs is mounted under `<runDir>/bpf/`. */
  runDir: z.string().min(1).default('/run/offlink'),
  dataplane: z
    .strictObject({
      backend,
      table: routingTable.default(200),
      mss,
    })
    .default({ backend: 'auto', table: 200, mss: 1400 }),
  maxLifetimeSeconds: z.number().int().min(4).max(MAX_LIFETIME_SECONDS).default(3600),
  refreshAdviceSeconds: z.number().int().min(4).max(MAX_LIFETIME_SECONDS).optional(),
  replayWindowSeconds: z.number().int().min(1).max(3600).default(7),
  retainOnStop: z.boolean().default(true),
});

/** The document with its mobile routers only checked to be a list: they are validated a slice at a time. */
const head = z.strictObject({
  homeAgent,
  mobileRouters: z.array(z.unknown()).default([]),
});
const mobileRouterSlice = z.array(mobileRouter);

/** A home agent's config with its mobile routers in a prefix table (`config.mobileRouters` is empty). */
export interface LoadedHomeAgent {
  config: HomeAgentConfig;
  table: PrefixTable;
}

/**
 * Parse and validate config text into the settings and the prefix table. `baseDir` resolves relative
 * `database` and `keyFile` paths.
 */
export function parseHomeAgent(text: string, baseDir = process.cwd()): LoadedHomeAgent {
  return parseYamlList(text, 'mobileRouters', (data, slices) => {
    const parsed = head.safeParse(data);
    // zod reports unknown top-level keys after every issue inside the document, the MRs' included.
    let unknownKey: ConfigError | undefined;
    if (!parsed.success) {
      const first = parsed.error.issues[0]!;
      if (first.code !== 'unrecognized_keys' || first.path.length > 0) throw configError(parsed.error);
      unknownKey = configError(parsed.error);
    }
    const loader = new MobileRouterLoader(baseDir);
    for (const slice of slices) loader.add(slice);
    if (unknownKey) throw unknownKey;
    const table = loader.build();
    return { config: settings(parsed.data!.homeAgent, baseDir), table };
  });
}

/** Parse and validate config text, mobile routers as a list. */
export function parseHomeAgentConfig(text: string, baseDir = process.cwd()): HomeAgentConfig {
  const { config, table } = parseHomeAgent(text, baseDir);
  const mobileRouters: MobileRouterConfig[] = [];
  for (let i = 0; i < table.size; i++) {
    const mr = table.at(i);
    mobileRouters.push({
      name: mr.name,
      homeAddress: mr.homeAddress,
      prefixes: [...mr.prefixes],
      spi: mr.sa.spi,
      key: Buffer.from(mr.sa.key),
      algorithm: mr.sa.algorithm,
    });
  }
  return { ...config, mobileRouters };
}

/** Read and validate a config file, mobile routers as a list. */
export function loadHomeAgentConfig(path: string): HomeAgentConfig {
  return loadConfigFile(path, parseHomeAgentConfig);
}

/** Read and validate a config file into the settings and the prefix table (what the daemon runs on). */
export function loadHomeAgent(path: string): LoadedHomeAgent {
  return loadConfigFile(path, parseHomeAgent);
}

function settings(ha: z.output<typeof homeAgent>, baseDir: string): HomeAgentConfig {
  if (ha.refreshAdviceSeconds !== undefined && ha.refreshAdviceSeconds >= ha.maxLifetimeSeconds) {
    throw new ConfigError('homeAgent.refreshAdviceSeconds', 'must be less than maxLifetimeSeconds');
  }
  if (ha.store === 'etcd' && !ha.etcd) {
    throw new ConfigError('homeAgent.etcd', 'required with store: etcd ({ endpoints: ["http://…:2379"] })');
  }
  if (ha.store !== 'etcd' && ha.etcd) {
    throw new ConfigError('homeAgent.etcd', 'only with store: etcd (store is sqlite)');
  }
  const status = ha.status === false ? undefined : ha.status.listen;
  if (ha.metrics && status && sameSocket(ha.metrics.listen, status)) {
    throw new ConfigError(
      'homeAgent.metrics.listen',
      `${ha.metrics.listen.host} port ${ha.metrics.listen.port} is taken by homeAgent.status.listen: give metrics another port`,
    );
  }
  return {
    homeAgent: {
      address: ha.address,
      uplink: ha.uplink,
      listen: { address: ha.listen.address ?? ha.address, port: ha.listen.port },
      status,
      metrics: ha.metrics?.listen,
      database: ha.database === ':memory:' ? ha.database : resolve(baseDir, ha.database),
      store: ha.store,
      etcd: ha.etcd,
      anycast: ha.anycast,
      runDir: resolve(baseDir, ha.runDir),
      dataplane: ha.dataplane,
      maxLifetimeSeconds: ha.maxLifetimeSeconds,
      refreshAdviceSeconds: ha.refreshAdviceSeconds,
      replayWindowSeconds: ha.replayWindowSeconds,
      retainOnStop: ha.retainOnStop,
    },
    mobileRouters: [],
  };
}

/**
 * Mobile routers into the prefix table, a slice at a time. A zod issue is thrown at once (every earlier
 * slice had none, so it is the first); the first key error and the first duplicate are kept until the
 * end, since a zod issue in a later slice comes before them (and a key error before any duplicate).
 */
class MobileRouterLoader {
  private readonly table = new PrefixTable();
  /** Only while loading: names are not looked up afterwards. */
  private readonly names = new Map<string, number>();
  private count = 0;
  private keyError: ConfigError | undefined;
  private duplicate: ConfigError | undefined;

  constructor(private readonly baseDir: string) {}

  add(items: readonly unknown[]): void {
    const parsed = mobileRouterSlice.safeParse(items);
    if (!parsed.success) throw configError(parsed.error, 'mobileRouters', this.count);
    for (const raw of parsed.data) this.addOne(raw, this.count++);
  }

  private addOne(raw: z.output<typeof mobileRouter>, i: number): void {
    let mrKey: Buffer | undefined;
    if (this.keyError === undefined) {
      try {
        mrKey = resolveKey(raw, `mobileRouters[${i}]`, this.baseDir, key);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        this.keyError = err;
      }
    }
    if (mrKey === undefined || this.duplicate !== undefined) return;
    const prior = (
      [
        ['name', this.names.get(raw.name)],
        ['spi', this.table.indexOfSpi(raw.spi)],
        ['homeAddress', this.table.indexOfHomeAddress(raw.homeAddress)],
      ] as const
    ).find(([, at]) => at !== undefined);
    if (prior !== undefined) {
      this.duplicate = new ConfigError(
        `mobileRouters[${i}].${prior[0]}`,
        `duplicate of mobileRouters[${prior[1]}]`,
      );
      return;
    }
    this.names.set(raw.name, i);
    this.table.add({
      name: raw.name,
      homeAddress: raw.homeAddress,
      prefixes: [...new Set(raw.prefixes)],
      spi: raw.spi,
      key: mrKey,
      algorithm: raw.algorithm,
    });
  }

  build(): PrefixTable {
    if (this.keyError) throw this.keyError;
    if (this.duplicate) throw this.duplicate;
    this.table.trim();
    checkOverlaps(this.table);
    return this.table;
  }
}

/**
 * Two MRs claiming overlapping prefixes would fight over the same routes (RFC 3963 §6.1.2 authorization).
 * Sorted by address then length, a prefix can only overlap the chain of prefixes still open before it:
 * O(n log n) for the 100k-MR scale target instead of pairwise. Prefixes are sorted as 17-byte records
 * (address, length) in one buffer rather than as an object each.
 */
function checkOverlaps(table: PrefixTable): void {
  const owner: number[] = [];
  const slot: number[] = [];
  for (let i = 0; i < table.size; i++)
    table.prefixesAt(i).forEach((_, j) => {
      owner.push(i);
      slot.push(j);
    });
  const n = owner.length;
  const records = Buffer.alloc(n * 17);
  const text = (k: number) => table.prefixesAt(owner[k]!)[slot[k]!]!;
  // IPv4 prefixes are compared as the IPv4-mapped IPv6 prefixes that hold them (::ffff:0:0/96).
  const v6 = (k: number) => {
    const p = text(k);
    return isIPv4Text(p) ? mappedPrefix(p) : p;
  };
  for (let k = 0; k < n; k++) {
    const p = v6(k);
    const slash = p.indexOf('/');
    records.set(parseIPv6(p.slice(0, slash)), k * 17);
    records[k * 17 + 16] = Number(p.slice(slash + 1));
  }
  const order = new Uint32Array(n).map((_, k) => k);
  order.sort((a, b) => records.compare(records, b * 17, b * 17 + 17, a * 17, a * 17 + 17) || a - b);
  const open: number[] = [];
  for (const y of order) {
    while (open.length > 0 && !prefixCovers(v6(open[open.length - 1]!), v6(y))) open.pop();
    const x = open.find((candidate) => owner[candidate] !== owner[y]);
    if (x !== undefined) {
      const [first, second] = owner[x]! < owner[y]! ? [x, y] : [y, x];
      throw new ConfigError(
        `mobileRouters[${owner[second]}].prefixes[${slot[second]}]`,
        `${text(second)} overlaps ${text(first)} of mobileRouters[${owner[first]}] (${table.nameAt(owner[first]!)})`,
      );
    }
    open.push(y);
  }
}
