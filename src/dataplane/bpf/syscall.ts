// The bpf(2) seam: what the eBPF backend asks of the kernel besides iproute2 (which loads and attaches
// the programs). The real one is a small Node-API addon (syscall.c, built by scripts/build); unit tests
// use FakeBpf, an in-memory kernel with the same answers.
import { existsSync, readdirSync, unlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { OfflinkError } from '../../errors.ts';

export interface ProgInfo {
  id: number;
  type: number;
  name: string;
  tag: string;
  mapIds: number[];
}

export interface MapInfo {
  id: number;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  name: string;
}

/** BPF_MAP_UPDATE_ELEM flags (uapi). */
export const BPF_ANY = 0;

/** One call per syscall; every method throws an Error whose `code` is the errno name. */
export interface BpfSyscalls {
  objGet(path: string): number;
  objPin(fd: number, path: string): void;
  mapGetFdById(id: number): number;
  progGetFdById(id: number): number;
  /** The id of the next loaded program after `id` (0: the first), or null after the last. */
  progNextId(id: number): number | null;
  progInfo(fd: number): ProgInfo;
  mapInfo(fd: number): MapInfo;
  /** The value, or null when the key is absent. */
  mapLookup(fd: number, key: Uint8Array, valueSize: number): Buffer | null;
  mapUpdate(fd: number, key: Uint8Array, value: Uint8Array, flags: number): void;
  /** false when the key was absent. */
  mapDelete(fd: number, key: Uint8Array): boolean;
  /** The key after `key` (the first with null), or null at the end. */
  mapNextKey(fd: number, key: Uint8Array | null, keySize: number): Buffer | null;
  /** `count` records back to back in `keys` and `values`. */
  mapUpdateBatch(fd: number, keys: Uint8Array, values: Uint8Array, count: number, flags: number): number;
  isBpffs(path: string): boolean;
  mountBpffs(path: string): void;
  unmount(path: string): void;
  /** Remove a pin (the object lives on while something else holds it). */
  unpin(path: string): void;
  /** Names pinned in a bpffs directory ([] when it does not exist). */
  pinned(dir: string): string[];
  close(fd: number): void;
  /**
   * What bpf_skb_adjust_room(skb, -40, BPF_ADJ_ROOM_MAC, flags) returns on a crafted IPv4-in-IPv6 packet
   * (a throwaway program run once with BPF_PROG_TEST_RUN): 0, or a negative errno (-EINVAL: unknown flag).
   */
  adjustRoomProbe(flags: number): number;
}

/** uapi bpf_skb_adjust_room flags the decapsulation program passes (offlink.bpf.c). */
export const ADJ_ROOM = { fixedGso: 1 << 0, decapL3IPv4: 1 << 7 } as const;

/**
 * Whether this kernel decapsulates IPv4 inside IPv6 the way offlink.bpf.c does it (BPF_F_ADJ_ROOM_DECAP_L3_IPV4,
 * Linux ≥ 6.3); older kernels load the program but fail that call for every such packet.
 */
export function decapsulatesIPv4(sys: BpfSyscalls): boolean {
  return sys.adjustRoomProbe(ADJ_ROOM.fixedGso | ADJ_ROOM.decapL3IPv4) === 0;
}

/** IPv4 prefixes on a kernel that cannot decapsulate IPv4 inside IPv6. */
export class NoIPv4DecapError extends OfflinkError {
  constructor(prefixes: readonly string[]) {
    super(
      'ERR_DATAPLANE_IPV4',
      `IPv4 mobile network prefixes (${prefixes.slice(0, 3).join(', ')}) need Linux >= 6.3 on the bpf data plane: ` +
        'this kernel does not know BPF_F_ADJ_ROOM_DECAP_L3_IPV4, so IPv4 packets tunnelled in IPv6 could not be ' +
        'decapsulated (probed with BPF_PROG_TEST_RUN)',
    );
  }
}

/** Where scripts/build puts what it builds (the repository's build/). */
export function buildPath(file: string): string {
  return fileURLToPath(new URL(`../../../build/${file}`, import.meta.url));
}

export class NotBuiltError extends OfflinkError {
  constructor(file: string) {
    super(
      'ERR_NOT_BUILT',
      `${file} is missing: offlink's eBPF data plane is built by scripts/build (clang, libbpf-dev, a C compiler)`,
    );
  }
}

type Addon = Omit<BpfSyscalls, 'unpin' | 'pinned'>;

/** The addon (require's cache makes later calls cheap; a native module is process-wide anyway). */
export function kernelBpf(): BpfSyscalls {
  const path = buildPath('offlink_bpf.node');
  if (!existsSync(path)) throw new NotBuiltError(path);
  const addon = createRequire(import.meta.url)(path) as Addon;
  return {
    ...addon,
    unpin: (pin) => unlinkSync(pin),
    pinned: (dir) => {
      try {
        return readdirSync(dir);
      } catch (err) {
        if ((err as { code?: string }).code === 'ENOENT') return [];
        throw err;
      }
    },
  };
}

/** The compiled eBPF object that iproute2 loads. */
export function programObject(): string {
  const path = buildPath('offlink.bpf.o');
  if (!existsSync(path)) throw new NotBuiltError(path);
  return path;
}
