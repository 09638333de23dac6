// Persistent binding cache (SQLite through better-sqlite3 12). The daemon commits every batch of cache ops
// in one transaction before any accepting BA of that batch is sent, and loads the cache on start.
//
// journal_mode=WAL with synchronous=FULL: "durably written" must hold across power loss and kernel
// crashes, not only a killed process (WAL + NORMAL survives kill -9 but may lose the last commits on
// power loss, and an MR holding an accepting BA would then be unknown to us after reboot). FULL costs one
// fsync per commit; the daemon commits once per batch of BUs (group commit), so the cost is paid per
// batch, not per BU.
//
// Two stores: `BindingStore` commits on the calling thread — the daemon's, with its checkpoints in a
// thread of their own (checkpointer.js: SQLite's automatic checkpoint inside a commit was the BA latency's
// p99); `WorkerBindingStore` (opt-in, OFFLINK_HA_COMMIT_THREAD=1) commits in a worker thread
// (storeworker.js) with its own connection, so the fsync does not block the event loop — measured slower
// for the daemon as a whole (bench/profiles/ha-p99.md). Both run the same statements from the same rows
// (`commitRows`).
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { OfflinkError } from '../errors.ts';
import type { Binding, BindingMode, CacheOp } from './bcache.ts';

export interface StoredCache {
  bindings: Binding[];
  timestamps: [string, bigint][];
}

/** What the daemon needs from persistence (tests may substitute). */
export interface BindingStoreLike {
  /** Everything stored; asynchronous for a store across the network (etcdstore.ts). */
  load(): StoredCache | Promise<StoredCache>;
  /**
   * Commit all ops in one transaction: durable (per `synchronous`) once it returns or its promise resolves;
   * a failure commits none of them. The daemon starts the next write only after this one settled.
   */
  write(ops: readonly CacheOp[]): void | Promise<void>;
  close(): void | Promise<void>;
  /** The most cache ops one write may hold (etcd bounds a transaction); undefined = no bound. */
  readonly maxOpsPerWrite?: number;
}

export interface StoreOptions {
  synchronous?: 'FULL' | 'NORMAL';
  /**
   * Who copies the WAL back into the database file: SQLite inside the commit that crosses 1,000 pages
   * ('auto', SQLite's default), or a thread of its own with a second connection ('thread': checkpointer.js,
   * the daemon's choice for a file). 'thread' needs a file; if the thread dies, the store goes back to 'auto'.
   */
  checkpoints?: 'auto' | 'thread';
  /** With checkpoints 'thread': how often it checkpoints (default 200 ms). */
  checkpointIntervalMs?: number;
  /** With checkpoints 'thread': each checkpoint that copied pages (`pages`: how many of the WAL's are now in the database), and its time. */
  onCheckpoint?: (c: { ms: number; pages: number }) => void;
  /** With checkpoints 'thread': the thread failed or exited; SQLite's automatic checkpoint is back on. */
  onCheckpointerLost?: (err: Error) => void;
}

/** SQLite's own wal_autocheckpoint default, restored when the checkpoint thread is lost. */
const AUTO_CHECKPOINT_PAGES = 1000;

const SCHEMA_VERSION = 1;

// Positional parameters: binding by name costs an object per row (bench/profiles/ha-core.md).
const PUT_SQL = `INSERT INTO binding (hoa, coa, prefixes, sequence, lifetime, expires_at, mode, last_timestamp, id, registered_at, updated_at)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
  ON CONFLICT (hoa) DO UPDATE SET coa = excluded.coa, prefixes = excluded.prefixes, sequence = excluded.sequence,
    lifetime = excluded.lifetime, expires_at = excluded.expires_at, mode = excluded.mode,
    last_timestamp = excluded.last_timestamp, id = excluded.id, registered_at = excluded.registered_at,
    updated_at = excluded.updated_at`;
const DELETE_SQL = 'DELETE FROM binding WHERE hoa = ?';
// Replay state outlives the binding (RFC 4285 §6): a deregistered MR's old BUs stay stale. A binding's row
// holds its own last timestamp, so the replay table is written only when the binding goes: one statement
// per refresh instead of two.
const KEEP_REPLAY_SQL = `INSERT INTO replay (hoa, last_timestamp) SELECT hoa, last_timestamp FROM binding WHERE hoa = ?
  ON CONFLICT (hoa) DO UPDATE SET last_timestamp = excluded.last_timestamp`;

/** The statements of a commit; a row names one by its index. */
const STATEMENTS = [PUT_SQL, DELETE_SQL, KEEP_REPLAY_SQL];
const PUT = 0;
const DELETE = 1;
const KEEP_REPLAY = 2;

export type CommitRow = [statement: number, ...params: (string | number)[]];

/** The statements that commit `ops`, in order. */
export function commitRows(ops: readonly CacheOp[]): CommitRow[] {
  const rows: CommitRow[] = [];
  for (const op of ops) {
    if (op.op === 'delete') {
      rows.push([KEEP_REPLAY, op.hoa], [DELETE, op.hoa]);
      continue;
    }
    const b = op.binding;
    rows.push([
      PUT,
      b.hoa,
      b.coa,
      b.prefixes.join(' '),
      b.sequence,
      b.lifetimeSeconds,
      b.expiresAt,
      b.mode,
      hex(b.lastTimestamp),
      b.id,
      b.registeredAt,
      b.updatedAt,
    ]);
  }
  return rows;
}

function pragmas(options: StoreOptions): string[] {
  return ['journal_mode = WAL', `synchronous = ${options.synchronous ?? 'FULL'}`];
}

interface BindingRow {
  hoa: string;
  coa: string;
  prefixes: string;
  sequence: number;
  lifetime: number;
  expires_at: number;
  mode: string;
  last_timestamp: string;
  id: number;
  registered_at: number;
  updated_at: number;
}

/** Commits on the calling thread (with `checkpoints: 'thread'`, checkpoints in another). */
export class BindingStore implements BindingStoreLike {
  private readonly db: Database.Database;
  private readonly writeTx: (rows: readonly CommitRow[]) => void;
  private checkpointer: Worker | undefined;
  /** Resolves when the checkpoint thread has opened its connection (tests). */
  readonly checkpointerReady: Promise<void>;

  constructor(path: string, options: StoreOptions = {}) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    for (const pragma of pragmas(options)) this.db.pragma(pragma);
    this.migrate();
    const statements = STATEMENTS.map((sql) => this.db.prepare(sql));
    this.writeTx = this.db.transaction((rows: readonly CommitRow[]) => {
      for (const [i, ...params] of rows) statements[i]!.run(...params);
    });
    this.checkpointerReady = Promise.resolve();
    if (options.checkpoints === 'thread') {
      if (path === ':memory:')
        throw new StoreError('ERR_STORE', "checkpoints: 'thread' needs a database file, not :memory:");
      this.checkpointerReady = this.startCheckpointer(path, options);
    }
  }

  /** The checkpoint thread; SQLite's automatic checkpoint off while it runs. */
  private startCheckpointer(path: string, options: StoreOptions): Promise<void> {
    this.db.pragma('wal_autocheckpoint = 0');
    const worker = new Worker(new URL('./checkpointer.js', import.meta.url), {
      workerData: { path, intervalMs: options.checkpointIntervalMs ?? 200 },
    });
    this.checkpointer = worker;
    let ready!: () => void;
    const promise = new Promise<void>((res) => {
      ready = res;
    });
    let error: Error | undefined;
    worker.on('message', (msg: CheckpointerMessage) => {
      if ('ready' in msg) ready();
      else if ('checkpoint' in msg)
        options.onCheckpoint?.({ ms: msg.checkpoint.ms, pages: msg.checkpoint.checkpointed });
    });
    worker.on('error', (err) => {
      error = err;
    });
    worker.on('exit', (code) => {
      ready();
      if (this.checkpointer !== worker) return; // closed on purpose
      this.checkpointer = undefined;
      if (this.db.open) this.db.pragma(`wal_autocheckpoint = ${AUTO_CHECKPOINT_PAGES}`);
      options.onCheckpointerLost?.(
        new StoreError('ERR_STORE_CHECKPOINTER', `checkpoint thread exited (${error?.message ?? code})`),
      );
    });
    return promise;
  }

  private migrate(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) {
      throw new Error(`binding store schema ${version} is newer than this offlink (${SCHEMA_VERSION})`);
    }
    if (version === SCHEMA_VERSION) return;
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS binding (
        hoa TEXT PRIMARY KEY,
        coa TEXT NOT NULL,
        prefixes TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        lifetime INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        mode TEXT NOT NULL,
        last_timestamp TEXT NOT NULL,
        id INTEGER NOT NULL UNIQUE,
        registered_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS replay (hoa TEXT PRIMARY KEY, last_timestamp TEXT NOT NULL) WITHOUT ROWID;
      PRAGMA user_version = ${SCHEMA_VERSION};
    `);
  }

  load(): StoredCache {
    const rows = this.db.prepare('SELECT * FROM binding ORDER BY id').all() as BindingRow[];
    // The newer of the replay row (bindings that went) and the binding's own (fixed-width hex: text order is
    // numeric order).
    const replay = this.db
      .prepare(
        `SELECT hoa, max(last_timestamp) AS last_timestamp FROM
           (SELECT hoa, last_timestamp FROM replay UNION ALL SELECT hoa, last_timestamp FROM binding)
         GROUP BY hoa`,
      )
      .all() as {
      hoa: string;
      last_timestamp: string;
    }[];
    return {
      bindings: rows.map(fromRow),
      timestamps: replay.map((r) => [r.hoa, BigInt(`0x${r.last_timestamp}`)]),
    };
  }

  /** All ops in one transaction; returns once committed (durable per `synchronous`). */
  write(ops: readonly CacheOp[]): void {
    if (ops.length > 0) this.writeTx(commitRows(ops));
  }

  /** Closes the database; with a checkpoint thread, once the thread has closed its connection. */
  close(): void | Promise<void> {
    const worker = this.checkpointer;
    if (!worker) {
      if (this.db.open) this.db.close();
      return;
    }
    this.checkpointer = undefined;
    return new Promise<void>((resolve) => {
      worker.once('exit', () => {
        // the last connection: SQLite checkpoints the whole WAL and removes it
        if (this.db.open) this.db.close();
        resolve();
      });
      worker.postMessage({ close: true });
    });
  }
}

type CheckpointerMessage =
  | { ready: true }
  | { checkpoint: { ms: number; log: number; checkpointed: number } }
  | { error: { message: string; code?: string } };

/** A commit that did not happen: the transaction failed (`code` SQLite's, e.g. SQLITE_FULL) or the store is gone. */
export class StoreError extends OfflinkError {
  constructor(code: string, message: string) {
    super(code, message);
  }
}

interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
}

/**
 * Commits in a worker thread (storeworker.js) holding its own connection: `write` posts the rows and
 * resolves when the worker's transaction has committed. Writes commit in call order. If the worker dies,
 * waiting writes fail and the next write starts a new one. Loading stays synchronous, on a short-lived
 * connection of the calling thread.
 */
export class WorkerBindingStore implements BindingStoreLike {
  /** The worker's connection settings, once it has opened the database (tests check them). */
  ready: Promise<{ journalMode: string; synchronous: number }>;
  /** Duration of each commit in the worker, ms (the daemon's metrics). */
  onCommit: ((ms: number) => void) | undefined;
  private worker: Worker | undefined;
  private readonly waiting = new Map<number, Waiter>();
  private nextId = 1;
  private closed: Promise<void> | undefined;

  constructor(
    private readonly path: string,
    private readonly options: StoreOptions = {},
  ) {
    if (path === ':memory:') throw new StoreError('ERR_STORE', 'WorkerBindingStore: no :memory: database');
    // Create or migrate the schema before the worker prepares its statements.
    new BindingStore(path, options).close();
    this.ready = this.start();
  }

  load(): StoredCache {
    const store = new BindingStore(this.path, this.options);
    try {
      return store.load();
    } finally {
      store.close();
    }
  }

  write(ops: readonly CacheOp[]): Promise<void> {
    if (ops.length === 0) return Promise.resolve();
    if (this.closed) return Promise.reject(new StoreError('ERR_STORE_CLOSED', 'binding store is closed'));
    if (!this.worker) this.ready = this.start();
    const id = this.nextId++;
    const rows = commitRows(ops);
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker!.postMessage({ id, rows });
    });
  }

  /** Resolves once every write made before it has committed (or failed) and the worker has exited. */
  close(): Promise<void> {
    this.closed ??= new Promise<void>((resolve) => {
      const worker = this.worker;
      if (!worker) return resolve();
      worker.once('exit', () => resolve());
      worker.postMessage({ close: true });
    });
    return this.closed;
  }

  private start(): Promise<{ journalMode: string; synchronous: number }> {
    const worker = new Worker(new URL('./storeworker.js', import.meta.url), {
      workerData: { path: this.path, pragmas: pragmas(this.options), statements: STATEMENTS },
    });
    this.worker = worker;
    let ready: (v: { journalMode: string; synchronous: number }) => void;
    let failed: (err: Error) => void;
    const promise = new Promise<{ journalMode: string; synchronous: number }>((res, rej) => {
      ready = res;
      failed = rej;
    });
    // Nobody need wait for `ready`; an unobserved failure is reported through the writes instead.
    promise.catch(() => {});
    worker.on('message', (msg: WorkerMessage) => {
      if ('ready' in msg) return ready(msg.ready);
      const waiter = this.waiting.get(msg.id);
      if (!waiter) return;
      this.waiting.delete(msg.id);
      if ('error' in msg) waiter.reject(new StoreError(msg.error.code ?? 'ERR_STORE', msg.error.message));
      else {
        this.onCommit?.(msg.ms);
        waiter.resolve();
      }
    });
    let error: Error | undefined;
    worker.on('error', (err) => {
      error = err;
      failed(err);
    });
    worker.on('exit', (code) => {
      if (this.worker === worker) this.worker = undefined;
      const err = new StoreError(
        'ERR_STORE_WORKER',
        `binding store worker exited (${error?.message ?? code})`,
      );
      failed(err);
      for (const waiter of this.waiting.values()) waiter.reject(err);
      this.waiting.clear();
    });
    return promise;
  }
}

type WorkerMessage =
  | { ready: { journalMode: string; synchronous: number } }
  | { id: number; ms: number }
  | { id: number; error: { message: string; code?: string } };

function hex(v: bigint): string {
  return v.toString(16).padStart(16, '0');
}

function fromRow(r: BindingRow): Binding {
  return {
    hoa: r.hoa,
    coa: r.coa,
    prefixes: r.prefixes === '' ? [] : r.prefixes.split(' '),
    sequence: r.sequence,
    lifetimeSeconds: r.lifetime,
    expiresAt: r.expires_at,
    mode: r.mode as BindingMode,
    lastTimestamp: BigInt(`0x${r.last_timestamp}`),
    id: r.id,
    registeredAt: r.registered_at,
    updatedAt: r.updated_at,
  };
}
