// The control API's client side, for the CLI and for an agent talking to its peers: every request signed
// (auth.ts), error replies turned back into ControlErrors with the server's code and message.
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import type { Clock } from '../clock.ts';
import { OfflinkError } from '../errors.ts';
import {
  type AbortRequest,
  type AgentStatus,
  ControlError,
  type HandoverReply,
  type HandoverRequest,
  type MigrateRequest,
  type MigrationEvent,
  type MigrationRecord,
  type Peer,
  type PrepareReply,
  type PrepareRequest,
} from '../migration/messages.ts';
import { signedFetch } from './auth.ts';

export interface ControlClientOptions {
  key: Uint8Array;
  clock?: Pick<Clock, 'now'>;
  /** Per request, except the migrate stream (default 30 s). */
  timeoutMs?: number;
}

export class ControlClient {
  readonly baseUrl: string;
  private readonly opts: ControlClientOptions;

  constructor(baseUrl: string, options: ControlClientOptions) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.opts = options;
  }

  prepare(req: PrepareRequest, signal?: AbortSignal): Promise<PrepareReply> {
    return this.json('POST', '/v1/prepare', req, signal) as Promise<PrepareReply>;
  }

  async abort(req: AbortRequest, signal?: AbortSignal): Promise<void> {
    await this.json('POST', '/v1/abort', req, signal);
  }

  handover(req: HandoverRequest, signal?: AbortSignal): Promise<HandoverReply> {
    return this.json('POST', '/v1/handover', req, signal) as Promise<HandoverReply>;
  }

  status(signal?: AbortSignal): Promise<AgentStatus> {
    return this.json('GET', '/v1/status', undefined, signal) as Promise<AgentStatus>;
  }

  async metrics(signal?: AbortSignal): Promise<string> {
    const res = await this.fetch('GET', '/metrics', undefined, signal);
    if (!res.ok) throw await errorOf(res, this.baseUrl);
    return res.text();
  }

  /**
   * Start a migration and follow it: `onEvent` sees every line as it arrives. Resolves with the record
   * of a successful migration; throws a ControlError (with `.migration` when there is one) otherwise.
   */
  async migrate(
    req: Partial<MigrateRequest> & Pick<MigrateRequest, 'network' | 'to'>,
    onEvent: (event: MigrationEvent) => void = () => {},
    signal?: AbortSignal,
  ): Promise<MigrationRecord> {
    const res = await this.fetch('POST', '/v1/migrate', req, signal, false);
    if (!res.ok) throw await errorOf(res, this.baseUrl);
    if (!res.body) throw new OfflinkError('ERR_PEER', `${this.baseUrl}: empty migrate reply`);
    const lines = createInterface({ input: Readable.fromWeb(res.body as never) });
    for await (const line of lines) {
      if (line.trim() === '') continue;
      const event = JSON.parse(line) as MigrationEvent;
      onEvent(event);
      if (event.type === 'result') return event.migration;
      if (event.type === 'error') throw new MigrationFailed(event.code, event.message, event.migration);
    }
    throw new OfflinkError('ERR_PEER', `${this.baseUrl}: migrate stream ended without a result`);
  }

  private async json(method: string, path: string, body: unknown, signal?: AbortSignal): Promise<unknown> {
    const res = await this.fetch(method, path, body, signal);
    if (!res.ok) throw await errorOf(res, this.baseUrl);
    return res.json();
  }

  private async fetch(
    method: string,
    path: string,
    body: unknown,
    signal: AbortSignal | undefined,
    timeout = true,
  ): Promise<Response> {
    const signals = [signal, timeout ? AbortSignal.timeout(this.opts.timeoutMs ?? 30_000) : undefined].filter(
      (s): s is AbortSignal => s !== undefined,
    );
    try {
      return await signedFetch(`${this.baseUrl}${path}`, {
        key: this.opts.key,
        method,
        body,
        ...(this.opts.clock ? { clock: this.opts.clock } : {}),
        ...(signals.length > 0 ? { signal: AbortSignal.any(signals) } : {}),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const why = cause?.code ?? cause?.message ?? (err as Error).message;
      throw new OfflinkError('ERR_PEER', `${this.baseUrl}: ${why}`, { cause: err });
    }
  }
}

/** A migration that started and failed: the stream's last line, with the record when the agent sent it. */
export class MigrationFailed extends OfflinkError {
  readonly migration: MigrationRecord | undefined;
  constructor(code: string, message: string, migration?: MigrationRecord) {
    super(code, message);
    this.migration = migration;
  }
}

async function errorOf(res: Response, baseUrl: string): Promise<ControlError> {
  const text = await res.text();
  try {
    const e = (JSON.parse(text) as { error?: { code?: string; message?: string } }).error;
    if (e?.code && e.message) return new ControlError(res.status, e.code, e.message);
  } catch {}
  return new ControlError(res.status, 'ERR_PEER', `${baseUrl}: HTTP ${res.status} ${text.slice(0, 200)}`);
}

/** A peer agent as the migration procedure sees it, over its control API. */
export function peerOf(host: string, client: ControlClient): Peer {
  return {
    host,
    prepare: (req, signal) => client.prepare(req, signal),
    handover: (req, signal) => client.handover(req, signal),
    abort: (req, signal) => client.abort(req, signal),
  };
}
