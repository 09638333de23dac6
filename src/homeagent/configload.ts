// Loading the home agent's config in a worker thread (issue 19).
//
// At 100k mobile routers the config is ~16 MB of YAML; parsing it grows the V8 heap to ~150 MB of which
// ~36 MB is what the daemon keeps (the prefix table). V8 does not give the rest back to the system for a
// long time: a daemon that parsed its config itself started at 213-218 MiB resident, one whose worker
// parsed it at 182-183 (bench/profiles/ha-i19.md; once 100k bindings are registered the heap has grown
// into that room anyway). Here the parse runs in a worker thread with its own heap: the worker sends
// back the settings and the prefix table's columns, exits, and its heap goes with it. The main thread
// never holds the YAML.
//
// The worker runs the offlink CLI's own entry script (`cliEntry` in cli/program.ts: bin/offlink.js in a
// checkout, dist/offlink.mjs in the package), which asks `serveConfigLoad` before parsing any command
// line. Errors
// come back as what they were: a ConfigError stays a ConfigError with its key path.
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { ConfigError, OfflinkError } from '../errors.ts';
import { type LoadedHomeAgent, loadHomeAgent } from './config.ts';
import { PrefixTable, type PrefixTableColumns } from './prefixtable.ts';

const TASK = 'offlink:load-home-agent-config';

type Reply =
  | { ok: true; config: LoadedHomeAgent['config']; table: PrefixTableColumns }
  | { ok: false; error: { name: string; message: string; code?: string; path?: string; stack?: string } };

/**
 * The home agent config at `path`, parsed in a worker thread running `entry` (the CLI's entry script);
 * without `entry`, in this thread. Rejects with the loader's own error (ConfigError for a bad config).
 */
export function loadHomeAgentApart(path: string, entry: string | undefined): Promise<LoadedHomeAgent> {
  if (!entry) return Promise.resolve(loadHomeAgent(path));
  return new Promise((resolve, reject) => {
    let settled = false;
    const worker = new Worker(entry, {
      // `ha`: bin/offlink.js then loads the same build the daemon runs
      argv: ['ha'],
      workerData: { task: TASK, path },
      stdout: false,
      stderr: false,
    });
    worker.once('message', (reply: Reply) => {
      settled = true;
      if (reply.ok) resolve({ config: reply.config, table: PrefixTable.fromColumns(reply.table) });
      else reject(revive(reply.error));
      void worker.terminate();
    });
    worker.once('error', (err) => {
      if (!settled) reject(err);
      settled = true;
    });
    worker.once('exit', (code) => {
      if (!settled)
        reject(
          new OfflinkError(
            'ERR_CONFIG_LOADER',
            `config loader for ${path} exited (${code}) without an answer`,
          ),
        );
      settled = true;
    });
  });
}

/**
 * In a worker started by `loadHomeAgentApart`: load the config, send it back, and return true (the caller
 * then does nothing else). Anywhere else: false.
 */
export function serveConfigLoad(): boolean {
  if (isMainThread || workerData?.task !== TASK || !parentPort) return false;
  let reply: Reply;
  let transfer: ArrayBuffer[] = [];
  try {
    const { config, table } = loadHomeAgent(String(workerData.path));
    const columns = table.columns();
    reply = { ok: true, config, table: columns };
    transfer = [columns.spiOf, columns.algorithmOf, columns.keyAt, columns.keys].map(
      (a) => a.buffer as ArrayBuffer,
    );
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    reply = {
      ok: false,
      error: {
        name: e.name,
        message: e.message,
        ...(e instanceof OfflinkError ? { code: e.code } : {}),
        ...(e instanceof ConfigError ? { path: e.path } : {}),
        ...(e.stack !== undefined ? { stack: e.stack } : {}),
      },
    };
  }
  parentPort.postMessage(reply, transfer);
  return true;
}

function revive(e: Extract<Reply, { ok: false }>['error']): Error {
  let out: Error;
  if (e.code === 'ERR_CONFIG') {
    out = new ConfigError('', e.message);
    Object.defineProperty(out, 'path', { value: e.path ?? '', enumerable: true });
  } else if (e.code !== undefined) {
    out = new OfflinkError(e.code, e.message);
    out.name = e.name;
  } else {
    out = new Error(e.message);
    out.name = e.name;
  }
  if (e.stack !== undefined) out.stack = e.stack;
  return out;
}
