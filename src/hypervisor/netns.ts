// The netns driver: lab guests that are network namespaces.
//
// A guest is a network namespace holding one end of a veth; the other end (the "port") sits in the host's
// namespace, attached to the network's guest bridge. Migrating moves the port into the destination
// host's namespace and attaches it to the same network's bridge there. The guest's processes, sockets
// and addresses are untouched, so, seen from the network, it behaves like a live-migrated VM.
//
// Honestly: this copies no memory and has no stop-and-copy. It stands in for a VM's live migration in the
// lab, so that the part offlink owns (the handover between mobile routers) can be measured on its own.
// The guest is unreachable only while the kernel moves the link (~20 ms here, mostly the namespace move).
//
// The move is ONE command, `ip -n <src> link set <port> netns <dst> master if<N> up`: the kernel applies
// the namespace change first and then the master and flags in the new namespace (rtnetlink do_setlink),
// so the guest is back on a bridge after one spawn and one netlink request. `if<N>` is the destination
// bridge's ifindex (iproute2 reads `if<N>` as an index when no link has that name in the source
// namespace), taken by the destination's `prepareIncoming`. The result is checked afterwards; anything
// but "on the destination bridge and up" is rolled back to the source bridge.
//
// The source's driver names the destination's namespace: each host agent runs inside its own namespace
// in the lab, and `ip -n NAME` works from inside any namespace as long as /run/netns is shared (it is
// with `ip netns exec`, whose mount namespace is a slave of the root one).
import { performance } from 'node:perf_hooks';
import type { CommandRunner } from '../system/runner.ts';
import { CommandError } from '../system/runner.ts';
import {
  type Driver,
  type DriverCallOptions,
  type DriverMigrateOptions,
  type DriverMigrationResult,
  type GuestInfo,
  type GuestNetwork,
  HypervisorError,
  type IncomingSpec,
  type MigrationDestination,
  type PrepareIncomingOptions,
} from './driver.ts';
import { IprouteLinks, type LinkControl, type LinkState } from './links.ts';

export interface NetnsDriverOptions {
  /** This host's name (as in the agent config). */
  host: string;
  /**
   * Host name → network namespace name (under /run/netns). The destination of every migration must be
   * here. This host may be absent: then its commands run in the agent's own namespace.
   */
  namespaces: Readonly<Record<string, string>>;
  /** Per-guest settings; a guest not listed uses the defaults. */
  guests?: Readonly<Record<string, { port?: string }>>;
  /** Runs `ip -n …` for the links (IprouteLinks). */
  runner: CommandRunner;
  /** The links seam itself, instead of `ip` through the runner (unit tests). */
  links?: LinkControl;
  /** Path of `ip` (default: `ip` from PATH). */
  ip?: string;
  /** Monotonic milliseconds, for timings (default performance.now). */
  now?: () => number;
}

/** The veth port name of a guest when the config names none: `vg-<guest>`. */
export function defaultPortName(guest: string): string {
  return `vg-${guest}`;
}

/** Linux interface names: 1–15 bytes, no '/', ':', or whitespace. */
const IFNAME = /^[^/:\s]{1,15}$/;

export class NetnsDriver implements Driver {
  readonly kind = 'netns';
  private readonly opts: NetnsDriverOptions;
  private readonly now: () => number;
  private readonly control: LinkControl;

  constructor(options: NetnsDriverOptions) {
    this.opts = options;
    this.now = options.now ?? (() => performance.now());
    this.control = options.links ?? new IprouteLinks(options.runner, options.ip);
  }

  /** The port (host end of the guest's veth) of `guest`. */
  portOf(guest: string): string {
    const port = this.opts.guests?.[guest]?.port ?? defaultPortName(guest);
    if (!IFNAME.test(port)) {
      throw new HypervisorError(
        'ERR_HYPERVISOR_CONFIG',
        `guest ${guest}: port name "${port}" is not a valid interface name (1-15 characters); set hypervisor.guests.${guest}.port`,
        { guest },
      );
    }
    return port;
  }

  async listGuests(network: GuestNetwork, options: DriverCallOptions = {}): Promise<GuestInfo[]> {
    const links = await this.links(this.ownNamespace(), options.signal);
    const out: GuestInfo[] = [];
    for (const guest of network.guests) {
      const port = this.portOf(guest);
      const link = links.find((l) => l.name === port);
      if (!link) continue;
      const attached = link.master === network.bridge && link.up;
      out.push({
        name: guest,
        network: network.name,
        state: attached ? 'running' : 'detached',
        detail: attached
          ? `port ${port} on ${network.bridge}`
          : `port ${port} ${link.master ? `on ${link.master}` : 'on no bridge'}${link.up ? '' : ', down'}`,
      });
    }
    return out;
  }

  async prepareIncoming(guest: string, options: PrepareIncomingOptions): Promise<IncomingSpec> {
    const port = this.portOf(guest);
    const bridgeName = options.network.bridge;
    const links = await this.links(this.ownNamespace(), options.signal);
    const bridge = links.find((l) => l.name === bridgeName);
    if (!bridge?.bridge) {
      throw new HypervisorError(
        'ERR_HYPERVISOR',
        `host ${this.opts.host} has no bridge ${bridgeName} for network ${options.network.name}`,
        { guest },
      );
    }
    if (!bridge.up) {
      throw new HypervisorError('ERR_HYPERVISOR', `bridge ${bridgeName} on host ${this.opts.host} is down`, {
        guest,
      });
    }
    if (links.some((l) => l.name === port)) {
      throw new HypervisorError(
        'ERR_HYPERVISOR',
        `host ${this.opts.host} already has a link named ${port} (guest ${guest} is here already?)`,
        { guest },
      );
    }
    return { bridge: bridgeName, bridgeIndex: bridge.index };
  }

  async cancelIncoming(_guest: string, _options: PrepareIncomingOptions): Promise<void> {
    // prepareIncoming creates nothing, and a failed move is rolled back by the source: nothing to undo.
  }

  async migrate(
    guest: string,
    destination: MigrationDestination,
    options: DriverMigrateOptions,
  ): Promise<DriverMigrationResult> {
    const started = this.now();
    const port = this.portOf(guest);
    const bridge = options.network.bridge;
    const dstNs = this.namespaceOf(destination.host);
    const dstBridge = destination.incoming['bridge'] ?? bridge;
    const dstIndex = destination.incoming['bridgeIndex'];
    if (typeof dstIndex !== 'number' || !Number.isInteger(dstIndex) || dstIndex <= 0) {
      throw new HypervisorError('ERR_HYPERVISOR', `destination ${destination.host} sent no bridge index`, {
        guest,
      });
    }
    const srcNs = this.ownNamespace();
    const here = await this.links(srcNs, options.signal);
    const link = here.find((l) => l.name === port);
    const srcBridge = here.find((l) => l.name === bridge);
    if (!link) {
      throw new HypervisorError('ERR_HYPERVISOR', `guest ${guest} is not on host ${this.opts.host}`, {
        guest,
      });
    }
    if (!srcBridge) {
      throw new HypervisorError('ERR_HYPERVISOR', `host ${this.opts.host} has no bridge ${bridge}`, {
        guest,
      });
    }
    options.signal?.throwIfAborted();
    options.onProgress?.({ guest, phase: 'start', transferredBytes: 0 });

    if (options.onSwitchover) {
      try {
        await options.onSwitchover();
      } catch (err) {
        // Nothing has moved yet: the guest still runs on the source.
        throw new HypervisorError(
          'ERR_HYPERVISOR',
          `guest ${guest}: switchover hook failed: ${errText(err)}`,
          {
            guest,
            cause: err,
          },
        );
      }
    }
    options.onProgress?.({ guest, phase: 'switchover' });
    const stopped = this.now();
    // From here on the signal is ignored: a move is completed or rolled back, never left halfway.
    const moved = await this.control.move(port, srcNs, dstNs, dstIndex).then(
      () => undefined,
      (err: unknown) => reason(err),
    );
    const resumed = this.now();
    let failure: string | undefined;
    // The destination may have tried to reach the guest before it arrived (the handover overlaps the
    // move): its neighbour entry then sits INCOMPLETE and is retried only after the retransmit timer
    // (1 s). Flushing the bridge's neighbour cache makes the next packet resolve at once. (A VM's guest
    // kernel does this with unsolicited neighbour advertisements when QEMU announces it.) It runs beside
    // the check, not after it: each is an `ip` process, and the flush is on the guest's way back
    // (bench/profiles/outage.md).
    const flushed =
      moved === undefined
        ? this.control.flushNeighbours(dstNs, String(dstBridge)).catch(() => {})
        : undefined;
    if (moved !== undefined) {
      failure = `moving ${port} to ${destination.host} failed: ${moved}`;
    } else {
      const there = (await this.links(dstNs)).find((l) => l.name === port);
      if (!there || there.master !== dstBridge || !there.up) {
        failure = `${port} arrived on ${destination.host} ${there ? `attached to ${there.master ?? 'nothing'}` : 'missing'}, not to ${String(dstBridge)}`;
      }
    }
    if (failure !== undefined) {
      options.onProgress?.({ guest, phase: 'rollback' });
      await this.rollback(guest, port, dstNs, srcNs, bridge, srcBridge.index, failure);
      throw new HypervisorError(
        'ERR_HYPERVISOR',
        `guest ${guest}: ${failure}; rolled back to ${this.opts.host}`,
        {
          guest,
        },
      );
    }
    await flushed;
    options.onProgress?.({ guest, phase: 'resumed', transferredBytes: 0 });
    return { hypervisorMs: this.now() - started, downtimeMs: resumed - stopped, transferredBytes: 0 };
  }

  async announce(_guest: string, _options: { network: GuestNetwork } & DriverCallOptions): Promise<void> {
    // Nothing to send from the host side: the bridge floods until it learns the guest's MAC from the
    // guest's first frame, and the gateway's MAC and addresses are the same on every host (docs/dataplane.md), so
    // the guest's neighbour cache stays valid.
  }

  /** Put the port back on the source bridge, wherever the failed move left it. */
  private async rollback(
    guest: string,
    port: string,
    dstNs: string,
    srcNs: string | undefined,
    bridge: string,
    srcIndex: number,
    failure: string,
  ): Promise<void> {
    // Look here first: a link of the same name on the destination (what made the move fail, say) is
    // not the guest's port, and cannot be moved anyway.
    const here = (await this.links(srcNs)).some((l) => l.name === port);
    const refused = await (here
      ? this.control.attach(srcNs, port, bridge)
      : this.control.move(port, dstNs, srcNs, srcIndex)
    ).then(
      () => undefined,
      (err: unknown) => reason(err),
    );
    const back = (await this.links(srcNs)).find((l) => l.name === port);
    if (refused !== undefined || !back || back.master !== bridge || !back.up) {
      throw new HypervisorError(
        'ERR_HYPERVISOR_ROLLBACK',
        `guest ${guest}: ${failure}; rollback to ${this.opts.host} FAILED (${refused ?? 'port not on bridge'}): the guest is unreachable`,
        { guest },
      );
    }
  }

  private ownNamespace(): string | undefined {
    return this.opts.namespaces[this.opts.host];
  }

  private namespaceOf(host: string): string {
    const ns = this.opts.namespaces[host];
    if (ns === undefined) {
      throw new HypervisorError(
        'ERR_HYPERVISOR_CONFIG',
        `netns driver: no namespace for host ${host} (hypervisor.namespaces.${host})`,
      );
    }
    return ns;
  }

  private async links(ns: string | undefined, signal?: AbortSignal): Promise<LinkState[]> {
    try {
      return await this.control.list(ns, signal);
    } catch (err) {
      throw new HypervisorError(
        'ERR_HYPERVISOR',
        `listing links${ns ? ` in ${ns}` : ''} failed: ${reason(err)}`,
        {
          cause: err,
        },
      );
    }
  }
}

/** What the kernel said (a command's stderr), or the error's message. */
function reason(err: unknown): string {
  if (err instanceof CommandError) return err.stderr.trim() || err.message;
  return errText(err);
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
