// The links the netns driver moves guests' ports between, as typed values: what a namespace holds, and
// the three changes the driver makes. `IprouteLinks` does them with `ip -n <namespace>` (tested against the
// kernel in test/netns-driver.test.ts); the driver's unit tests use a model of the same interface.

import type { CommandRunner } from '../system/runner.ts';
import { CommandError } from '../system/runner.ts';

/** A link of a namespace and its state. */
export interface LinkState {
  name: string;
  index: number;
  up: boolean;
  /** The bridge the link is a port of. */
  master?: string;
  /** Whether the link is a bridge. */
  bridge: boolean;
}

/** `namespace` undefined: the namespace the driver itself runs in. */
export interface LinkControl {
  list(namespace: string | undefined, signal?: AbortSignal): Promise<LinkState[]>;
  /**
   * One request: `port` leaves `from` for `to`, becomes a port of the bridge with index `masterIndex`
   * there and comes up. The kernel applies the namespace change first: when the rest fails, the link is
   * left in `to`, detached and down. Throws with the kernel's message.
   */
  move(port: string, from: string | undefined, to: string | undefined, masterIndex: number): Promise<void>;
  /** Make `port` a port of `bridge` and bring it up. */
  attach(namespace: string | undefined, port: string, bridge: string): Promise<void>;
  /** Forget the neighbours learnt on `dev`. */
  flushNeighbours(namespace: string | undefined, dev: string): Promise<void>;
}

interface LinkJson {
  ifindex: number;
  ifname: string;
  flags?: string[];
  master?: string;
  linkinfo?: { info_kind?: string };
}

export class IprouteLinks implements LinkControl {
  constructor(
    private readonly runner: CommandRunner,
    private readonly ip = 'ip',
  ) {}

  async list(namespace: string | undefined, signal?: AbortSignal): Promise<LinkState[]> {
    const { stdout } = await this.run(namespace, ['-d', '-j', 'link', 'show'], signal);
    return (JSON.parse(stdout) as LinkJson[]).map((l) => ({
      name: l.ifname,
      index: l.ifindex,
      up: l.flags?.includes('UP') ?? false,
      ...(l.master !== undefined ? { master: l.master } : {}),
      bridge: l.linkinfo?.info_kind === 'bridge',
    }));
  }

  async move(
    port: string,
    from: string | undefined,
    to: string | undefined,
    masterIndex: number,
  ): Promise<void> {
    // `if<N>`: iproute2 reads it as an ifindex when no link has that name here; the index is the
    // destination's (the master is looked up after the namespace change). A pid names our namespace.
    const target = to ?? String(process.pid);
    await this.run(from, ['link', 'set', port, 'netns', target, 'master', `if${masterIndex}`, 'up']);
  }

  async attach(namespace: string | undefined, port: string, bridge: string): Promise<void> {
    await this.run(namespace, ['link', 'set', port, 'master', bridge, 'up']);
  }

  async flushNeighbours(namespace: string | undefined, dev: string): Promise<void> {
    await this.run(namespace, ['neigh', 'flush', 'dev', dev]);
  }

  private async run(namespace: string | undefined, args: readonly string[], signal?: AbortSignal) {
    const argv = [this.ip, ...(namespace === undefined ? [] : ['-n', namespace]), ...args];
    const r = await this.runner.run(argv, { allowFailure: true, ...(signal ? { signal } : {}) });
    if (r.exitCode !== 0) throw new CommandError(argv, r.exitCode, r.stderr);
    return r;
  }
}
