// The eBPF program's maps as typed values (offlink.bpf.c holds the C side of each layout): prefixes map
// to tunnels or peer addresses, addresses form sets, counters are named. Everything else in the backend
// speaks these types; bytes exist only here.
import { readFileSync } from 'node:fs';
import { OfflinkError } from '../../errors.ts';
import { formatIPv6, parseDestination, parseIPv6 } from '../../protocol/address.ts';
import { BPF_ANY, type BpfSyscalls } from './syscall.ts';

/** Map names in the program (and so the pin names under `<bpffs>/tc/globals/`). */
export const MAP_NAMES = {
  encapDst: 'ofl_encap_dst',
  encapSrc: 'ofl_encap_src',
  ingress: 'ofl_ingress',
  peers: 'ofl_peers',
  local: 'ofl_local',
  stats: 'ofl_stats',
  fdb: 'ofl_fdb',
} as const;
export type MapRole = keyof typeof MAP_NAMES;

/** Kernel map types (uapi enum bpf_map_type). */
export const MAP_TYPE = { hash: 1, percpuArray: 6, lpmTrie: 11 } as const;

/**
 * Each map as offlink.bpf.c defines it. A pinned map of another shape (left by an older build) cannot be
 * reused by the loader, so it is unpinned first and the new load makes a fresh one (its contents come
 * back from the daemon: reconcile, activation).
 */
export const MAP_SHAPES: Record<
  string,
  { type: number; keySize: number; valueSize: number; maxEntries: number }
> = {
  ofl_encap_dst: { type: MAP_TYPE.lpmTrie, keySize: 20, valueSize: 32, maxEntries: 1 << 20 },
  ofl_encap_src: { type: MAP_TYPE.lpmTrie, keySize: 20, valueSize: 32, maxEntries: 1 << 20 },
  ofl_ingress: { type: MAP_TYPE.lpmTrie, keySize: 20, valueSize: 16, maxEntries: 1 << 20 },
  ofl_peers: { type: MAP_TYPE.hash, keySize: 16, valueSize: 1, maxEntries: 1024 },
  ofl_local: { type: MAP_TYPE.hash, keySize: 16, valueSize: 1, maxEntries: 64 },
  ofl_stats: { type: MAP_TYPE.percpuArray, keySize: 4, valueSize: 8, maxEntries: 11 },
  ofl_fdb: { type: MAP_TYPE.hash, keySize: 12, valueSize: 4, maxEntries: 1 << 14 },
};

/** The program's counters, in the order of `enum ofl_counter`. */
export const COUNTERS = [
  'encapOk',
  'encapNoBinding',
  'encapError',
  'decapOk',
  'decapNoBinding',
  'decapWrongSource',
  'decapError',
  'forwardOk',
  'forwardError',
  'notLocal',
  'bridgeFastPath',
] as const;
export type CounterName = (typeof COUNTERS)[number];
export type Counters = Record<CounterName, number>;

/** The outer header of a tunnel: this end's address and the other end's. */
export interface Tunnel {
  src: string;
  dst: string;
}

const KEY_SIZE = 20;
const ADDR_SIZE = 16;
const TUNNEL_SIZE = 32;

function isIPv4(text: string): boolean {
  return text.includes('.') && !text.includes(':');
}

/** LPM key: prefix length (host order u32) + 16 address bytes; IPv4 prefixes as ::ffff:a.b.c.d/(96+n). */
export function encodeKey(prefix: string, out = new Uint8Array(KEY_SIZE), offset = 0): Uint8Array {
  const view = new DataView(out.buffer, out.byteOffset + offset, KEY_SIZE);
  if (isIPv4(prefix)) {
    const [addr, len = '32'] = prefix.split('/');
    const length = Number(len);
    const octets = addr!.split('.').map(Number);
    if (
      octets.length !== 4 ||
      octets.some((octet) => !Number.isInteger(octet) || octet < 0 || octet > 255) ||
      !/^\d{1,2}$/.test(len) ||
      length > 32
    )
      throw new OfflinkError('ERR_ADDRESS', `not an IPv4 prefix: ${JSON.stringify(prefix)}`);
    view.setUint32(0, 96 + length, true);
    out.fill(0, offset + 4, offset + 14);
    out[offset + 14] = 0xff;
    out[offset + 15] = 0xff;
    for (let i = 0; i < 4; i++) {
      const keep = Math.max(0, Math.min(8, length - 8 * i));
      out[offset + 16 + i] = octets[i]! & (0xff << (8 - keep));
    }
    return out;
  }
  const p = parseDestination(prefix);
  view.setUint32(0, p.length, true);
  out.set(parseIPv6(p.address), offset + 4);
  return out;
}

export function decodeKey(key: Uint8Array): string {
  const length = new DataView(key.buffer, key.byteOffset, KEY_SIZE).getUint32(0, true);
  const addr = key.subarray(4, 20);
  const mapped = addr.subarray(0, 10).every((b) => b === 0) && addr[10] === 0xff && addr[11] === 0xff;
  if (mapped && length >= 96) return `${[...addr.subarray(12)].join('.')}/${length - 96}`;
  return `${formatIPv6(addr)}/${length}`;
}

function encodeTunnel(t: Tunnel, out = new Uint8Array(TUNNEL_SIZE), offset = 0): Uint8Array {
  out.set(parseIPv6(t.src), offset);
  out.set(parseIPv6(t.dst), offset + ADDR_SIZE);
  return out;
}

function decodeTunnel(v: Uint8Array): Tunnel {
  return { src: formatIPv6(v.subarray(0, 16)), dst: formatIPv6(v.subarray(16, 32)) };
}

const ONE = Uint8Array.of(1);

/** An LPM map from prefixes to values of type V. */
export class PrefixMap<V> {
  constructor(
    private readonly sys: BpfSyscalls,
    readonly fd: number,
    private readonly codec: {
      size: number;
      encode(v: V, out?: Uint8Array, offset?: number): Uint8Array;
      decode(b: Uint8Array): V;
    },
  ) {}

  get(prefix: string): V | undefined {
    const v = this.sys.mapLookup(this.fd, encodeKey(prefix), this.codec.size);
    return v ? this.codec.decode(v) : undefined;
  }

  set(prefix: string, value: V): void {
    this.sys.mapUpdate(this.fd, encodeKey(prefix), this.codec.encode(value), BPF_ANY);
  }

  /** Many entries in one syscall (BPF_MAP_UPDATE_BATCH). */
  setMany(entries: readonly (readonly [string, V])[]): void {
    if (entries.length === 0) return;
    if (entries.length === 1) {
      this.set(entries[0]![0], entries[0]![1]);
      return;
    }
    const keys = new Uint8Array(KEY_SIZE * entries.length);
    const values = new Uint8Array(this.codec.size * entries.length);
    entries.forEach(([k, v], i) => {
      encodeKey(k, keys, i * KEY_SIZE);
      this.codec.encode(v, values, i * this.codec.size);
    });
    this.sys.mapUpdateBatch(this.fd, keys, values, entries.length, BPF_ANY);
  }

  /** false when it was not there. */
  delete(prefix: string): boolean {
    return this.sys.mapDelete(this.fd, encodeKey(prefix));
  }

  /** Every entry, read with BPF_MAP_GET_NEXT_KEY (the map must not change meanwhile). */
  entries(): Map<string, V> {
    const out = new Map<string, V>();
    for (const key of keysOf(this.sys, this.fd, KEY_SIZE)) {
      const v = this.sys.mapLookup(this.fd, key, this.codec.size);
      if (v) out.set(decodeKey(key), this.codec.decode(v));
    }
    return out;
  }
}

function* keysOf(sys: BpfSyscalls, fd: number, size: number): Generator<Buffer> {
  let key = sys.mapNextKey(fd, null, size);
  while (key) {
    yield key;
    key = sys.mapNextKey(fd, key, size);
  }
}

/** A hash map used as a set of IPv6 addresses. */
export class AddressSet {
  constructor(
    private readonly sys: BpfSyscalls,
    readonly fd: number,
  ) {}

  add(address: string): void {
    this.sys.mapUpdate(this.fd, parseIPv6(address), ONE, BPF_ANY);
  }

  delete(address: string): boolean {
    return this.sys.mapDelete(this.fd, parseIPv6(address));
  }

  values(): string[] {
    return [...keysOf(this.sys, this.fd, ADDR_SIZE)].map((k) => formatIPv6(k));
  }

  /** Make the set hold exactly `addresses`. */
  replace(addresses: Iterable<string>): void {
    const want = new Set([...addresses].map((a) => formatIPv6(parseIPv6(a))));
    for (const a of this.values()) if (!want.has(a)) this.delete(a);
    for (const a of want) this.add(a);
  }
}

/** Possible CPUs (per-CPU map values hold one slot each): /sys/devices/system/cpu/possible, e.g. "0-7". */
export function possibleCpus(text = readFileSync('/sys/devices/system/cpu/possible', 'utf8')): number {
  let n = 0;
  for (const part of text.trim().split(',')) {
    const [a, b] = part.split('-').map(Number);
    n = Math.max(n, (b ?? a!) + 1);
  }
  return n;
}

/** File descriptors of one program instance's maps, by role (the bridge's map only once it was loaded). */
export type MapFds = Record<Exclude<MapRole, 'fdb'>, number> & { fdb?: number };

/** A bridge's forwarding database as the fast path sees it: (bridge, MAC) → port, by ifindex. */
export interface FdbEntry {
  bridge: number;
  mac: string;
  port: number;
}

function fdbKey(bridge: number, mac: string): Uint8Array {
  const key = new Uint8Array(12);
  new DataView(key.buffer).setUint32(0, bridge, true);
  const bytes = mac.split(':').map((h) => Number.parseInt(h, 16));
  if (bytes.length !== 6 || bytes.some((b) => !(b >= 0 && b <= 255)))
    throw new OfflinkError('ERR_ADDRESS', `not a MAC address: ${JSON.stringify(mac)}`);
  key.set(bytes, 4);
  return key;
}

export class FdbMap {
  constructor(
    private readonly sys: BpfSyscalls,
    readonly fd: number,
  ) {}

  set(e: FdbEntry): void {
    const value = new Uint8Array(4);
    new DataView(value.buffer).setUint32(0, e.port, true);
    this.sys.mapUpdate(this.fd, fdbKey(e.bridge, e.mac), value, BPF_ANY);
  }

  delete(bridge: number, mac: string): boolean {
    return this.sys.mapDelete(this.fd, fdbKey(bridge, mac));
  }

  entries(): FdbEntry[] {
    const out: FdbEntry[] = [];
    for (const key of keysOf(this.sys, this.fd, 12)) {
      const v = this.sys.mapLookup(this.fd, key, 4);
      if (!v) continue;
      const mac = [...key.subarray(4, 10)].map((b) => b.toString(16).padStart(2, '0')).join(':');
      out.push({ bridge: key.readUInt32LE(0), mac, port: v.readUInt32LE(0) });
    }
    return out;
  }
}

/** The maps of one daemon's program, opened. */
export class BpfMaps {
  readonly encapDst: PrefixMap<Tunnel>;
  readonly encapSrc: PrefixMap<Tunnel>;
  readonly ingress: PrefixMap<string>;
  readonly peers: AddressSet;
  readonly local: AddressSet;
  readonly fdb: FdbMap | undefined;
  private readonly cpus: number;

  constructor(
    private readonly sys: BpfSyscalls,
    readonly fds: MapFds,
    cpus = possibleCpus(),
  ) {
    const tunnel = { size: TUNNEL_SIZE, encode: encodeTunnel, decode: decodeTunnel };
    const address = {
      size: ADDR_SIZE,
      encode: (a: string, out = new Uint8Array(ADDR_SIZE), offset = 0) => {
        out.set(parseIPv6(a), offset);
        return out;
      },
      decode: (b: Uint8Array) => formatIPv6(b),
    };
    this.encapDst = new PrefixMap(sys, fds.encapDst, tunnel);
    this.encapSrc = new PrefixMap(sys, fds.encapSrc, tunnel);
    this.ingress = new PrefixMap(sys, fds.ingress, address);
    this.peers = new AddressSet(sys, fds.peers);
    this.local = new AddressSet(sys, fds.local);
    this.fdb = fds.fdb === undefined ? undefined : new FdbMap(sys, fds.fdb);
    this.cpus = cpus;
  }

  /** The program's counters, summed over CPUs. */
  counters(): Counters {
    const out = {} as Counters;
    const key = new Uint8Array(4);
    COUNTERS.forEach((name, i) => {
      new DataView(key.buffer).setUint32(0, i, true);
      const v = this.sys.mapLookup(this.fds.stats, key, 8 * this.cpus);
      let sum = 0n;
      if (v) for (let cpu = 0; cpu < this.cpus; cpu++) sum += v.readBigUInt64LE(8 * cpu);
      out[name] = Number(sum);
    });
    return out;
  }

  close(): void {
    for (const fd of Object.values(this.fds)) if (fd !== undefined) this.sys.close(fd);
  }
}
