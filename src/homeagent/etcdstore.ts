// The binding cache replicated on etcd (issue 16): the same contract as the SQLite store (a write commits all
// its ops in one transaction or none, and has committed when its promise resolves), shared by several home
// agents. Layout under the configured prefix:
//
//   <prefix>binding/<hoa>  JSON of the binding (lastTimestamp as 16 hex digits) and `by`, the writing store
//   <prefix>replay/<hoa>   {lastTimestamp, by}: the replay state of a binding that went (RFC 4285 §6)
//
// Compare-and-swap: every write is one etcd transaction whose compares name each home address it touches,
// with the mod revision of its binding key as this store last knew it (0 = no binding). If another home
// agent has written any of those keys since, nothing is applied and the write fails with a
// BindingConflictError carrying the current state of the keys that moved. Since bu.ts checked the BU's
// sequence number and timestamp against exactly the state whose revision the compare names, an accepted
// BU is always newer than what it replaces: two home agents can never both accept BUs for one home address
// on top of the same binding, and neither can overwrite a newer binding with an older one. The store
// learns a revision from load(), from its own writes, and from adopt() — the daemon calls it once its
// cache holds what another home agent wrote (a watch event or a conflict); never on its own, since a
// revision must describe the state BUs were processed against.
import { randomUUID } from 'node:crypto';
import { OfflinkError } from '../errors.ts';
import type { Binding, BindingMode, CacheOp } from './bcache.ts';
import {
  type Compare,
  EtcdClient,
  type KeyValue,
  prefixEnd,
  type RequestOp,
  type WatchEvent,
} from './etcd.ts';
import { type StoredCache, StoreError } from './store.ts';

export interface EtcdStoreOptions {
  endpoints: readonly string[];
  /** Key prefix shared by the home agents of one cluster, ending in `/`. */
  prefix: string;
  /** How long a commit may take, retries included (an etcd request: at most 2 s of it). */
  timeoutMs?: number;
  /** etcd's `--max-txn-ops` (its default is 128): the store never sends a larger transaction. */
  maxTxnOps?: number;
  /** Names this store's writes (`by`), so its watch tells them from other home agents'; default random. */
  name?: string;
}

/** A change another home agent made, or the state a conflict found; `revision` is its key's (0 = gone). */
export type StoreChange =
  | { op: 'put'; binding: Binding; revision: number; by?: string }
  | { op: 'delete'; hoa: string; lastTimestamp: bigint | undefined; revision: number };

/** A write refused because another home agent changed one of its bindings first; nothing was applied. */
export class BindingConflictError extends StoreError {
  constructor(readonly current: StoreChange[]) {
    super(
      'ERR_STORE_CONFLICT',
      `binding changed by another home agent: ${current.map((c) => (c.op === 'put' ? c.binding.hoa : c.hoa)).join(', ')}`,
    );
  }
}

interface Known {
  revision: number;
  /** The stored binding's replay timestamp. */
  lastTimestamp: bigint;
  /** The store (home agent) that wrote it: the one that last served the binding. */
  by: string | undefined;
}

interface StoredBinding {
  coa: string;
  prefixes: string[];
  sequence: number;
  lifetime: number;
  expiresAt: number;
  mode: BindingMode;
  lastTimestamp: string;
  id: number;
  registeredAt: number;
  updatedAt: number;
  by: string;
}

const LOAD_PAGE = 1000;
/** Pause between attempts of a commit whose outcome was unknown. */
const RETRY_MS = 100;
/** One attempt: short enough that a commit survives a leader election (~1–2 s) within `timeoutMs`. */
const ATTEMPT_MS = 2000;

/** Per home address: the revision to compare, what the write leaves, the replay timestamp to keep. */
type Plan = Map<
  string,
  { revision: number; final: Binding | null; replay: bigint | undefined; current: bigint | undefined }
>;

export class EtcdBindingStore {
  readonly name: string;
  /** Largest write (cache ops) this store can commit in one transaction: a delete is two etcd ops. */
  readonly maxOpsPerWrite: number;
  private readonly client: EtcdClient;
  private readonly prefix: string;
  private readonly maxTxnOps: number;
  private readonly timeoutMs: number;
  /** Home addresses with a binding, as this store last knew them; absent = no binding (revision 0). */
  private readonly known = new Map<string, Known>();
  /** Revision the last load() read at: a watch starts after it. */
  private loadedAt = 0;
  private readonly watches = new Set<AbortController>();
  private closed = false;

  constructor(options: EtcdStoreOptions) {
    this.timeoutMs = options.timeoutMs ?? 5000;
    this.client = new EtcdClient({
      endpoints: options.endpoints,
      timeoutMs: Math.min(ATTEMPT_MS, this.timeoutMs),
    });
    this.prefix = options.prefix;
    this.maxTxnOps = options.maxTxnOps ?? 128;
    this.maxOpsPerWrite = Math.floor(this.maxTxnOps / 2);
    this.name = options.name ?? randomUUID();
  }

  private bindingKey(hoa: string): string {
    return `${this.prefix}binding/${hoa}`;
  }

  private replayKey(hoa: string): string {
    return `${this.prefix}replay/${hoa}`;
  }

  /** Every binding and replay timestamp under the prefix, read at one revision (a page at a time). */
  async load(): Promise<StoredCache> {
    const { bindings, timestamps, revision } = await this.read();
    this.known.clear();
    for (const { binding, revision, by } of bindings)
      this.known.set(binding.hoa, { revision, lastTimestamp: binding.lastTimestamp, by });
    this.loadedAt = revision;
    return { bindings: bindings.map((b) => b.binding), timestamps };
  }

  /**
   * What load() reads, as changes to adopt, and the revision it was read at; unlike load() it leaves the
   * revisions this store compares untouched (the daemon adopts what it takes, in its queue).
   */
  async snapshot(): Promise<{ changes: StoreChange[]; revision: number }> {
    const { bindings, revision } = await this.read();
    return { changes: bindings.map((b) => ({ op: 'put', ...b })), revision };
  }

  /** The mod revision of `hoa`'s binding as this store knows it (0: no binding). */
  revisionOf(hoa: string): number {
    return this.known.get(hoa)?.revision ?? 0;
  }

  /** The home agent (store name) that wrote `hoa`'s binding: the one that last served it. */
  servedBy(hoa: string): string | undefined {
    return this.known.get(hoa)?.by;
  }

  private async read(): Promise<{
    bindings: { binding: Binding; revision: number; by: string }[];
    timestamps: [string, bigint][];
    revision: number;
  }> {
    const bindings: { binding: Binding; revision: number; by: string }[] = [];
    const timestamps = new Map<string, bigint>();
    const end = prefixEnd(this.prefix);
    let from = this.prefix;
    let revision = 0;
    for (;;) {
      const page = await this.client.range(from, end, { limit: LOAD_PAGE, revision });
      revision ||= page.revision;
      for (const kv of page.kvs) {
        const parsed = this.parse(kv);
        if (!parsed) continue;
        const ts = parsed.kind === 'binding' ? parsed.binding.lastTimestamp : parsed.lastTimestamp;
        if ((timestamps.get(parsed.hoa) ?? -1n) < ts) timestamps.set(parsed.hoa, ts);
        if (parsed.kind === 'binding')
          bindings.push({ binding: parsed.binding, revision: kv.modRevision, by: parsed.by });
      }
      if (!page.more || page.kvs.length === 0) break;
      from = `${page.kvs.at(-1)!.key}\0`;
    }
    bindings.sort((a, b) => a.binding.id - b.binding.id);
    return { bindings, timestamps: [...timestamps], revision };
  }

  /** All ops in one etcd transaction, guarded by the compare-and-swap above; resolves once committed. */
  async write(ops: readonly CacheOp[]): Promise<void> {
    if (ops.length === 0) return;
    if (this.closed) throw new StoreError('ERR_STORE_CLOSED', 'binding store is closed');
    const plan = this.plan(ops);
    const compare: Compare[] = [];
    const requests: RequestOp[] = [];
    for (const [hoa, p] of plan) {
      compare.push({ key: this.bindingKey(hoa), modRevision: p.revision });
      if (p.final) requests.push({ put: { key: this.bindingKey(hoa), value: this.encode(p.final) } });
      else requests.push({ delete: { key: this.bindingKey(hoa) } });
      if (p.replay !== undefined)
        requests.push({ put: { key: this.replayKey(hoa), value: this.encodeReplay(p.replay) } });
    }
    if (requests.length > this.maxTxnOps) {
      throw new StoreError(
        'ERR_STORE_TOO_LARGE',
        `${ops.length} cache ops need ${requests.length} etcd operations in one transaction; etcd.maxTxnOps is ${this.maxTxnOps}`,
      );
    }
    const result = await this.commit(plan, compare, requests);
    for (const [hoa, p] of plan) {
      if (p.final)
        this.known.set(hoa, {
          revision: result.revision,
          lastTimestamp: p.final.lastTimestamp,
          by: this.name,
        });
      else this.known.delete(hoa);
    }
  }

  /**
   * Send the transaction until it is known to have committed or not, within `timeoutMs`. An attempt whose
   * outcome is unknown (a timeout, a leader lost mid-proposal) is sent again: if the first one was applied,
   * the compare of the second fails, and the keys then hold exactly this write's values, which counts as
   * committed; anything else there is another home agent's write, a conflict.
   */
  private async commit(plan: Plan, compare: Compare[], requests: RequestOp[]): Promise<{ revision: number }> {
    const deadline = performance.now() + this.timeoutMs;
    let uncertain = false;
    for (;;) {
      let result: Awaited<ReturnType<EtcdClient['txn']>>;
      try {
        result = await this.client.txn(compare, requests);
      } catch (err) {
        const code = err instanceof OfflinkError ? err.code : 'ERR_ETCD';
        if (
          (code === 'ERR_ETCD_UNCERTAIN' || code === 'ERR_ETCD_UNAVAILABLE') &&
          performance.now() < deadline
        ) {
          uncertain ||= code === 'ERR_ETCD_UNCERTAIN';
          await new Promise((r) => setTimeout(r, RETRY_MS));
          continue;
        }
        throw new StoreError(uncertain ? 'ERR_ETCD_UNCERTAIN' : code, (err as Error).message);
      }
      if (result.succeeded) return result;
      const applied = uncertain ? this.appliedEarlier(plan, result.current) : undefined;
      if (applied !== undefined) return { revision: applied };
      throw new BindingConflictError(this.conflicts(plan, result.current));
    }
  }

  /** The revision at which an earlier attempt of this write was applied, if the keys hold exactly it. */
  private appliedEarlier(plan: Plan, current: KeyValue[]): number | undefined {
    const found = new Map(current.map((kv) => [kv.key, kv]));
    let revision: number | undefined;
    for (const [hoa, p] of plan) {
      const kv = found.get(this.bindingKey(hoa));
      if (p.final === null) {
        if (kv) return undefined;
        continue;
      }
      if (!kv || kv.value !== this.encode(p.final) || (revision !== undefined && kv.modRevision !== revision))
        return undefined;
      revision = kv.modRevision;
    }
    // A write of deletes only leaves no revision behind; nothing to know it by then but absence.
    return revision ?? 0;
  }

  /** What the ops leave per home address: etcd takes one operation per key in a transaction. */
  private plan(ops: readonly CacheOp[]): Plan {
    const plan: Plan = new Map();
    for (const op of ops) {
      const hoa = op.op === 'put' ? op.binding.hoa : op.hoa;
      let p = plan.get(hoa);
      if (!p) {
        const known = this.known.get(hoa);
        p = { revision: known?.revision ?? 0, final: null, replay: undefined, current: known?.lastTimestamp };
        plan.set(hoa, p);
      }
      if (op.op === 'put') {
        p.final = op.binding;
        p.current = op.binding.lastTimestamp;
      } else {
        // Replay state outlives the binding, as in the SQLite store's replay table.
        if (p.current !== undefined) p.replay = p.current;
        p.final = null;
        p.current = undefined;
      }
    }
    return plan;
  }

  /** The compared keys whose revision moved, as changes to adopt. */
  private conflicts(plan: Plan, current: KeyValue[]): StoreChange[] {
    const found = new Map<string, KeyValue>();
    for (const kv of current) found.set(kv.key, kv);
    const out: StoreChange[] = [];
    for (const [hoa, p] of plan) {
      const kv = found.get(this.bindingKey(hoa));
      if ((kv?.modRevision ?? 0) === p.revision) continue;
      const parsed = kv ? this.parse(kv) : undefined;
      if (parsed?.kind === 'binding')
        out.push({ op: 'put', binding: parsed.binding, revision: kv!.modRevision, by: parsed.by });
      else out.push({ op: 'delete', hoa, lastTimestamp: undefined, revision: 0 });
    }
    return out;
  }

  /** The daemon's cache now holds `changes` (another home agent's): write on top of them from now on. */
  adopt(changes: readonly StoreChange[]): void {
    for (const c of changes) {
      if (c.op === 'put')
        this.known.set(c.binding.hoa, {
          revision: c.revision,
          lastTimestamp: c.binding.lastTimestamp,
          by: c.by,
        });
      else this.known.delete(c.hoa);
    }
  }

  /**
   * Report what other home agents change under the prefix after the last load(), a revision's changes at a
   * time; this store's own writes are left out. If the stream ends, it is opened again from the last
   * revision seen; `onError` hears each end (and a compaction past that revision, ERR_ETCD_COMPACTED, after
   * which only a snapshot() can catch up and the watch stops). `from`: the revision it starts after (default
   * the last load()'s). Returns the function that stops it.
   */
  watch(
    onChange: (changes: StoreChange[]) => void,
    onError: (err: Error) => void = () => {},
    from = this.loadedAt,
  ): () => void {
    const abort = new AbortController();
    this.watches.add(abort);
    let seen = from;
    const onEvents = (events: WatchEvent[], revision: number) => {
      seen = Math.max(seen, revision);
      const changes = this.remoteChanges(events);
      if (changes.length > 0) onChange(changes);
    };
    const open = (): void => {
      if (abort.signal.aborted) return;
      this.client.watch(this.prefix, seen, onEvents, retry, abort.signal).catch(retry);
    };
    const retry = (err: Error): void => {
      if (abort.signal.aborted) return;
      onError(err);
      if (err instanceof OfflinkError && err.code === 'ERR_ETCD_COMPACTED') return;
      setTimeout(open, 500).unref();
    };
    open();
    return () => {
      abort.abort();
      this.watches.delete(abort);
    };
  }

  /** Events of one revision, other stores' only: a binding's delete is told by the replay key put with it. */
  private remoteChanges(events: WatchEvent[]): StoreChange[] {
    const replays = new Map<string, { by: string; lastTimestamp: bigint }>();
    for (const e of events) {
      const parsed = e.type === 'put' ? this.parse(e.kv) : undefined;
      if (parsed?.kind === 'replay') replays.set(parsed.hoa, parsed);
    }
    const out: StoreChange[] = [];
    for (const e of events) {
      if (!e.kv.key.startsWith(`${this.prefix}binding/`)) continue;
      if (e.type === 'put') {
        const parsed = this.parse(e.kv);
        if (parsed?.kind === 'binding' && parsed.by !== this.name)
          out.push({ op: 'put', binding: parsed.binding, revision: e.kv.modRevision, by: parsed.by });
        continue;
      }
      const hoa = e.kv.key.slice(`${this.prefix}binding/`.length);
      const replay = replays.get(hoa);
      if (replay?.by === this.name) continue;
      // A delete event's mod revision is the revision of the delete.
      out.push({ op: 'delete', hoa, lastTimestamp: replay?.lastTimestamp, revision: e.kv.modRevision });
    }
    return out;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const abort of this.watches) abort.abort();
    this.watches.clear();
  }

  private encode(b: Binding): string {
    const v: StoredBinding = {
      coa: b.coa,
      prefixes: [...b.prefixes],
      sequence: b.sequence,
      lifetime: b.lifetimeSeconds,
      expiresAt: b.expiresAt,
      mode: b.mode,
      lastTimestamp: hex(b.lastTimestamp),
      id: b.id,
      registeredAt: b.registeredAt,
      updatedAt: b.updatedAt,
      by: this.name,
    };
    return JSON.stringify(v);
  }

  private encodeReplay(ts: bigint): string {
    return JSON.stringify({ lastTimestamp: hex(ts), by: this.name });
  }

  /** A key under the prefix as what it holds; undefined for keys that are not ours. */
  private parse(
    kv: KeyValue,
  ):
    | { kind: 'binding'; hoa: string; binding: Binding; by: string }
    | { kind: 'replay'; hoa: string; lastTimestamp: bigint; by: string }
    | undefined {
    const rest = kv.key.slice(this.prefix.length);
    const slash = rest.indexOf('/');
    const kind = rest.slice(0, slash);
    const hoa = rest.slice(slash + 1);
    if (kind === 'replay') {
      const v = JSON.parse(kv.value) as { lastTimestamp: string; by: string };
      return { kind, hoa, lastTimestamp: BigInt(`0x${v.lastTimestamp}`), by: v.by };
    }
    if (kind !== 'binding') return undefined;
    const v = JSON.parse(kv.value) as StoredBinding;
    const binding: Binding = {
      hoa,
      coa: v.coa,
      prefixes: v.prefixes,
      sequence: v.sequence,
      lifetimeSeconds: v.lifetime,
      expiresAt: v.expiresAt,
      mode: v.mode,
      lastTimestamp: BigInt(`0x${v.lastTimestamp}`),
      id: v.id,
      registeredAt: v.registeredAt,
      updatedAt: v.updatedAt,
    };
    return { kind, hoa, binding, by: v.by };
  }
}

function hex(v: bigint): string {
  return v.toString(16).padStart(16, '0');
}
