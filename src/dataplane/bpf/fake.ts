// An in-memory kernel for the eBPF backend's unit tests: maps with the kernel's lookup rules (LPM tries
// match the longest prefix), pins, bpffs mounts, and a `load` that plays iproute2 loading the object
// (creating the pinned maps, or reusing them). It counts syscalls, so a test can say "no kernel work".
import { BpfMaps, MAP_NAMES, MAP_SHAPES, MAP_TYPE, type MapFds, type MapRole } from './maps.ts';
import type { BpfSyscalls, MapInfo, ProgInfo } from './syscall.ts';

const LPM_TRIE = MAP_TYPE.lpmTrie;
const PERCPU_ARRAY = MAP_TYPE.percpuArray;

interface FakeMap {
  info: MapInfo;
  entries: Map<string, Uint8Array>;
}

function errno(code: string): Error {
  return Object.assign(new Error(code), { code });
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** Bit `i` (from the most significant) of the 16 address bytes after the 4-byte prefix length. */
function bit(key: Uint8Array, i: number): number {
  return (key[4 + (i >> 3)]! >> (7 - (i & 7))) & 1;
}

function lpmMatch(stored: Uint8Array, key: Uint8Array): boolean {
  const len = new DataView(stored.buffer, stored.byteOffset).getUint32(0, true);
  const want = new DataView(key.buffer, key.byteOffset).getUint32(0, true);
  if (len > want) return false;
  for (let i = 0; i < len; i++) if (bit(stored, i) !== bit(key, i)) return false;
  return true;
}

export class FakeBpf implements BpfSyscalls {
  /** Syscalls made, by name. */
  readonly calls: string[] = [];
  readonly maps = new Map<number, FakeMap>();
  /** path → map id */
  readonly pins = new Map<string, number>();
  readonly mounts = new Set<string>();
  private readonly fds = new Map<number, number>(); // fd → map id
  private nextId = 1;
  private nextFd = 100;

  /** Whether the kernel played knows BPF_F_ADJ_ROOM_DECAP_L3_IPV4 (Linux >= 6.3). */
  decapIPv4 = true;

  constructor(readonly cpus = 2) {}

  adjustRoomProbe(flags: number): number {
    this.calls.push('adjustRoomProbe');
    return flags & ~(1 | (this.decapIPv4 ? 1 << 7 : 0)) ? -22 : 0;
  }

  /**
   * What `tc filter … obj` / `ip route … encap bpf obj` does to the maps: each map pinned under
   * `<bpffs>/tc/globals/` is reused, the others are created and pinned.
   */
  load(bpffs: string): void {
    for (const name of Object.values(MAP_NAMES)) {
      const path = `${bpffs}/tc/globals/${name}`;
      if (this.pins.has(path)) continue;
      const id = this.nextId++;
      this.maps.set(id, { info: { id, name, flags: 0, ...MAP_SHAPES[name]! }, entries: new Map() });
      this.pins.set(path, id);
    }
  }

  /** What a daemon with its bpffs at `bpffs` holds, every map decoded (close() when done). */
  openMaps(bpffs: string): BpfMaps {
    const fds = {} as MapFds;
    for (const [role, name] of Object.entries(MAP_NAMES) as [MapRole, string][])
      fds[role] = this.objGet(`${bpffs}/tc/globals/${name}`);
    return new BpfMaps(this, fds, this.cpus);
  }

  /** Add to a counter of the map pinned as ofl_stats under `bpffs`, on `cpu`. */
  count(bpffs: string, index: number, n: number, cpu = 0): void {
    const map = this.maps.get(this.pins.get(`${bpffs}/tc/globals/${MAP_NAMES.stats}`)!)!;
    const key = hex(Uint8Array.of(index, 0, 0, 0));
    const value = Buffer.from(map.entries.get(key) ?? new Uint8Array(8 * this.cpus));
    value.writeBigUInt64LE(value.readBigUInt64LE(8 * cpu) + BigInt(n), 8 * cpu);
    map.entries.set(key, value);
  }

  private map(fd: number): FakeMap {
    const id = this.fds.get(fd);
    const map = id === undefined ? undefined : this.maps.get(id);
    if (!map) throw errno('EBADF');
    return map;
  }

  private open(id: number): number {
    const fd = this.nextFd++;
    this.fds.set(fd, id);
    return fd;
  }

  objGet(path: string): number {
    this.calls.push('objGet');
    const id = this.pins.get(path);
    if (id === undefined) throw errno('ENOENT');
    return this.open(id);
  }

  objPin(fd: number, path: string): void {
    this.calls.push('objPin');
    if (this.pins.has(path)) throw errno('EEXIST');
    this.pins.set(path, this.map(fd).info.id);
  }

  mapGetFdById(id: number): number {
    this.calls.push('mapGetFdById');
    if (!this.maps.has(id)) throw errno('ENOENT');
    return this.open(id);
  }

  progGetFdById(_id: number): number {
    throw errno('ENOENT');
  }

  progNextId(_id: number): number | null {
    return null;
  }

  progInfo(_fd: number): ProgInfo {
    throw errno('EBADF');
  }

  mapInfo(fd: number): MapInfo {
    return { ...this.map(fd).info };
  }

  mapLookup(fd: number, key: Uint8Array, valueSize: number): Buffer | null {
    this.calls.push('mapLookup');
    const map = this.map(fd);
    let value = map.entries.get(hex(key));
    if (map.info.type === LPM_TRIE) {
      let best = -1;
      value = undefined;
      for (const [k, v] of map.entries) {
        const stored = Buffer.from(k, 'hex');
        const len = stored.readUInt32LE(0);
        if (len > best && lpmMatch(stored, key)) {
          best = len;
          value = v;
        }
      }
    }
    if (map.info.type === PERCPU_ARRAY && !value) value = new Uint8Array(valueSize);
    return value ? Buffer.from(value.subarray(0, valueSize)) : null;
  }

  mapUpdate(fd: number, key: Uint8Array, value: Uint8Array, _flags: number): void {
    this.calls.push('mapUpdate');
    const map = this.map(fd);
    if (key.length !== map.info.keySize || value.length !== map.info.valueSize) throw errno('EINVAL');
    map.entries.set(hex(key), Uint8Array.from(value));
  }

  mapDelete(fd: number, key: Uint8Array): boolean {
    this.calls.push('mapDelete');
    return this.map(fd).entries.delete(hex(key));
  }

  mapNextKey(fd: number, key: Uint8Array | null, _keySize: number): Buffer | null {
    this.calls.push('mapNextKey');
    const keys = [...this.map(fd).entries.keys()];
    const i = key === null ? 0 : keys.indexOf(hex(key)) + 1;
    return i < keys.length ? Buffer.from(keys[i]!, 'hex') : null;
  }

  mapUpdateBatch(fd: number, keys: Uint8Array, values: Uint8Array, count: number, _flags: number): number {
    this.calls.push('mapUpdateBatch');
    const map = this.map(fd);
    const { keySize, valueSize } = map.info;
    for (let i = 0; i < count; i++) {
      map.entries.set(
        hex(keys.subarray(i * keySize, (i + 1) * keySize)),
        Uint8Array.from(values.subarray(i * valueSize, (i + 1) * valueSize)),
      );
    }
    return count;
  }

  isBpffs(path: string): boolean {
    return this.mounts.has(path);
  }

  mountBpffs(path: string): void {
    this.mounts.add(path);
  }

  unmount(path: string): void {
    this.mounts.delete(path);
    for (const p of [...this.pins.keys()]) if (p.startsWith(`${path}/`)) this.pins.delete(p);
  }

  unpin(path: string): void {
    if (!this.pins.delete(path)) throw errno('ENOENT');
  }

  pinned(dir: string): string[] {
    return [...this.pins.keys()].filter((p) => p.startsWith(`${dir}/`)).map((p) => p.slice(dir.length + 1));
  }

  close(fd: number): void {
    this.fds.delete(fd);
  }
}
