// A small etcd v3 client over etcd's gRPC gateway (JSON over HTTP, `/v3/...`), with node's fetch: the three
// calls the binding store needs (range, txn, watch), nothing else. Keys and values are bytes, base64 on the
// wire; int64 fields (revisions) arrive as strings; proto3 JSON leaves out defaults (`succeeded: false`, an
// event's `type: PUT`, a revision 0). Why the gateway and not the `etcd3` package: docs/homeagent.md.
//
// Endpoints are tried in order starting from the last one that answered. A request moves to the next
// endpoint when it certainly did not reach the previous one (connection refused, host unreachable), and a
// read, lease call or watch also when that one did not answer in time. A transaction that may have been
// applied is never sent again here: its error says so (ERR_ETCD_UNCERTAIN), and the next request starts
// at the next endpoint.
import { OfflinkError } from '../errors.ts';

export class EtcdError extends OfflinkError {}

export interface KeyValue {
  key: string;
  value: string;
  modRevision: number;
}

export type Compare = { key: string; modRevision: number };
/** A put bound to `lease` goes when the lease does (etcd lease ids are int64: decimal strings here). */
export type RequestOp = { put: { key: string; value: string; lease?: string } } | { delete: { key: string } };

export interface TxnResult {
  succeeded: boolean;
  /** Revision of the store after the transaction (its own, when it succeeded). */
  revision: number;
  /** What the failure branch read: the current value of each compared key that exists. */
  current: KeyValue[];
}

export interface WatchEvent {
  type: 'put' | 'delete';
  kv: KeyValue;
}

export interface EtcdClientOptions {
  endpoints: readonly string[];
  /** Per request (a watch: until its stream is open). */
  timeoutMs: number;
}

/** Errors of a connection that was never made: the request did not reach that member. */
const NOT_SENT = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ENOTFOUND']);

const b64 = (s: string) => Buffer.from(s).toString('base64');
const unb64 = (s: string | undefined) => (s ? Buffer.from(s, 'base64').toString() : '');

/** The key just past every key that starts with `prefix` (etcd's range_end for a prefix). */
export function prefixEnd(prefix: string): string {
  const bytes = Buffer.from(prefix);
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i]! < 0xff) {
      const end = bytes.subarray(0, i + 1);
      end[i]! += 1;
      return end.toString('latin1');
    }
  }
  return '\0';
}

interface RawKv {
  key?: string;
  value?: string;
  mod_revision?: string;
}

function kv(raw: RawKv): KeyValue {
  return { key: unb64(raw.key), value: unb64(raw.value), modRevision: Number(raw.mod_revision ?? 0) };
}

export class EtcdClient {
  private current = 0;

  constructor(private readonly options: EtcdClientOptions) {
    if (options.endpoints.length === 0) throw new EtcdError('ERR_ETCD', 'no etcd endpoints');
  }

  /**
   * All keys in [key, end), at one revision (`revision` 0 = the latest), `limit` of them (0 = all); the
   * read is linearizable.
   */
  async range(
    key: string,
    end: string,
    options: { limit?: number; revision?: number; signal?: AbortSignal } = {},
  ): Promise<{ kvs: KeyValue[]; more: boolean; revision: number }> {
    const res = await this.call<{ kvs?: RawKv[]; more?: boolean; header: { revision: string } }>(
      '/v3/kv/range',
      {
        key: b64(key),
        range_end: Buffer.from(end, 'latin1').toString('base64'),
        limit: options.limit ?? 0,
        revision: options.revision ?? 0,
      },
      { retry: true, signal: options.signal },
    );
    return { kvs: (res.kvs ?? []).map(kv), more: res.more ?? false, revision: Number(res.header.revision) };
  }

  /**
   * If every compared key's mod revision equals the given one (0: the key does not exist), apply `ops`,
   * else read the compared keys. One etcd transaction either way.
   */
  async txn(
    compare: readonly Compare[],
    ops: readonly RequestOp[],
    signal?: AbortSignal,
  ): Promise<TxnResult> {
    const body = {
      compare: compare.map((c) => ({
        key: b64(c.key),
        target: 'MOD',
        result: 'EQUAL',
        mod_revision: String(c.modRevision),
      })),
      success: ops.map((op) =>
        'put' in op
          ? { request_put: { key: b64(op.put.key), value: b64(op.put.value), lease: op.put.lease ?? '0' } }
          : { request_delete_range: { key: b64(op.delete.key) } },
      ),
      failure: compare.map((c) => ({ request_range: { key: b64(c.key) } })),
    };
    const res = await this.call<{
      succeeded?: boolean;
      header: { revision: string };
      responses?: { response_range?: { kvs?: RawKv[] } }[];
    }>('/v3/kv/txn', body, { retry: false, signal });
    const succeeded = res.succeeded === true;
    const current = succeeded
      ? []
      : (res.responses ?? []).flatMap((r) => (r.response_range?.kvs ?? []).map(kv));
    return { succeeded, revision: Number(res.header.revision), current };
  }

  /** A lease of `ttlSeconds` (etcd may raise it to its minimum); its id. */
  async leaseGrant(ttlSeconds: number, signal?: AbortSignal): Promise<{ id: string; ttl: number }> {
    const res = await this.call<{ ID: string; TTL?: string; error?: string }>(
      '/v3/lease/grant',
      { TTL: ttlSeconds },
      { retry: true, signal },
    );
    if (res.error) throw new EtcdError('ERR_ETCD', `lease grant: ${res.error}`);
    return { id: res.ID, ttl: Number(res.TTL ?? 0) };
  }

  /** Renew a lease; its remaining TTL in seconds, 0 when it has expired (or never existed). */
  async leaseKeepAlive(id: string, signal?: AbortSignal): Promise<number> {
    // The gateway's keepalive is a stream; one request body gets one answer and the stream ends.
    const res = await this.call<{ result?: { TTL?: string } }>(
      '/v3/lease/keepalive',
      { ID: id },
      { retry: true, signal },
    );
    return Number(res.result?.TTL ?? 0);
  }

  /** End a lease now: the keys bound to it go at once. */
  async leaseRevoke(id: string, signal?: AbortSignal): Promise<void> {
    await this.call('/v3/lease/revoke', { ID: id }, { retry: true, signal });
  }

  /**
   * Events on keys under `prefix` after `fromRevision`, until `signal` aborts. Resolves once the watch is
   * established; `onEvents` gets each revision's events in order, `onError` the end of the stream when
   * it was not aborted (the caller decides whether to watch again, from the last revision it saw).
   */
  async watch(
    prefix: string,
    fromRevision: number,
    onEvents: (events: WatchEvent[], revision: number) => void,
    onError: (err: Error) => void,
    signal: AbortSignal,
  ): Promise<void> {
    const body = {
      create_request: {
        key: b64(prefix),
        range_end: Buffer.from(prefixEnd(prefix), 'latin1').toString('base64'),
        start_revision: String(fromRevision + 1),
      },
    };
    const res = await this.post('/v3/watch', body, { retry: true, signal, stream: true });
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let buffered = '';
    const pump = async (): Promise<void> => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) throw new EtcdError('ERR_ETCD_WATCH', 'etcd closed the watch stream');
        buffered += decoder.decode(value, { stream: true });
        for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
          const line = buffered.slice(0, nl).trim();
          buffered = buffered.slice(nl + 1);
          if (line) this.onWatchMessage(line, onEvents);
        }
      }
    };
    pump().catch((err: Error) => {
      if (!signal.aborted) onError(err);
    });
  }

  private onWatchMessage(line: string, onEvents: (events: WatchEvent[], revision: number) => void): void {
    const msg = JSON.parse(line) as {
      result?: {
        header?: { revision?: string };
        canceled?: boolean;
        cancel_reason?: string;
        compact_revision?: string;
        events?: { type?: string; kv: RawKv }[];
      };
      error?: { message?: string };
    };
    if (msg.error) throw new EtcdError('ERR_ETCD_WATCH', `watch: ${msg.error.message}`);
    const result = msg.result;
    if (!result) return;
    if (result.canceled) {
      if (result.compact_revision && result.compact_revision !== '0')
        throw new EtcdError(
          'ERR_ETCD_COMPACTED',
          `watch: compacted past revision ${result.compact_revision}`,
        );
      throw new EtcdError('ERR_ETCD_WATCH', `watch: ${result.cancel_reason ?? 'cancelled'}`);
    }
    const events = result.events ?? [];
    if (events.length === 0) return;
    onEvents(
      events.map((e) => ({ type: e.type === 'DELETE' ? 'delete' : 'put', kv: kv(e.kv) })),
      Number(result.header?.revision ?? 0),
    );
  }

  private async call<T>(
    path: string,
    body: unknown,
    options: { retry: boolean; signal?: AbortSignal | undefined },
  ): Promise<T> {
    const res = await this.post(path, body, options);
    return (await res.json()) as T;
  }

  private async post(
    path: string,
    body: unknown,
    options: { retry: boolean; signal?: AbortSignal | undefined; stream?: boolean },
  ): Promise<Response> {
    const { endpoints, timeoutMs } = this.options;
    const json = JSON.stringify(body);
    let lastError: unknown;
    for (let tried = 0; tried < endpoints.length; tried++) {
      const at = (this.current + tried) % endpoints.length;
      // The timeout bounds a request, or the opening of a stream (which then lives until `signal` aborts).
      const timeout = new AbortController();
      const timer = setTimeout(() => timeout.abort(new DOMException('timed out', 'TimeoutError')), timeoutMs);
      const signal = options.signal ? AbortSignal.any([options.signal, timeout.signal]) : timeout.signal;
      let res: Response;
      try {
        res = await fetch(`${endpoints[at]}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: json,
          signal,
        });
        if (options.stream) clearTimeout(timer);
        else res = new Response(await res.arrayBuffer(), res);
      } catch (err) {
        lastError = err;
        const code = (err as { cause?: { code?: string } }).cause?.code;
        if (code && NOT_SENT.has(code)) continue; // never reached that member: the next one
        if (options.signal?.aborted) throw err;
        // A member that does not answer (hung, cut off) is left for the next one: at once for a request
        // that is safe to repeat, from the next request on for a transaction (whose retry, the store's,
        // finds out whether it was applied).
        if (options.retry) continue;
        this.current = (at + 1) % endpoints.length;
        throw new EtcdError(
          options.retry ? 'ERR_ETCD' : 'ERR_ETCD_UNCERTAIN',
          `etcd ${endpoints[at]}${path}: ${describe(err)}${options.retry ? '' : ' (the transaction may or may not have been applied)'}`,
          { cause: err },
        );
      } finally {
        clearTimeout(timer);
      }
      this.current = at;
      if (res.ok) return res;
      const text = await res.text();
      let message = text;
      try {
        message = (JSON.parse(text) as { message?: string; error?: string }).message ?? message;
      } catch {}
      // etcd answers 503 for "request timed out", "leader changed", "no leader": a transaction may have
      // been proposed and applied all the same.
      const code = res.status >= 500 && !options.retry ? 'ERR_ETCD_UNCERTAIN' : 'ERR_ETCD';
      throw new EtcdError(code, `etcd ${endpoints[at]}${path}: HTTP ${res.status}: ${message.trim()}`);
    }
    throw new EtcdError(
      'ERR_ETCD_UNAVAILABLE',
      `no etcd endpoint reachable (${endpoints.join(', ')}): ${describe(lastError)}`,
      { cause: lastError },
    );
  }
}

function describe(err: unknown): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError') return 'timed out';
  return e?.cause?.code ?? e?.cause?.message ?? e?.message ?? String(err);
}
