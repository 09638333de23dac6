// Persistent binding cache (SQLite through better-sqlite3 12). The daemon writes every batch of cache ops
// in one transaction before any accepting BA of that batch is sent, and loads the cache on start.
//
// journal_mode=WAL with synchronous=FULL: "durably written" must hold across power loss and kernel
// crashes, not only a killed process (WAL + NORMAL survives kill -9 but may lose the last commits on
// power loss, and an MR holding an accepting BA would then be unknown to us after reboot). FULL costs one
// fsync per commit; the daemon commits once per batch of BUs (group commit), so the cost is paid per
// batch, not per BU.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { Binding, BindingMode, CacheOp } from './bcache.ts';

/** What the daemon needs from persistence (tests may substitute). */
export interface BindingStoreLike {
  load(): { bindings: Binding[]; timestamps: [string, bigint][] };
  write(ops: readonly CacheOp[]): void;
  close(): void;
}

const SCHEMA_VERSION = 1;

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

export class BindingStore implements BindingStoreLike {
  private readonly db: Database.Database;
  private readonly put: Database.Statement;
  private readonly del: Database.Statement;
  private readonly putReplay: Database.Statement;
  private readonly writeTx: (ops: readonly CacheOp[]) => void;

  constructor(path: string, options: { synchronous?: 'FULL' | 'NORMAL' } = {}) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma(`synchronous = ${options.synchronous ?? 'FULL'}`);
    this.migrate();
    // Positional parameters: binding by name costs an object per row (bench/profiles/ha-core.md).
    this.put = this.db.prepare(
      `INSERT INTO binding (hoa, coa, prefixes, sequence, lifetime, expires_at, mode, last_timestamp, id, registered_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (hoa) DO UPDATE SET coa = excluded.coa, prefixes = excluded.prefixes, sequence = excluded.sequence,
         lifetime = excluded.lifetime, expires_at = excluded.expires_at, mode = excluded.mode,
         last_timestamp = excluded.last_timestamp, id = excluded.id, registered_at = excluded.registered_at,
         updated_at = excluded.updated_at`,
    );
    this.del = this.db.prepare('DELETE FROM binding WHERE hoa = ?');
    // Replay state outlives the binding (RFC 4285 §6): a deregistered MR's old BUs stay stale. A binding's
    // row holds its own last timestamp, so the replay table is written only when the binding goes: one
    // statement per refresh instead of two.
    this.putReplay = this.db.prepare(
      `INSERT INTO replay (hoa, last_timestamp) SELECT hoa, last_timestamp FROM binding WHERE hoa = ?
       ON CONFLICT (hoa) DO UPDATE SET last_timestamp = excluded.last_timestamp`,
    );
    this.writeTx = this.db.transaction((ops: readonly CacheOp[]) => {
      for (const op of ops) {
        if (op.op === 'delete') {
          this.putReplay.run(op.hoa);
          this.del.run(op.hoa);
        } else {
          const b = op.binding;
          this.put.run(
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
          );
        }
      }
    });
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

  load(): { bindings: Binding[]; timestamps: [string, bigint][] } {
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
    if (ops.length > 0) this.writeTx(ops);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

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
