// One daemon's instance of the eBPF program: its own bpffs, the decapsulation program on the uplink's tc
// ingress hook, and the maps it shares with the encapsulation routes.
//
// iproute2 loads the object (`tc filter … bpf da obj`, `ip route … encap bpf xmit obj`) and pins its maps
// by name under `$TC_BPF_MNT/tc/globals/`; a later load reuses pinned maps, so every program instance of
// one daemon shares one set of maps. Each daemon gets its own bpffs, `<runDir>/bpf/<role>-<netns inode>`,
// mounted in the daemon's mount namespace: two daemons never share maps (iproute2 would otherwise fall
// back to the first bpffs in /proc/mounts — another daemon's). TC_BPF_MNT is set on every `ip`/`tc` that
// loads the object.
//
// Maps outlive the daemon: the attached programs hold them. A restarted daemon whose pins are gone (its
// mount namespace ended with it, as under `ip netns exec`) finds the maps again through the program on
// the uplink and pins them anew before anything is loaded, so forwarding never stops (retainOnStop).
import { mkdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { OfflinkError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import { checkInterfaceName } from '../ifname.ts';
import type { Encap, NetKernel } from '../kernel.ts';
import { BpfMaps, MAP_NAMES, MAP_SHAPES, type MapFds, type MapRole } from './maps.ts';
import type { BpfSyscalls, ProgInfo } from './syscall.ts';

/** Name of the decapsulation program as the kernel reports it. */
export const DECAP_PROGRAM = 'ofl_decap';
/** Name of the encapsulation program (on the routes into the tunnel). */
export const ENCAP_PROGRAM = 'ofl_encap';
/** Name of the bridge fast path (tc egress on a mobile network's bridge). */
export const BRIDGE_PROGRAM = 'ofl_bridge';

export interface BpfProgramComponents {
  kernel: NetKernel;
  sys: BpfSyscalls;
  /** Path of the compiled object (build/offlink.bpf.o). */
  object: string;
  logger?: Logger;
}

export interface BpfProgramOptions {
  role: 'ha' | 'mr';
  uplink: string;
  /** The daemon's bpffs is mounted under `<runDir>/bpf/`. */
  runDir: string;
}

export class BpfProgram {
  private mounted: string | undefined;
  private opened: BpfMaps | undefined;

  constructor(
    private readonly components: BpfProgramComponents,
    private readonly options: BpfProgramOptions,
  ) {
    checkInterfaceName(options.uplink);
  }

  /** The maps (after attach). */
  get maps(): BpfMaps {
    if (!this.opened) throw new OfflinkError('ERR_DATAPLANE', 'eBPF program not attached yet');
    return this.opened;
  }

  /** The daemon's bpffs (after attach). */
  get bpffs(): string {
    if (!this.mounted) throw new OfflinkError('ERR_DATAPLANE', 'eBPF program not attached yet');
    return this.mounted;
  }

  /**
   * Into the tunnel through the encapsulation program (with this daemon's maps). `headroom 40` makes the
   * kernel send a correct Packet Too Big for what no longer fits once encapsulated.
   */
  encap(): Encap {
    return {
      type: 'bpf',
      object: this.components.object,
      section: 'lwt_xmit',
      headroom: 40,
      bpffs: this.bpffs,
    };
  }

  /**
   * Mount the daemon's bpffs, take over the maps of a program already on the uplink (a restart), load the
   * decapsulation program onto the uplink (replacing an older one atomically) and open the maps.
   */
  async attach(): Promise<BpfMaps> {
    const dir = join(this.options.runDir, 'bpf', `${this.options.role}-${await this.netnsInode()}`);
    mkdirSync(dir, { recursive: true });
    if (!this.components.sys.isBpffs(dir)) this.components.sys.mountBpffs(dir);
    this.mounted = dir;
    const globals = join(dir, 'tc', 'globals');
    mkdirSync(globals, { recursive: true });
    this.adopt(globals, await this.attachedProgram());
    await this.components.kernel.attachProgram({
      dev: this.options.uplink,
      hook: 'ingress',
      object: this.components.object,
      section: 'tc',
      bpffs: dir,
    });
    this.opened?.close();
    const fds = {} as MapFds;
    for (const [role, name] of Object.entries(MAP_NAMES) as [MapRole, string][])
      fds[role] = this.components.sys.objGet(join(globals, name));
    this.opened = new BpfMaps(this.components.sys, fds);
    return this.opened;
  }

  /** The bridge fast path on a mobile network's bridge (tc egress), sharing this daemon's maps. */
  async attachBridge(bridge: string): Promise<void> {
    await this.components.kernel.attachProgram({
      dev: checkInterfaceName(bridge),
      hook: 'egress',
      object: this.components.object,
      section: 'tc/bridge',
      bpffs: this.bpffs,
    });
  }

  /** Remove the decapsulation program (and the clsact qdisc if nothing else uses it), the pins, the bpffs. */
  async detach(): Promise<void> {
    await this.components.kernel.detachProgram(this.options.uplink, 'ingress');
    this.opened?.close();
    this.opened = undefined;
    const dir =
      this.mounted ?? join(this.options.runDir, 'bpf', `${this.options.role}-${await this.netnsInode()}`);
    this.mounted = undefined;
    if (this.components.sys.isBpffs(dir)) {
      const globals = join(dir, 'tc', 'globals');
      for (const name of this.components.sys.pinned(globals)) this.components.sys.unpin(join(globals, name));
      this.components.sys.unmount(dir);
    }
    try {
      rmdirSync(dir);
    } catch {}
  }

  /** Names the network namespace the kernel acts in (the bpffs is per daemon and namespace). */
  private netnsInode(): Promise<string> {
    return this.components.kernel.netnsInode();
  }

  /** The id of our decapsulation program on the uplink, if one is there. */
  private async attachedProgram(): Promise<number | undefined> {
    const programs = await this.components.kernel.programs(this.options.uplink, 'ingress');
    return programs.find((p) => p.name === DECAP_PROGRAM)?.id;
  }

  /**
   * Make the pins name the maps of the program on the uplink (if any), so the next load shares them; pins
   * of maps no program of ours uses any more (a namespace that went away and whose inode came back) go.
   * The decapsulation program does not use every map: the encapsulation programs on this daemon's routes
   * (the loaded programs named ofl_encap that share its maps) hold the rest.
   */
  private adopt(globals: string, progId: number | undefined): void {
    const { sys } = this.components;
    const names = new Set<string>(Object.values(MAP_NAMES));
    const live = progId === undefined ? new Map<string, number>() : liveMaps(sys, progId);
    for (const name of names) {
      const path = join(globals, name);
      const id = live.get(name);
      let pinned = pinnedId(sys, path);
      if (pinned !== undefined && !sameShape(sys, pinned, name)) {
        // an older build's map: the loader cannot reuse it (its contents come back from the daemon)
        sys.unpin(path);
        pinned = undefined;
        this.components.logger?.warn({ map: name }, 'eBPF map of another layout unpinned; a new one is made');
        if (id !== undefined && !sameShape(sys, id, name)) continue;
      }
      if (id !== undefined && pinned !== id) {
        if (pinned !== undefined) sys.unpin(path);
        const fd = sys.mapGetFdById(id);
        try {
          sys.objPin(fd, path);
        } finally {
          sys.close(fd);
        }
        this.components.logger?.info({ map: name, path }, 'eBPF map of the running program pinned again');
      } else if (id === undefined && pinned !== undefined && progId === undefined) {
        sys.unpin(path);
      }
    }
  }
}

/** undefined when the program went away meanwhile. */
function progInfoById(sys: BpfSyscalls, id: number): ProgInfo | undefined {
  let fd: number;
  try {
    fd = sys.progGetFdById(id);
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    return sys.progInfo(fd);
  } finally {
    sys.close(fd);
  }
}

function pinnedId(sys: BpfSyscalls, path: string): number | undefined {
  let fd: number;
  try {
    fd = sys.objGet(path);
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    return sys.mapInfo(fd).id;
  } finally {
    sys.close(fd);
  }
}

/**
 * Map name → id, for the maps of the decapsulation program `progId` and of the encapsulation programs
 * that share them (the decapsulation program does not use every map).
 */
export function liveMaps(sys: BpfSyscalls, progId: number): Map<string, number> {
  const names = new Set<string>(Object.values(MAP_NAMES));
  const live = new Map<string, number>();
  const take = (mapIds: readonly number[]) => {
    for (const id of mapIds) {
      const fd = sys.mapGetFdById(id);
      try {
        const name = sys.mapInfo(fd).name;
        if (names.has(name) && !live.has(name)) live.set(name, id);
      } finally {
        sys.close(fd);
      }
    }
  };
  const ours = progInfoById(sys, progId);
  if (!ours) return live;
  take(ours.mapIds);
  const shared = new Set(ours.mapIds);
  for (let id = sys.progNextId(0); id !== null && live.size < names.size; id = sys.progNextId(id)) {
    const info = progInfoById(sys, id);
    if (
      (info?.name === ENCAP_PROGRAM || info?.name === BRIDGE_PROGRAM) &&
      info.mapIds.some((m) => shared.has(m))
    )
      take(info.mapIds);
  }
  return live;
}

/**
 * The maps of the program attached to an uplink (by its id), opened; undefined if one is missing (the
 * bridge's map only exists where a bridge fast path was loaded).
 */
export function openLiveMaps(sys: BpfSyscalls, progId: number): BpfMaps | undefined {
  const live = liveMaps(sys, progId);
  const fds: Partial<Record<MapRole, number>> = {};
  for (const [role, name] of Object.entries(MAP_NAMES) as [MapRole, string][]) {
    const id = live.get(name);
    if (id === undefined && role !== 'fdb') return undefined;
    if (id !== undefined) fds[role] = sys.mapGetFdById(id);
  }
  return new BpfMaps(sys, fds as MapFds);
}

/** Whether map `id` has the layout offlink.bpf.c gives map `name` now. */
function sameShape(sys: BpfSyscalls, id: number, name: string): boolean {
  const want = MAP_SHAPES[name];
  if (!want) return true;
  const fd = sys.mapGetFdById(id);
  try {
    const info = sys.mapInfo(fd);
    return (
      info.type === want.type &&
      info.keySize === want.keySize &&
      info.valueSize === want.valueSize &&
      info.maxEntries === want.maxEntries
    );
  } finally {
    sys.close(fd);
  }
}
