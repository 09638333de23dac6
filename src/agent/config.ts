// Host agent configuration (examples/agent.yaml): YAML validated with zod. Every problem becomes one
// ConfigError naming the key (`networks[1].guests[0]: guest-1 is already in networks[0] (net1)`), so a
// wrong config stops the agent with one line that says where to look.
//
// A host holds any number of mobile networks (each one MR instance); a network has any number of guests.
// One network per host with all guests in it is the report's setting; one network per guest lets guests
// move one at a time (the report's §7.2). The network entries are the mobile router's own format
// (src/mobilerouter/config.ts), plus `guests` and `activeOnStart`.
import { isIPv6 } from 'node:net';
import { resolve } from 'node:path';
import { z } from 'zod';
import { configError } from '../config/errors.ts';
import { loadConfigFile, parseYaml, resolveKey } from '../config/load.ts';
import {
  backend,
  hexKey,
  interfaceName,
  ipv6,
  keySource,
  listenAddress,
  macAddress,
  metricsSection,
  mss,
  name,
  port,
  routingTable,
  sameSocket,
} from '../config/schema.ts';
import type { BackendChoice } from '../dataplane/probe.ts';
import { ConfigError } from '../errors.ts';
import type { LibvirtHypervisorConfig } from '../hypervisor/libvirt/index.ts';
import { guestIpv4Problem } from '../hypervisor/qemu/guest-image.ts';
import type { QemuHypervisorConfig } from '../hypervisor/qemu/index.ts';
import { DEFAULT_TLS_DIR, tlsDirProblem } from '../hypervisor/tls.ts';
import {
  type MobileNetworkConfig,
  type MobileRouterHostConfig,
  parseMobileNetwork,
} from '../mobilerouter/config.ts';
import { isIPv4Text, mappedPrefix, prefixContains } from '../protocol/address.ts';
import { SIGNALING_PORT } from '../protocol/constants.ts';
import { MIN_CLUSTER_KEY_BYTES } from './auth.ts';

export interface AgentNetworkConfig extends MobileNetworkConfig {
  /** Guest names (as the hypervisor driver knows them) that belong to this network. */
  guests: string[];
  /**
   * Register with the HA when the agent starts. Exactly one host should say so for a network; the
   * others start on standby. An agent that finds the guests here at start registers regardless.
   */
  activeOnStart: boolean;
}

export type HypervisorConfig =
  | {
      driver: 'netns';
      /** Host name → network namespace (under /run/netns). Every peer needs one; this host may omit itself. */
      namespaces: Record<string, string>;
      /** Per guest: the host end of its veth (default `vg-<guest>`). */
      guests: Record<string, { port?: string }>;
    }
  /** QEMU guests (src/hypervisor/qemu/index.ts describes the section). No namespaces: QEMU migrates over TCP. */
  | (QemuHypervisorConfig & { namespaces?: undefined })
  /** libvirt domains (src/hypervisor/libvirt/index.ts describes the section), migrated libvirtd to libvirtd. */
  | (LibvirtHypervisorConfig & { namespaces?: undefined });

export interface AgentConfig {
  /** This host's name; peers know it by this name. */
  host: string;
  /** Host-level mobile router settings (uplink, HA, decapsulation table). */
  mobileRouter: MobileRouterHostConfig;
  /** Kernel side of the mobile router: backend and TCP MSS clamp (docs/dataplane.md). */
  dataplane: { backend: BackendChoice; mss: number };
  /** A fixed care-of address instead of tracking the uplink's (tests, unusual setups). */
  careOfAddress: string | undefined;
  /** Where run-time files go (radvd configs, pid files). */
  runDir: string;
  control: {
    listen: { host: string; port: number };
    key: Buffer;
    /** Requests whose timestamp differs from our clock by more are refused. */
    clockSkewMs: number;
    /** Migrations kept in status. */
    history: number;
  };
  /** Unsigned GET /metrics and /healthz for Prometheus; undefined = none (the control API's signed /metrics stays). */
  metrics?: { host: string; port: number } | undefined;
  /** Host name → control API base URL. */
  peers: Record<string, string>;
  hypervisor: HypervisorConfig;
  networks: AgentNetworkConfig[];
}

// A control API may listen on a scoped address (fe80::1%eth0), which node:net reads and we hand to it.
const listen = listenAddress(
  (host, v6) => !v6 || isIPv6(host),
  'must be address:port ("[2001:db8:a::2]:7400" or "127.0.0.1:7400")',
);

const peerUrl = z.string().refine((u) => {
  try {
    const url = new URL(u);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.pathname === '/' && !url.search;
  } catch {
    return false;
  }
}, 'must be an http(s) base URL ("http://[2001:db8:b::2]:7400")');

const clusterKey = hexKey(MIN_CLUSTER_KEY_BYTES);

// libvirt connection URIs: driver[+transport]://[host]/path (qemu+tcp://[2001:db8:a::2]/system,
// qemu:///system, xen:///system); libvirt itself says whether it can connect.
const libvirtUri = z
  .string()
  .regex(
    /^[a-z][a-z0-9]*(\+[a-z0-9]+)?:\/\/[^\s]*\/[^\s]*$/,
    'must be a libvirt connection URI ("qemu+tcp://[2001:db8:a::2]/system", "qemu:///system")',
  );

// A QEMU guest's static IPv4 side (dual-stack networks); guest-image.ts says what is wrong with one.
const qemuGuestIpv4 = z.strictObject({ address: z.string(), gateway: z.string() }).superRefine((v, ctx) => {
  const problem = guestIpv4Problem(v);
  if (problem) ctx.addIssue({ code: 'custom', path: [problem.key], message: problem.why });
});

// A QEMU guest's readiness line: a regular expression over its serial console.
const consoleRegex = z
  .string()
  .min(1)
  .refine((v) => {
    try {
      new RegExp(v);
      return true;
    } catch {
      return false;
    }
  }, 'not a regular expression (the line the guest prints on its console when ready)');

const hypervisor = z.discriminatedUnion('driver', [
  z.strictObject({
    driver: z.literal('netns'),
    namespaces: z
      .record(name, z.string().regex(/^[A-Za-z0-9_.-]{1,255}$/, 'not a namespace name'))
      .default({}),
    guests: z.record(name, z.strictObject({ port: interfaceName.optional() })).default({}),
  }),
  z.strictObject({
    driver: z.literal('qemu'),
    guests: z
      .record(
        name,
        z.strictObject({
          mac: macAddress,
          memoryMiB: z.number().int().min(64).max(65536).default(128),
          bootOn: name.optional(),
          tap: interfaceName.optional(),
          ipv4: qemuGuestIpv4.optional(),
          kernel: z.string().min(1).optional(),
          initrd: z.string().min(1).optional(),
          append: z.string().min(1).optional(),
          ready: z.union([z.literal(false), consoleRegex]).optional(),
          extraArgs: z.array(z.string()).optional(),
        }),
      )
      .default({}),
    migration: z
      .strictObject({
        downtimeLimitMs: z.number().int().min(1).max(60_000).optional(),
        maxBandwidth: z.number().int().min(1).optional(),
        overlap: z.boolean().optional(),
        tls: z.strictObject({ dir: z.string().min(1).default(DEFAULT_TLS_DIR) }).optional(),
      })
      .optional(),
    qemu: z.string().min(1).optional(),
    accel: z.enum(['auto', 'kvm', 'tcg'], { error: 'must be one of: auto, kvm, tcg' }).optional(),
    cpu: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9_.,=+-]*$/, 'not a QEMU CPU model ("host", "max", "Skylake-Server")')
      .optional(),
    bootTimeoutSeconds: z.number().int().min(1).max(3600).optional(),
  }),
  z.strictObject({
    driver: z.literal('libvirt'),
    uri: libvirtUri,
    peers: z.record(name, libvirtUri).default({}),
    guests: z
      .record(
        name,
        z.strictObject({
          domain: z
            .string()
            .regex(/^[^/\s'][^/']{0,199}$/, 'not a libvirt domain name')
            .optional(),
        }),
      )
      .default({}),
    migration: z
      .strictObject({
        // the handover at libvirt's switchover (default) or after the migration (hypervisor/libvirt/driver.ts)
        overlap: z.boolean().optional(),
        p2p: z.boolean().optional(),
        persistent: z.boolean().optional(),
        // libvirt reads the certificates from its qemu.conf (migrate_tls_x509_cert_dir), not from here.
        tls: z.boolean().optional(),
        bandwidthMiBs: z.number().int().min(1).optional(),
        timeoutSeconds: z.number().int().min(1).max(86_400).optional(),
      })
      .optional(),
    virsh: z.string().min(1).optional(),
  }),
]);

const schema = z.strictObject({
  host: name,
  uplink: interfaceName,
  homeAgent: z.strictObject({
    address: ipv6,
    port: port.default(SIGNALING_PORT),
  }),
  careOfAddress: ipv6.optional(),
  dataplane: z
    .strictObject({
      backend,
      decapTable: routingTable.default(200),
      mss,
    })
    .default({ backend: 'auto', decapTable: 200, mss: 1400 }),
  runDir: z.string().min(1).default('/run/offlink'),
  control: z.strictObject({
    listen,
    ...keySource(clusterKey),
    clockSkewSeconds: z.number().int().min(1).max(300).default(30),
    history: z.number().int().min(1).max(10_000).default(50),
  }),
  metrics: metricsSection.optional(),
  peers: z.record(name, peerUrl).default({}),
  hypervisor,
  // Validated entry by entry below: the mobile router's schema plus the agent's keys.
  networks: z.array(z.looseObject({})).default([]),
});

const agentNetworkKeys = z.strictObject({
  guests: z.array(name).default([]),
  activeOnStart: z.boolean().default(false),
});

/** Parse and validate config text; `baseDir` resolves relative key files and runDir. */
export function parseAgentConfig(text: string, baseDir = process.cwd()): AgentConfig {
  const parsed = schema.safeParse(parseYaml(text));
  if (!parsed.success) throw configError(parsed.error);
  const raw = parsed.data;

  const networks = raw.networks.map((entry, i) => parseNetwork(entry, i, baseDir));
  checkNetworks(networks);
  for (const peer of Object.keys(raw.peers)) {
    if (peer === raw.host) throw new ConfigError(`peers.${peer}`, 'this is the host itself');
    if (raw.hypervisor.driver === 'netns' && raw.hypervisor.namespaces[peer] === undefined) {
      throw new ConfigError(
        `hypervisor.namespaces.${peer}`,
        `required: the netns driver moves guests into peer ${peer}'s namespace`,
      );
    }
  }
  if (raw.hypervisor.driver === 'libvirt') checkLibvirt(raw.hypervisor, raw.peers, networks);
  if (raw.hypervisor.driver === 'qemu') {
    checkQemu(raw.hypervisor, raw.host, raw.peers, networks);
    const tls = raw.hypervisor.migration?.tls;
    if (tls) {
      tls.dir = resolve(baseDir, tls.dir);
      const problem = tlsDirProblem(tls.dir);
      if (problem) throw new ConfigError('hypervisor.migration.tls.dir', problem);
    }
  }
  if (raw.metrics && sameSocket(raw.metrics.listen, raw.control.listen)) {
    throw new ConfigError(
      'metrics.listen',
      `${raw.metrics.listen.host} port ${raw.metrics.listen.port} is taken by control.listen: give metrics another port`,
    );
  }
  const known = new Set(networks.flatMap((n) => n.guests));
  for (const g of Object.keys(raw.hypervisor.guests)) {
    if (!known.has(g)) throw new ConfigError(`hypervisor.guests.${g}`, 'not a guest of any network');
  }
  return {
    host: raw.host,
    mobileRouter: {
      uplink: raw.uplink,
      haAddress: raw.homeAgent.address,
      haPort: raw.homeAgent.port,
      decapTable: raw.dataplane.decapTable,
    },
    dataplane: { backend: raw.dataplane.backend, mss: raw.dataplane.mss },
    careOfAddress: raw.careOfAddress,
    runDir: resolve(baseDir, raw.runDir),
    control: {
      listen: raw.control.listen,
      key: resolveKey(raw.control, 'control', baseDir, clusterKey),
      clockSkewMs: raw.control.clockSkewSeconds * 1000,
      history: raw.control.history,
    },
    metrics: raw.metrics?.listen,
    peers: raw.peers,
    hypervisor: raw.hypervisor,
    networks,
  };
}

/** Read and validate a config file. */
export function loadAgentConfig(path: string): AgentConfig {
  return loadConfigFile(path, parseAgentConfig);
}

function parseNetwork(entry: Record<string, unknown>, i: number, baseDir: string): AgentNetworkConfig {
  const { guests, activeOnStart, ...mr } = entry;
  const own = agentNetworkKeys.safeParse({ guests, activeOnStart });
  if (!own.success) throw configError(own.error, `networks[${i}]`);
  const network = parseMobileNetwork(mr, { at: `networks[${i}]`, baseDir });
  return { ...network, guests: own.data.guests, activeOnStart: own.data.activeOnStart };
}

function checkNetworks(networks: readonly AgentNetworkConfig[]): void {
  const seen = new Map<string, number>();
  const once = (key: string, value: string | number, i: number) => {
    const prior = seen.get(`${key}=${value}`);
    if (prior !== undefined) {
      throw new ConfigError(
        `networks[${i}].${key}`,
        `${value} is already used by networks[${prior}] (${networks[prior]!.name})`,
      );
    }
    seen.set(`${key}=${value}`, i);
  };
  networks.forEach((n, i) => {
    once('name', n.name, i);
    once('bridge', n.bridge, i);
    once('homeAddress', n.homeAddress, i);
    once('spi', n.spi, i);
    // Each network's egress route lives in its own table (docs/dataplane.md): two networks sharing one would
    // overwrite each other's default route.
    once('table', n.table, i);
    n.guests.forEach((g, j) => {
      const prior = seen.get(`guest=${g}`);
      if (prior !== undefined) {
        throw new ConfigError(
          `networks[${i}].guests[${j}]`,
          `${g} is already in networks[${prior}] (${networks[prior]!.name}): a guest belongs to one network`,
        );
      }
      seen.set(`guest=${g}`, i);
    });
  });
}

/** Every peer has a libvirt URI to migrate to, no URI names a stranger, and domains are one guest's each. */
function checkLibvirt(
  h: LibvirtHypervisorConfig,
  peers: Record<string, string>,
  networks: readonly AgentNetworkConfig[],
): void {
  for (const peer of Object.keys(peers)) {
    if (h.peers[peer] === undefined)
      throw new ConfigError(
        `hypervisor.peers.${peer}`,
        `required: the libvirt driver migrates guests to peer ${peer}'s libvirtd at this URI`,
      );
  }
  for (const host of Object.keys(h.peers)) {
    if (peers[host] === undefined) throw new ConfigError(`hypervisor.peers.${host}`, 'not one of peers');
  }
  const domains = new Map<string, string>();
  for (const guest of networks.flatMap((n) => n.guests)) {
    const domain = h.guests[guest]?.domain ?? guest;
    const prior = domains.get(domain);
    if (prior !== undefined)
      throw new ConfigError(
        `hypervisor.guests.${guest}.domain`,
        `libvirt domain ${domain} is already guest ${prior}'s`,
      );
    domains.set(domain, guest);
  }
}

/** Guests boot on known hosts; an IPv4 side lies in one of its network's IPv4 prefixes and comes without `append`. */
function checkQemu(
  h: QemuHypervisorConfig,
  host: string,
  peers: Record<string, string>,
  networks: readonly AgentNetworkConfig[],
): void {
  for (const [g, guest] of Object.entries(h.guests)) {
    if (guest.bootOn !== undefined && guest.bootOn !== host && peers[guest.bootOn] === undefined)
      throw new ConfigError(
        `hypervisor.guests.${g}.bootOn`,
        `${guest.bootOn} is neither this host nor a peer`,
      );
    if (!guest.ipv4) continue;
    if (guest.append !== undefined)
      throw new ConfigError(
        `hypervisor.guests.${g}.ipv4`,
        'goes on the default kernel command line: with append, put offlink.addr4= and offlink.gw4= in it instead',
      );
    const network = networks.find((n) => n.guests.includes(g));
    const v4 = network?.prefixes.filter(isIPv4Text) ?? [];
    const address = guest.ipv4.address.slice(0, guest.ipv4.address.indexOf('/'));
    if (network && !v4.some((p) => prefixContains(mappedPrefix(p), `::ffff:${address}`)))
      throw new ConfigError(
        `hypervisor.guests.${g}.ipv4.address`,
        v4.length === 0
          ? `network ${network.name} has no IPv4 prefix (add one to its prefixes, e.g. "10.1.0.0/24")`
          : `${address} is not in network ${network.name}'s IPv4 prefixes (${v4.join(', ')})`,
      );
  }
}
