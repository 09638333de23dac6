// A home agent's membership in its cluster (issue 16): an etcd lease kept alive while the HA can reach
// etcd, with two keys bound to it under the store's prefix:
//
//   <prefix>member/<name>   {name, since, serving, address, status}: the HA is up, and whether it can
//                           serve (`offlink status --ha` lists these)
//   <prefix>expiry-owner    {name, lease}: the one HA that expires bindings for the whole cluster
//
// Both keys go with the lease: when the HA stops it revokes the lease (both go at once); when it dies or
// loses etcd, they go within the lease's TTL, and another member takes the expiry over on its next tick.
// Why one elected expirer and not a lease per binding: docs/homeagent.md.
import type { Clock, TimerHandle } from '../clock.ts';
import type { Logger } from '../log.ts';
import { EtcdClient, prefixEnd } from './etcd.ts';

export interface ClusterOptions {
  endpoints: readonly string[];
  prefix: string;
  name: string;
  /** What the member key tells about this HA (its signaling address, status URL…). */
  info: Record<string, unknown>;
  /** Lease TTL: how long a dead or partitioned HA keeps its keys (etcd's minimum is ~2 s). */
  ttlSeconds: number;
}

export interface ClusterMember {
  name: string;
  /** The HA's own health as it last wrote it (a member whose lease lapsed is not listed at all). */
  serving: boolean;
  /** Holds the expiry (it is the one that expires bindings). */
  expiryOwner: boolean;
  /** Clock ms it joined (its current lease). */
  since: number;
  [field: string]: unknown;
}

/** Keep-alive rounds per TTL: a lease survives two lost rounds. */
const ROUNDS_PER_TTL = 3;

export class ClusterSession {
  private readonly client: EtcdClient;
  private lease: string | undefined;
  private timer: TimerHandle | undefined;
  private stopped = false;
  private ticking: Promise<void> | undefined;
  /** Clock ms until which the lease is known to live (the last successful keep-alive + TTL). */
  private aliveUntil = 0;
  private owner = false;
  /** Hears every change of ownership (the daemon runs expiry while it owns). */
  onOwnerChange: (owner: boolean) => void = () => {};
  /** This HA's own health (data plane, daemon state), written into its member key when it changes. */
  serving: () => boolean = () => true;
  private written: { serving: boolean; since: number } | undefined;
  /** The members as the last round read them. */
  private seen: ClusterMember[] = [];

  constructor(
    private readonly options: ClusterOptions,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {
    // Short requests: a round must end well within a TTL.
    this.client = new EtcdClient({
      endpoints: options.endpoints,
      timeoutMs: Math.max(500, (options.ttlSeconds * 1000) / ROUNDS_PER_TTL),
    });
  }

  private get memberKey(): string {
    return `${this.options.prefix}member/${this.options.name}`;
  }

  private get ownerKey(): string {
    return `${this.options.prefix}expiry-owner`;
  }

  /** Join: the first round (lease, member key, expiry if nobody holds it), then one round a TTL/3. */
  async start(): Promise<void> {
    await this.round();
    if (!this.reachable())
      throw new Error(`cannot join the cluster in etcd (${this.options.endpoints.join(', ')})`);
    this.schedule();
  }

  /** Whether etcd answered within the lease's TTL: this HA's keys still stand, its commits can succeed. */
  reachable(): boolean {
    return this.clock.now() < this.aliveUntil;
  }

  get expiryOwner(): boolean {
    return this.owner;
  }

  /** Leave: revoke the lease, so the member key and the expiry go now, not after the TTL. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    await this.ticking;
    this.setOwner(false);
    if (this.lease) await this.client.leaseRevoke(this.lease).catch(() => {});
    this.lease = undefined;
  }

  /** The members as the last round read them (at most TTL/3 old). */
  get members(): readonly ClusterMember[] {
    return this.seen;
  }

  /** The cluster's members as etcd holds them (with the one that owns expiry). */
  private async readMembers(): Promise<ClusterMember[]> {
    const prefix = `${this.options.prefix}member/`;
    const [{ kvs }, owner] = await Promise.all([
      this.client.range(prefix, prefixEnd(prefix)),
      this.client.range(this.ownerKey, `${this.ownerKey}\0`),
    ]);
    const ownerName = owner.kvs[0] ? (JSON.parse(owner.kvs[0].value) as { name: string }).name : undefined;
    return kvs.map((kv) => {
      const m = JSON.parse(kv.value) as ClusterMember;
      return { ...m, expiryOwner: m.name === ownerName };
    });
  }

  private schedule(): void {
    if (this.stopped) return;
    const every = (this.options.ttlSeconds * 1000) / ROUNDS_PER_TTL;
    this.timer = this.clock.setTimer(every, () => {
      this.ticking = this.round().finally(() => {
        this.ticking = undefined;
        this.schedule();
      });
    });
  }

  /** Keep the lease (or take a new one and put the member key again), then claim expiry if it is free. */
  private async round(): Promise<void> {
    const sent = this.clock.now();
    try {
      let ttl = this.lease ? await this.client.leaseKeepAlive(this.lease) : 0;
      if (ttl === 0) {
        if (this.lease) this.log.warn({ lease: this.lease }, 'cluster lease expired; joining again');
        const granted = await this.client.leaseGrant(this.options.ttlSeconds);
        this.lease = granted.id;
        ttl = granted.ttl;
        this.written = undefined;
      }
      // From when the request was sent: the lease lives at least that long.
      this.aliveUntil = sent + ttl * 1000;
      const serving = this.serving();
      if (this.written?.serving !== serving) {
        const since = this.written?.since ?? this.clock.now();
        const value = JSON.stringify({ name: this.options.name, since, serving, ...this.options.info });
        await this.client.txn([], [{ put: { key: this.memberKey, value, lease: this.lease } }]);
        this.written = { serving, since };
      }
      await this.claimExpiry();
      this.seen = await this.readMembers();
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'etcd keep-alive failed');
      if (!this.reachable()) this.setOwner(false);
    }
  }

  private async claimExpiry(): Promise<void> {
    const value = JSON.stringify({ name: this.options.name, lease: this.lease });
    // Created only where no key is (mod revision 0); otherwise read who holds it.
    const r = await this.client.txn(
      [{ key: this.ownerKey, modRevision: 0 }],
      [{ put: { key: this.ownerKey, value, lease: this.lease! } }],
    );
    const held = r.succeeded ? value : r.current[0]?.value;
    this.setOwner(held === value);
  }

  private setOwner(owner: boolean): void {
    if (owner === this.owner) return;
    this.owner = owner;
    this.log.info({ name: this.options.name }, owner ? 'expiry owner: this HA' : 'expiry owner: not this HA');
    this.onOwnerChange(owner);
  }
}
