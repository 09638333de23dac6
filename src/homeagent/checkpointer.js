// The binding store's checkpoint thread (`checkpoints: 'thread'` in store.ts): it owns a second SQLite
// connection to the store's database and copies the WAL back into the database file with a PASSIVE
// checkpoint every `intervalMs`, while the daemon's own connection runs with wal_autocheckpoint=0.
//
// Why (bench/profiles/ha-p99.md, issue 19): with SQLite's automatic checkpoint, the commit that takes the
// WAL past 1,000 pages also copies them into the database and fsyncs it — ~10 ms every ~50th commit at
// 5,000 refreshes/s, on the home agent's event loop, which was the BA latency's p99. A PASSIVE checkpoint
// never blocks the writer; once it has copied the whole WAL, the writer's next transaction starts the
// WAL over from its beginning, so the file stays bounded.
//
// Plain JavaScript, as storeworker.js, for the same reason (no tsx in a worker thread on Node 20).
// Messages in: { close: true }. Out: { ready: true } once, { error: {message, code} } when a checkpoint
// failed (the next tick tries again), { checkpoint: {ms, log, checkpointed} } after each checkpoint that
// copied something (log: frames in the WAL, checkpointed: how many of them are now in the database).
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

const db = new Database(workerData.path);
// the writer holds its lock only for a commit: wait briefly rather than fail the tick
db.pragma('busy_timeout = 100');
// this connection never writes rows; its page cache only serves the checkpoint's reads
db.pragma('cache_size = -512');

let busy = false;
// what the WAL held and how much of it was in the database after the previous checkpoint: the pragma
// reports totals for the WAL as it stands, so the same figures mean nothing was copied this time
let last = { log: -1, checkpointed: -1 };
const timer = setInterval(() => {
  if (busy) return;
  busy = true;
  const t0 = performance.now();
  try {
    const [r] = db.pragma('wal_checkpoint(PASSIVE)');
    const copied = r && r.checkpointed > 0 && (r.log !== last.log || r.checkpointed !== last.checkpointed);
    if (r) last = { log: r.log, checkpointed: r.checkpointed };
    if (copied)
      parentPort.postMessage({
        checkpoint: { ms: performance.now() - t0, log: r.log, checkpointed: r.checkpointed },
      });
  } catch (err) {
    parentPort.postMessage({ error: { message: String(err?.message ?? err), code: err?.code } });
  } finally {
    busy = false;
  }
}, workerData.intervalMs);

parentPort.on('message', (msg) => {
  if (!msg.close) return;
  clearInterval(timer);
  db.close();
  parentPort.close();
});
parentPort.postMessage({ ready: true });
