// `offlink lab --home-agents 2` (issue 16; docs/lab.md): the etcd members and the BIRDs of a two-HA lab, which
// HA ofl-inet routes the home prefixes to, and `--fail-ha`: kill -9 of that HA in the middle of the run,
// timed, then its restart. Everything runs inside the lab's namespaces, so `lab down` removes it.
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { CommandRunner } from '../system/runner.ts';
import { type BgpPeer, birdPaths, haBirdConf, ROUTER_ASN, routerBirdConf, startBird } from './bird.ts';
import type { LabConfigs } from './configs.ts';
import { agentStatus, type DaemonStartOptions, startHomeAgent, waitFor } from './daemons.ts';
import { EtcdCluster } from './etcd.ts';
import { LabError } from './netns.ts';
import type { HaMemberPlan, HostPlan, Topology } from './topology.ts';

const now = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The commands a two-HA lab needs beyond the lab's own, with their Debian packages. */
export const CLUSTER_COMMANDS = [
  { command: 'etcd', pkg: 'etcd-server' },
  { command: 'bird', pkg: 'bird2' },
  { command: 'birdc', pkg: 'bird2' },
  { command: 'curl', pkg: 'curl' },
] as const;

function peer(m: HaMemberPlan, i: number): BgpPeer {
  return {
    name: m.name,
    asn: ROUTER_ASN + i + 1,
    routerId: `10.255.0.${i + 1}`,
    address: m.linkAddress,
    router: m.inetAddress,
    ...(m.linkAddress4 && m.inetAddress4 ? { address4: m.linkAddress4, router4: m.inetAddress4 } : {}),
  };
}

export class LabHaCluster {
  private routerCtl = '';

  constructor(
    readonly topo: Topology & { cluster: NonNullable<Topology['cluster']> },
    private readonly runner: CommandRunner,
    private readonly dirs: { state: string; log: string },
    private readonly detached: boolean,
  ) {}

  /** What the HAs announce: the HA address, the home prefix, each network's prefixes. */
  get prefixes(): { v6: string[]; v4: string[] } {
    return {
      v6: [`${this.topo.ha.address}/128`, '2001:db8:f::/64', ...this.topo.guests.map((g) => g.prefix)],
      v4: this.topo.guests.flatMap((g) => (g.ipv4 ? [g.ipv4.prefix] : [])),
    };
  }

  /** Three etcd members on ofl-inet's loopback, then BIRD in ofl-inet and in each HA namespace. */
  async start(): Promise<void> {
    const { cluster } = this.topo;
    await EtcdCluster.start(
      cluster.etcdHosts.length,
      [],
      { netns: this.topo.inet.ns, hosts: cluster.etcdHosts },
      { dir: join(this.dirs.state, 'etcd'), logDir: this.dirs.log, detached: this.detached },
    );
    const peers = cluster.members.map(peer);
    const where = { dir: this.dirs.state, logDir: this.dirs.log, detached: this.detached };
    this.routerCtl = startBird(this.topo.inet.ns, 'inet', routerBirdConf(peers), where).ctl;
    const { v6, v4 } = this.prefixes;
    cluster.members.forEach((m, i) => {
      startBird(
        m.ns,
        m.name,
        haBirdConf(peers[i]!, { device: cluster.device, prefixes: v6, prefixes4: v4 }),
        where,
      );
    });
  }

  /** The HA ofl-inet routes the (first) network's prefix to now, by its kernel's route. */
  async carrier(): Promise<HaMemberPlan | undefined> {
    const r = await this.runner.run(
      ['ip', '-n', this.topo.inet.ns, '-6', 'route', 'show', this.topo.guests[0]!.prefix],
      { allowFailure: true },
    );
    const via = /via (\S+)/.exec(r.stdout)?.[1];
    return this.topo.cluster.members.find((m) => m.linkAddress === via);
  }

  /** Until ofl-inet's BIRD holds `paths` routes to the network's prefix and its kernel one of them. */
  async waitPaths(paths: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const run = async (argv: string[]) => (await this.runner.run(argv, { allowFailure: true })).stdout;
    const prefix = this.topo.guests[0]!.prefix;
    await waitFor(
      async () =>
        (await birdPaths(run, this.routerCtl, prefix)) >= paths && (await this.carrier()) !== undefined,
      timeoutMs,
      `ofl-inet has no BGP route to ${prefix} from ${paths === 2 ? 'both home agents' : 'a home agent'} after ${timeoutMs / 1000} s; see bird-*.log in ${this.dirs.log}`,
      signal,
    );
  }

  /** BUs a home agent answered (offlink_ha_binding_updates_total, every status), 0 if it does not answer. */
  async busAnswered(m: HaMemberPlan): Promise<number> {
    const r = await this.runner.run(
      ['ip', 'netns', 'exec', m.ns, 'curl', '-sf', '-m', '2', 'http://127.0.0.1:9180/metrics'],
      { allowFailure: true },
    );
    let n = 0;
    for (const line of r.stdout.split('\n'))
      if (line.startsWith('offlink_ha_binding_updates_total{')) n += Number(line.split(' ').at(-1)) || 0;
    return n;
  }

  /**
   * `--fail-ha`: kill -9 the HA ofl-inet routes the network to, until ofl-inet routes it to the other
   * (rerouteMs), `holdMs` on the survivor alone, then restart the killed HA and wait until ofl-inet's BIRD
   * has both routes again, and `settleMs`. The window [killedAt, windowEnd] holds no migration: every BU
   * the mobile router sent in it is one the failure caused, unless a refresh was due (reRegistrations).
   */
  async failover(
    has: Record<string, ChildProcess>,
    options: DaemonStartOptions & {
      configs: LabConfigs;
      /** The host the network is active on, and the lifetime its mobile router asks for. */
      active: HostPlan;
      lifetimeSeconds: number;
      holdMs: number;
      settleMs: number;
    },
  ): Promise<HaFailoverTimes> {
    const victim = await this.carrier();
    if (!victim) throw new LabError('ERR_LAB_FAILOVER', 'ofl-inet routes the network to no home agent');
    const survivor = this.topo.cluster.members.find((m) => m !== victim)!;
    const child = has[victim.name];
    if (!child || child.exitCode !== null || child.signalCode !== null)
      throw new LabError('ERR_LAB_FAILOVER', `home agent ${victim.name} is not running`);
    const network = this.topo.guests[0]!.network;
    const mr = async () =>
      (await agentStatus(this.runner, options.active, options.configs))?.networks.find(
        (n) => n.name === network,
      );
    const before = await mr();
    const survivorBefore = await this.busAnswered(survivor);
    const exited = new Promise((r) => child.once('exit', r));
    const killedAt = now();
    child.kill('SIGKILL');
    await exited;
    const diedMs = now() - killedAt;
    await waitFor(
      async () => (await this.carrier()) === survivor,
      30_000,
      `ofl-inet did not route to ${survivor.name} within 30 s of killing ${victim.name}`,
      options.signal,
    );
    const reroutedAt = now();
    await sleep(options.holdMs);
    const restartAt = now();
    has[victim.name] = await startHomeAgent(
      victim.ns,
      victim.file,
      options.configs.cluster![victim.name],
      options,
    );
    await this.waitPaths(2, 30_000, options.signal);
    const restartedAt = now();
    await sleep(options.settleMs);
    const windowEnd = now();
    const after = await mr();
    const busAnswered =
      (await this.busAnswered(survivor)) - survivorBefore + (await this.busAnswered(victim));
    // Every BU the mobile router sends, a retransmission too, takes the next sequence number.
    const busSent =
      before?.sequence !== undefined && after?.sequence !== undefined
        ? (after.sequence - before.sequence + 0x10000) % 0x10000
        : null;
    // A refresh is due at 80 % of the lifetime (src/signaling/bul.ts): due in the window if the binding had
    // less than 20 % of it left, plus the window's length, before the kill.
    const windowS = (windowEnd - killedAt) / 1000;
    const refreshDue =
      before?.lifetimeRemaining !== undefined &&
      before.lifetimeRemaining - windowS <= 0.2 * options.lifetimeSeconds
        ? 1
        : 0;
    return {
      killed: victim.name,
      survivor: survivor.name,
      killedAt,
      diedMs,
      reroutedAt,
      restartAt,
      restartedAt,
      windowEnd,
      busSent,
      refreshesDue: refreshDue,
      busAnswered,
      rerouteBack: (await this.carrier())?.name ?? null,
    };
  }
}

/** When things happened around the kill (wall-clock ms) and the BUs of the window. */
export interface HaFailoverTimes {
  killed: string;
  survivor: string;
  killedAt: number;
  /** From SIGKILL until the process was gone. */
  diedMs: number;
  /** ofl-inet's route moved to the survivor. */
  reroutedAt: number;
  /** The killed HA was started again, and ofl-inet's BIRD had both routes again. */
  restartAt: number;
  restartedAt: number;
  windowEnd: number;
  /** BUs the mobile router sent in the window (its sequence number's advance); null: unknown. */
  busSent: number | null;
  /** Refreshes its schedule had due in the window (0 or 1). */
  refreshesDue: number;
  /** BUs the two HAs answered in the window. */
  busAnswered: number;
  /** Where ofl-inet routes after the restart. */
  rerouteBack: string | null;
}
