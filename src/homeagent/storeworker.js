// The binding store's commit thread (`WorkerBindingStore` in store.ts): it owns one SQLite connection and
// runs each batch of rows in one transaction, off the home agent's event loop, so the fsync that
// synchronous=FULL costs per commit (p99 ~10 ms on this disk) no longer stops the daemon from receiving,
// processing and answering (bench/profiles/ha-p99.md).
//
// Plain JavaScript, not TypeScript: on Node 20 a worker thread does not inherit tsx's loader hooks, and
// registering tsx again in the worker costs a second loader thread (~13 MiB more resident, measured).
// So it knows no SQL of its own: store.ts sends the pragmas and statements (workerData) and, per commit,
// the rows ([statement index, ...parameters]) to run in order.
//
// Messages in: { id, rows } (commit) and { close: true }. Out: { ready: {journalMode, synchronous} } once,
// then { id, ms } per commit, or { id, error: {message, code} } when the transaction failed (rolled back).
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

const db = new Database(workerData.path);
for (const pragma of workerData.pragmas) db.pragma(pragma);
const statements = workerData.statements.map((sql) => db.prepare(sql));
const commit = db.transaction((rows) => {
  for (const row of rows) statements[row[0]].run(...row.slice(1));
});

parentPort.postMessage({
  ready: {
    journalMode: db.pragma('journal_mode', { simple: true }),
    synchronous: db.pragma('synchronous', { simple: true }),
  },
});

parentPort.on('message', (msg) => {
  if (msg.close) {
    db.close();
    parentPort.close();
    return;
  }
  const t0 = performance.now();
  try {
    commit(msg.rows);
    parentPort.postMessage({ id: msg.id, ms: performance.now() - t0 });
  } catch (err) {
    parentPort.postMessage({ id: msg.id, error: { message: String(err?.message ?? err), code: err?.code } });
  }
});
