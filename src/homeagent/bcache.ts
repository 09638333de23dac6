// The binding cache (RFC 6275 §9.1, RFC 3963 §6.1), keyed by home address. It knows nothing of routes:
// BU processing turns its changes into data-plane intents. Expiry is one min-heap for all bindings, so a
// single timer serves 100k bindings; refreshes leave stale heap entries that are skipped and compacted.
import type { TunnelBinding } from '../dataplane/types.ts';

export type BindingMode = 'explicit' | 'implicit';

export interface Binding {
  hoa: string;
  coa: string;
  /** Canonical CIDR text. */
  prefixes: readonly string[];
  /** Sequence number of the last accepted BU (RFC 6275 §9.5.1). */
  sequence: number;
  /** Granted lifetime. */
  lifetimeSeconds: number;
  /** Clock ms at which the binding expires. */
  expiresAt: number;
  mode: BindingMode;
  /** Replay Protection timestamp of the last accepted BU (RFC 4285 §6), NTP format. */
  lastTimestamp: bigint;
  /** Stable small integer naming the binding in the kernel (nftables mark, docs/dataplane.md). */
  id: number;
  /** Clock ms of the first registration of this binding. */
  registeredAt: number;
  /** Clock ms of the last accepted BU. */
  updatedAt: number;
}

export type CacheOp = { op: 'put'; binding: Binding } | { op: 'delete'; hoa: string };

/** What BU processing may read: the cache is only changed by applying the ops it returns. */
export interface BindingCacheView {
  get(hoa: string): Binding | undefined;
  /** Last accepted replay timestamp for this home address, even after its binding is gone. */
  lastTimestamp(hoa: string): bigint | undefined;
  /** The id a new binding would get now. */
  peekFreeId(): number;
}

/** Ids are 1..2^31-1 (a positive nftables mark); allocated upwards, reused only after wrapping. */
const MAX_ID = 0x7fffffff;

export function toTunnelBinding(b: Binding): TunnelBinding {
  return { hoa: b.hoa, coa: b.coa, prefixes: b.prefixes, id: b.id };
}

export class BindingCache implements BindingCacheView {
  private readonly bindings = new Map<string, Binding>();
  /** Replay timestamps of home addresses WITHOUT a binding (a binding carries its own). */
  private readonly timestamps = new Map<string, bigint>();
  private readonly ids = new Set<number>();
  private nextId = 1;
  /**
   * Min-heap of bindings on `expiresAt`. Bindings are never mutated (every accepted BU makes a new one), so
   * an entry is live exactly while it is the cache's current object for its HoA: no entry objects, which
   * at 100k bindings matters (bench/profiles/ha-core.md).
   */
  private heap: Binding[] = [];

  get size(): number {
    return this.bindings.size;
  }

  get(hoa: string): Binding | undefined {
    return this.bindings.get(hoa);
  }

  lastTimestamp(hoa: string): bigint | undefined {
    const own = this.bindings.get(hoa)?.lastTimestamp;
    const kept = this.timestamps.get(hoa);
    return kept === undefined || (own !== undefined && own > kept) ? own : kept;
  }

  /** Bindings in home-address order of insertion. */
  all(): Binding[] {
    return [...this.bindings.values()];
  }

  peekFreeId(): number {
    let id = this.nextId;
    while (this.ids.has(id)) id = id >= MAX_ID ? 1 : id + 1;
    return id;
  }

  /**
   * `b` with an id free here: with a store shared by home agents (issue 16) another one may have given its
   * id to a different binding; an id names a binding only in this home agent's kernel.
   */
  withLocalId(b: Binding): Binding {
    if (!this.ids.has(b.id) || this.bindings.get(b.hoa)?.id === b.id) return b;
    return { ...b, id: this.peekFreeId() };
  }

  /** Restore a replay timestamp loaded from the store (no binding needed). */
  restoreTimestamp(hoa: string, timestamp: bigint): void {
    const prior = this.lastTimestamp(hoa);
    if (prior === undefined || timestamp > prior) this.timestamps.set(hoa, timestamp);
  }

  apply(op: CacheOp): void {
    if (op.op === 'delete') {
      const old = this.bindings.get(op.hoa);
      if (!old) return;
      // The timestamp outlives the binding (RFC 4285 §6).
      this.timestamps.set(op.hoa, this.lastTimestamp(op.hoa)!);
      this.bindings.delete(op.hoa);
      this.ids.delete(old.id);
      return;
    }
    const b = op.binding;
    const old = this.bindings.get(b.hoa);
    if (old && old.id !== b.id) this.ids.delete(old.id);
    if (this.ids.has(b.id) && old?.id !== b.id) throw new Error(`binding id ${b.id} already in use`);
    const kept = this.lastTimestamp(b.hoa);
    this.bindings.set(b.hoa, b);
    this.ids.add(b.id);
    if (b.id >= this.nextId) this.nextId = b.id >= MAX_ID ? 1 : b.id + 1;
    // Keep an older binding's newer timestamp (a rollback restores an older binding); otherwise the binding's
    // own is the last, and the separate entry is dropped.
    if (kept !== undefined && kept > b.lastTimestamp) this.timestamps.set(b.hoa, kept);
    else this.timestamps.delete(b.hoa);
    if (old !== b) this.push(b);
  }

  /** Clock ms of the earliest expiry, or undefined when empty. */
  nextExpiry(): number | undefined {
    this.dropStale();
    return this.heap[0]?.expiresAt;
  }

  /** Bindings whose expiry is at or before `now` (not removed: apply the delete ops to remove them). */
  expired(now: number): Binding[] {
    const out = new Set<Binding>();
    for (;;) {
      this.dropStale();
      const top = this.heap[0];
      if (top === undefined || top.expiresAt > now) break;
      this.pop();
      // The same binding can be in the heap twice (pushed again by a rollback): report it once.
      out.add(top);
    }
    // Re-insert: the caller deletes them through apply(), after which the entries are stale.
    for (const b of out) this.push(b);
    return [...out];
  }

  private dropStale(): void {
    for (;;) {
      const top = this.heap[0];
      if (top === undefined || this.bindings.get(top.hoa) === top) return;
      this.pop();
    }
  }

  private push(e: Binding): void {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (h[parent]!.expiresAt <= e.expiresAt) break;
      h[i] = h[parent]!;
      i = parent;
    }
    h[i] = e;
    // Refreshes leave stale entries; rebuild once they dominate so the heap stays O(bindings).
    if (h.length > 2 * this.bindings.size + 1024) this.compact();
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop()!;
    if (h.length > 0) this.siftDown(last, 0);
  }

  /** Put `e` at slot `i` of the heap, moving it down to where it belongs. */
  private siftDown(e: Binding, i: number): void {
    const h = this.heap;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= h.length) break;
      const r = l + 1;
      const child = r < h.length && h[r]!.expiresAt < h[l]!.expiresAt ? r : l;
      if (h[child]!.expiresAt >= e.expiresAt) break;
      h[i] = h[child]!;
      i = child;
    }
    h[i] = e;
  }

  /**
   * Rebuild from the live bindings in O(n) (Floyd). Sorting them instead took 75–100 ms at 100k bindings
   * here, a stall of the event loop every ~100k refreshes (bench/profiles/ha-p99.md); this takes 6–20 ms.
   */
  private compact(): void {
    const h = [...this.bindings.values()];
    this.heap = h;
    for (let i = (h.length >> 1) - 1; i >= 0; i--) this.siftDown(h[i]!, i);
  }
}
