// The agent's control API (docs/agent.md): HTTP + JSON between agents and from the CLI, never ssh.
//   POST /v1/prepare   source → destination: can you take this network? (PrepareRequest → PrepareReply)
//   POST /v1/abort     source → destination: forget that prepare (after a failed migration)
//   POST /v1/handover  source → destination: migration completed, here is the binding state
//   POST /v1/migrate   CLI → source: move a network; progress streamed as NDJSON, one MigrationEvent a line
//   GET  /v1/status    networks, guests, recent migrations
//   GET  /metrics      Prometheus text
// Every request is authenticated first (auth.ts); a refused one gets 401, is logged, and reaches no
// handler. Bodies are validated with zod before any handler runs: a bad body gets 400 naming the field
// and changes nothing. The handlers are an interface the agent implements, so this file is tested with
// fakes.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { z } from 'zod';
import { type Clock, systemClock } from '../clock.ts';
import { OfflinkError } from '../errors.ts';
import { type Logger, LogLimiter } from '../log.ts';
import {
  type AbortRequest,
  type AgentStatus,
  abortRequest,
  ControlError,
  type HandoverReply,
  type HandoverRequest,
  handoverRequest,
  type MigrateRequest,
  type MigrationEvent,
  type MigrationRecord,
  migrateRequest,
  type PrepareReply,
  type PrepareRequest,
  prepareRequest,
} from '../migration/messages.ts';
import { authorityOf, type RequestVerifier } from './auth.ts';

export interface ControlHandlers {
  prepare(req: PrepareRequest, signal: AbortSignal): Promise<PrepareReply>;
  abort(req: AbortRequest, signal: AbortSignal): Promise<void>;
  handover(req: HandoverRequest, signal: AbortSignal): Promise<HandoverReply>;
  /**
   * Run a migration. Throwing before the first `onProgress` call refuses it with an HTTP error status;
   * after that, the failure is the stream's last line. The migration does not stop when the client goes
   * away (a half-cancelled migration is worse than a finished one); `signal` fires on server shutdown.
   */
  migrate(
    req: MigrateRequest,
    onProgress: (event: MigrationEvent) => void,
    signal: AbortSignal,
  ): Promise<MigrationRecord>;
  status(): Promise<AgentStatus>;
  metrics(): Promise<{ contentType: string; body: string }>;
}

export interface ControlServerOptions {
  /** Bytes; larger bodies get 413 (default 1 MiB). */
  bodyLimit?: number;
}

/** HTTP status for the `code` of an OfflinkError thrown by a handler (ControlError carries its own). */
const STATUS_BY_CODE: Readonly<Record<string, number>> = {
  ERR_UNKNOWN_NETWORK: 404,
  ERR_UNKNOWN_PEER: 404,
  ERR_UNKNOWN_MIGRATION: 404,
  ERR_NETWORK_STATE: 409,
  ERR_BUSY: 409,
  ERR_HYPERVISOR: 409,
  ERR_HYPERVISOR_CONFIG: 409,
  ERR_CONFIG: 400,
  ERR_PEER: 502,
};

class HttpError extends ControlError {}

type Route =
  | { kind: 'json'; schema: z.ZodType; run: (body: never, signal: AbortSignal) => Promise<unknown> }
  | { kind: 'stream' }
  | { kind: 'get'; run: () => Promise<unknown> };

export class ControlServer {
  private readonly handlers: ControlHandlers;
  private readonly verifier: RequestVerifier;
  private readonly log: Logger;
  /** Refusals are what an attacker repeats at will: rate-limited lines, per reason. */
  private readonly refusedLog: LogLimiter;
  private readonly onRefused: ((reason: string) => void) | undefined;
  private readonly bodyLimit: number;
  private readonly server: Server;
  private readonly shutdown = new AbortController();
  private readonly routes: ReadonlyMap<string, Route>;

  constructor(
    components: {
      handlers: ControlHandlers;
      verifier: RequestVerifier;
      log: Logger;
      /** Told about every refused request (metrics). */
      onRefused?: (reason: string) => void;
      /** For the rate limit of refusal lines (default the system clock). */
      clock?: Clock;
    },
    options: ControlServerOptions = {},
  ) {
    this.handlers = components.handlers;
    this.verifier = components.verifier;
    this.log = components.log;
    this.refusedLog = new LogLimiter(this.log, components.clock ?? systemClock, {
      lines: 20,
      intervalMs: 1000,
    });
    this.onRefused = components.onRefused;
    this.bodyLimit = options.bodyLimit ?? 1 << 20;
    const h = this.handlers;
    this.routes = new Map<string, Route>([
      [
        'POST /v1/prepare',
        { kind: 'json', schema: prepareRequest, run: (b: PrepareRequest, s) => h.prepare(b, s) },
      ],
      [
        'POST /v1/abort',
        {
          kind: 'json',
          schema: abortRequest,
          run: async (b: AbortRequest, s) => {
            await h.abort(b, s);
            return { ok: true };
          },
        },
      ],
      [
        'POST /v1/handover',
        { kind: 'json', schema: handoverRequest, run: (b: HandoverRequest, s) => h.handover(b, s) },
      ],
      ['POST /v1/migrate', { kind: 'stream' }],
      ['GET /v1/status', { kind: 'get', run: () => h.status() }],
    ]);
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err) => {
        this.log.error({ err }, 'control API: unhandled error');
        if (!res.headersSent)
          sendJson(res, 500, { error: { code: 'ERR_INTERNAL', message: 'internal error' } });
        res.end();
      });
    });
  }

  /** Listen on `host`:`port` (port 0 = any); resolves with the bound address. */
  async listen(host: string, port: number): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host, port, exclusive: true }, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    return this.server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    this.shutdown.abort(new OfflinkError('ERR_SHUTDOWN', 'agent is stopping'));
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    const body = await readBody(req, this.bodyLimit);
    if (body === undefined)
      return sendError(res, new HttpError(413, 'ERR_TOO_LARGE', 'request body too large'));
    // Verified against the address the request arrived on: a request signed for another agent fails.
    const authority = authorityOf(req.socket.localAddress ?? '', req.socket.localPort ?? 0);
    const auth = this.verifier.verify({ method, path: url, body, authority, headers: req.headers });
    if (!auth.ok) {
      this.refusedLog.warn(
        auth.reason,
        { method, path: url, remote: req.socket.remoteAddress, reason: auth.reason, detail: auth.detail },
        'control API: request refused',
      );
      this.onRefused?.(auth.reason);
      return sendJson(res, 401, {
        error: { code: 'ERR_AUTH', message: `not authenticated: ${auth.reason}` },
      });
    }
    const path = url.split('?')[0]!;
    if (method === 'GET' && path === '/metrics') {
      const m = await this.handlers.metrics();
      res.writeHead(200, { 'content-type': m.contentType });
      res.end(m.body);
      return;
    }
    const route = this.routes.get(`${method} ${path}`);
    if (!route) {
      const known = [...this.routes.keys()].some((k) => k.endsWith(` ${path}`));
      return sendError(
        res,
        known
          ? new HttpError(405, 'ERR_METHOD', `${method} not allowed on ${path}`)
          : new HttpError(404, 'ERR_NOT_FOUND', `no such endpoint: ${path}`),
      );
    }
    try {
      if (route.kind === 'get') return sendJson(res, 200, await route.run());
      if (route.kind === 'json') {
        const input = parseBody(route.schema, body);
        return sendJson(res, 200, await route.run(input as never, this.shutdown.signal));
      }
      await this.migrate(res, parseBody(migrateRequest, body) as MigrateRequest);
    } catch (err) {
      if (!(err instanceof ControlError)) this.log.warn({ err, method, path }, 'control API: request failed');
      sendError(res, err);
    }
  }

  private async migrate(res: ServerResponse, input: MigrateRequest): Promise<void> {
    const write = (event: MigrationEvent) => {
      if (!res.headersSent) {
        res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
      }
      if (!res.writableEnded && !res.destroyed) res.write(`${JSON.stringify(event)}\n`);
    };
    let record: MigrationRecord;
    try {
      record = await this.handlers.migrate(input, write, this.shutdown.signal);
    } catch (err) {
      if (!res.headersSent) throw err;
      const { code, message } = describe(err);
      write({ type: 'error', code, message });
      res.end();
      return;
    }
    write(
      record.outcome === 'succeeded'
        ? { type: 'result', migration: record }
        : {
            type: 'error',
            code: 'ERR_MIGRATION_FAILED',
            message: record.error ?? 'migration failed',
            migration: record,
          },
    );
    res.end();
  }
}

function parseBody<S extends z.ZodType>(schema: S, body: Buffer): z.output<S> {
  let json: unknown;
  try {
    json = body.length === 0 ? undefined : JSON.parse(body.toString('utf8'));
  } catch {
    throw new HttpError(400, 'ERR_BAD_REQUEST', 'body is not JSON');
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where =
      issue.code === 'unrecognized_keys'
        ? issue.keys.join(', ')
        : issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p))).join('.');
    const what = issue.code === 'unrecognized_keys' ? 'unknown field' : issue.message;
    throw new HttpError(400, 'ERR_BAD_REQUEST', where ? `${where}: ${what}` : `body: ${what}`);
  }
  return parsed.data;
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) over = true;
      else chunks.push(chunk);
    });
    req.on('end', () => resolve(over ? undefined : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function describe(err: unknown): { status: number; code: string; message: string } {
  if (err instanceof ControlError) return { status: err.status, code: err.code, message: err.message };
  if (err instanceof OfflinkError) {
    return { status: STATUS_BY_CODE[err.code] ?? 500, code: err.code, message: err.message };
  }
  return { status: 500, code: 'ERR_INTERNAL', message: err instanceof Error ? err.message : String(err) };
}

function sendError(res: ServerResponse, err: unknown): void {
  const { status, code, message } = describe(err);
  sendJson(res, status, { error: { code, message } });
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const text = JSON.stringify(value ?? null);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
