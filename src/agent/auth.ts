// Authentication of the control channel between agents and from the CLI (docs/agent.md): every request
// carries an HMAC-SHA256, under the cluster key, of its method, path, timestamp, a fresh nonce and the
// SHA-256 of its body, and the authority (address:port) of the agent it is sent to. The receiver checks the
// signature in constant time against its own address, refuses timestamps outside a window around its own
// clock and nonces it has already seen within that window, so a captured request can be neither altered
// nor replayed — to the same agent (nonce) or to another one (authority): each agent keeps its own nonce
// cache, so without the authority a prepare and a handover recorded on their way to one destination
// could be replayed to a third host holding the same network, which would take it over. (Responses are not signed: the channel protects who may act, not
// the secrecy or integrity of replies; use TLS for that where the network is not trusted.)
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import type { Clock } from '../clock.ts';

export const AUTH_HEADERS = {
  timestamp: 'x-offlink-timestamp',
  nonce: 'x-offlink-nonce',
  signature: 'x-offlink-signature',
} as const;

/** The domain-separation tag and version of the string that is signed. */
const SCHEME = 'offlink-hmac-sha256-v2';
export const MIN_CLUSTER_KEY_BYTES = 32;
const NONCE = /^[0-9a-f]{32,128}$/;
const SIGNATURE = /^[0-9a-f]{64}$/;
const TIMESTAMP = /^\d{1,16}$/;

export interface RequestToSign {
  method: string;
  /** Path and query exactly as sent on the request line (`/v1/status?x=1`). */
  path: string;
  body: Uint8Array | string;
  /**
   * The agent the request is for, as `authorityOf(address, port)` (`[2001:db8:b::2]:7400`): the client
   * takes it from the URL it dials, the server from the socket the request arrived on. Empty when absent.
   */
  authority?: string;
}

/** `address:port` in the one form both ends compute (IPv6 compressed, in brackets; v4-mapped as IPv4). */
export function authorityOf(address: string, port: number): string {
  const bare = address.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(bare)?.[1];
  const host = mapped ?? bare;
  if (isIPv6(host)) return `[${new URL(`http://[${host}]/`).hostname.slice(1, -1)}]:${port}`;
  return `${isIPv4(host) ? host : host.toLowerCase()}:${port}`;
}

/** The authority of a URL as `authorityOf` writes it (default ports filled in). */
export function urlAuthority(url: URL): string {
  const port = url.port !== '' ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
  return authorityOf(url.hostname, port);
}

/** The string under the HMAC: one field a line, the body by its SHA-256. */
function canonical(req: RequestToSign, timestamp: string, nonce: string): string {
  const bodyHash = createHash('sha256').update(req.body).digest('hex');
  return [SCHEME, req.method.toUpperCase(), req.authority ?? '', req.path, timestamp, nonce, bodyHash].join(
    '\n',
  );
}

function hmac(key: Uint8Array, text: string): Buffer {
  return createHmac('sha256', key).update(text).digest();
}

/** Headers that authenticate `req` now. */
export function signRequest(
  key: Uint8Array,
  req: RequestToSign,
  clock: Pick<Clock, 'now'>,
  nonce: string = randomBytes(16).toString('hex'),
): Record<string, string> {
  const timestamp = String(Math.floor(clock.now()));
  return {
    [AUTH_HEADERS.timestamp]: timestamp,
    [AUTH_HEADERS.nonce]: nonce,
    [AUTH_HEADERS.signature]: hmac(key, canonical(req, timestamp, nonce)).toString('hex'),
  };
}

export type AuthFailure =
  | 'missing-header'
  | 'malformed-header'
  | 'stale-timestamp'
  | 'bad-signature'
  | 'replayed-nonce'
  | 'nonce-cache-full';

export type AuthResult = { ok: true } | { ok: false; reason: AuthFailure; detail: string };

export interface RequestVerifierOptions {
  clock: Clock;
  /** Accepted difference between the request's timestamp and our clock, either way (default 30 s). */
  windowMs?: number;
  /** Most nonces remembered at once (default 100 000). When full of unexpired ones, requests are refused. */
  maxNonces?: number;
}

export interface RequestToVerify extends RequestToSign {
  headers: Readonly<Record<string, string | string[] | undefined>>;
}

function checkClusterKey(key: Uint8Array): Uint8Array {
  if (key.length < MIN_CLUSTER_KEY_BYTES)
    throw new RangeError(`cluster key shorter than ${MIN_CLUSTER_KEY_BYTES} bytes`);
  return key;
}

export class RequestVerifier {
  private key: Uint8Array;
  private readonly clock: Clock;
  private windowMs: number;
  private readonly maxNonces: number;
  /** nonce → time (our clock) after which its timestamp is outside the window and it can be forgotten. */
  private readonly nonces = new Map<string, number>();

  constructor(key: Uint8Array, options: RequestVerifierOptions) {
    this.key = checkClusterKey(key);
    this.clock = options.clock;
    this.windowMs = options.windowMs ?? 30_000;
    this.maxNonces = options.maxNonces ?? 100_000;
  }

  /**
   * Verify with `key` from now on (a reloaded config), and with a new clock window. The nonces seen stay
   * remembered: a request captured before the change is still a replay after it.
   */
  rekey(key: Uint8Array, windowMs = this.windowMs): void {
    this.key = checkClusterKey(key);
    this.windowMs = windowMs;
  }

  /** Nonces currently remembered. */
  get remembered(): number {
    return this.nonces.size;
  }

  verify(req: RequestToVerify): AuthResult {
    const timestamp = header(req.headers, AUTH_HEADERS.timestamp);
    const nonce = header(req.headers, AUTH_HEADERS.nonce);
    const signature = header(req.headers, AUTH_HEADERS.signature);
    if (timestamp === undefined || nonce === undefined || signature === undefined) {
      return refuse('missing-header', 'missing x-offlink-timestamp, -nonce or -signature');
    }
    if (!TIMESTAMP.test(timestamp) || !NONCE.test(nonce) || !SIGNATURE.test(signature)) {
      return refuse('malformed-header', 'malformed authentication header');
    }
    const now = this.clock.now();
    const skew = Number(timestamp) - now;
    if (Math.abs(skew) > this.windowMs) {
      return refuse(
        'stale-timestamp',
        `timestamp ${skew > 0 ? 'ahead of' : 'behind'} our clock by ${Math.abs(skew)} ms`,
      );
    }
    const expected = hmac(this.key, canonical(req, timestamp, nonce));
    if (!timingSafeEqual(expected, Buffer.from(signature, 'hex'))) {
      return refuse('bad-signature', 'signature does not match');
    }
    // Only authentic requests reach the cache, so forged ones cannot fill it.
    this.prune(now);
    if (this.nonces.has(nonce)) return refuse('replayed-nonce', 'nonce already used');
    if (this.nonces.size >= this.maxNonces)
      return refuse('nonce-cache-full', 'too many requests in the window');
    this.nonces.set(nonce, Number(timestamp) + this.windowMs);
    return { ok: true };
  }

  private prune(now: number): void {
    // Map order is insertion order, which is roughly expiry order; stop at the first live entry unless
    // the cache is full, then sweep it all.
    const full = this.nonces.size >= this.maxNonces;
    for (const [nonce, expires] of this.nonces) {
      if (expires < now) this.nonces.delete(nonce);
      else if (!full) break;
    }
  }
}

function header(headers: RequestToVerify['headers'], name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? undefined : v;
}

function refuse(reason: AuthFailure, detail: string): AuthResult {
  return { ok: false, reason, detail };
}

export interface SignedFetchOptions {
  key: Uint8Array;
  clock?: Pick<Clock, 'now'>;
  method?: string;
  /** JSON-encoded when not a string. */
  body?: unknown;
  signal?: AbortSignal;
}

/** `fetch` with the request signed; a JSON body is sent as application/json. */
export function signedFetch(url: string | URL, options: SignedFetchOptions): Promise<Response> {
  const u = new URL(url);
  const method = (options.method ?? (options.body === undefined ? 'GET' : 'POST')).toUpperCase();
  const body =
    options.body === undefined
      ? ''
      : typeof options.body === 'string'
        ? options.body
        : JSON.stringify(options.body);
  const headers: Record<string, string> = signRequest(
    options.key,
    { method, path: `${u.pathname}${u.search}`, body, authority: urlAuthority(u) },
    options.clock ?? { now: () => Date.now() },
  );
  if (body !== '') headers['content-type'] = 'application/json';
  return fetch(u, {
    method,
    headers,
    ...(body === '' ? {} : { body }),
    ...(options.signal ? { signal: options.signal } : {}),
  });
}
