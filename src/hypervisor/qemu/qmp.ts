// A QMP client (QEMU Machine Protocol: JSON lines over a unix socket), modelled on QEMU's own
// python/qemu/qmp (STYLE.md): explicit connection states; the greeting and `qmp_capabilities` are done
// before the reader loop serves anything else; each request's id sits in a pending map and is removed in
// `finally`; events reach only the listeners that are registered for them (a listener buffers from the
// moment it is made, so an event that follows a command is never missed); a disconnect rejects every
// waiting call and every waiting listener; errors are typed and carry QEMU's error class.
//
// Wire format (qemu docs/interop/qmp-spec): greeting `{"QMP": {"version": …, "capabilities": […]}}`;
// command `{"execute": NAME, "arguments": {…}, "id": ID}`; reply `{"return": …, "id": ID}` or
// `{"error": {"class": C, "desc": D}, "id": ID}`; event `{"event": NAME, "data": {…}, "timestamp":
// {"seconds": S, "microseconds": U}}`.
import { createConnection, type Socket } from 'node:net';
import {
  QmpClientError,
  QmpDisconnectedError,
  QmpError,
  QmpProtocolError,
  QmpStateError,
} from './qmp-errors.ts';
import { type QmpEvent, QmpEventListener } from './qmp-listener.ts';

export {
  QmpClientError,
  QmpDisconnectedError,
  QmpError,
  QmpProtocolError,
  QmpStateError,
} from './qmp-errors.ts';
export { type QmpEvent, QmpEventListener } from './qmp-listener.ts';

export type QmpState = 'idle' | 'connecting' | 'running' | 'disconnecting';

export interface QmpGreeting {
  version: { qemu: { major: number; minor: number; micro: number }; package?: string };
  capabilities: string[];
}

export interface QmpConnectOptions {
  signal?: AbortSignal;
  /** Give up when the greeting and handshake take longer (default 10 s). */
  timeoutMs?: number;
}

interface Pending {
  command: string;
  resolve(value: unknown): void;
  reject(err: Error): void;
}

/** Milliseconds since the epoch from QMP's `{seconds, microseconds}`. */
function eventTime(ts: unknown): number {
  const t = ts as { seconds?: unknown; microseconds?: unknown } | undefined;
  if (typeof t?.seconds !== 'number' || typeof t.microseconds !== 'number') return Number.NaN;
  return t.seconds * 1000 + t.microseconds / 1000;
}

export class QmpClient {
  private stateValue: QmpState = 'idle';
  private socket: Socket | undefined;
  private readonly pending = new Map<string, Pending>();
  private readonly listeners = new Set<QmpEventListener>();
  private readonly subscribers = new Set<(e: QmpEvent) => void>();
  private readonly closedWaiters: Array<() => void> = [];
  private onTeardown: ((err: Error) => void) | undefined;
  private seq = 0;
  private greetingValue: QmpGreeting | undefined;
  private disconnectReason: Error | undefined;

  /** `name` prefixes request ids, which shows in QEMU's trace output. */
  constructor(private readonly name = 'offlink') {}

  get state(): QmpState {
    return this.stateValue;
  }

  get greeting(): QmpGreeting | undefined {
    return this.greetingValue;
  }

  /** Why the last connection ended (undefined while connected or after a clean `close`). */
  get lastError(): Error | undefined {
    return this.disconnectReason;
  }

  /** Connect to QEMU's QMP unix socket, read the greeting and negotiate capabilities. */
  async connect(path: string, options: QmpConnectOptions = {}): Promise<QmpGreeting> {
    if (this.stateValue !== 'idle') throw new QmpStateError(`QMP connect: already ${this.stateValue}`);
    options.signal?.throwIfAborted();
    this.stateValue = 'connecting';
    this.disconnectReason = undefined;
    const socket = createConnection({ path });
    this.socket = socket;
    const reader = new LineReader();
    // Until the handshake is done, lines go to the handshake alone (python qmp: no reader loop yet).
    const handshake = new HandshakeLines();
    socket.on('data', (chunk: Buffer) => {
      for (const line of reader.push(chunk)) {
        if (this.stateValue === 'running') this.onLine(line);
        else handshake.push(line);
      }
    });
    socket.on('error', (err) =>
      this.teardown(new QmpDisconnectedError(`QMP ${path}: ${err.message}`, { cause: err })),
    );
    socket.on('close', () =>
      this.teardown(new QmpDisconnectedError(`QMP ${path}: connection closed by QEMU`)),
    );
    this.onTeardown = (err) => handshake.fail(err);

    const timeoutMs = options.timeoutMs ?? 10_000;
    const timer = setTimeout(
      () => this.teardown(new QmpDisconnectedError(`QMP ${path}: no handshake within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const onAbort = () =>
      this.teardown(
        new QmpDisconnectedError(`QMP ${path}: connect aborted`, { cause: options.signal?.reason }),
      );
    options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const greeting = parseLine(await handshake.next()) as { QMP?: QmpGreeting } | undefined;
      if (!greeting?.QMP) throw new QmpProtocolError(`QMP ${path}: no greeting`);
      this.greetingValue = greeting.QMP;
      const id = this.nextId();
      socket.write(`${JSON.stringify({ execute: 'qmp_capabilities', id })}\n`);
      const reply = parseLine(await handshake.next()) as
        | { return?: unknown; error?: { class: string; desc: string }; id?: unknown }
        | undefined;
      if (reply?.error) throw new QmpError('qmp_capabilities', reply.error.class, reply.error.desc);
      if (reply?.id !== id || reply.return === undefined)
        throw new QmpProtocolError(`QMP ${path}: unexpected answer to qmp_capabilities`);
      this.stateValue = 'running';
      this.onTeardown = undefined;
      // Whatever QEMU sent right after the handshake (an early event) goes through the reader now.
      for (const line of handshake.drain()) this.onLine(line);
      return greeting.QMP;
    } catch (err) {
      const e = err instanceof QmpClientError ? err : new QmpDisconnectedError(String(err), { cause: err });
      this.teardown(e);
      throw options.signal?.aborted ? options.signal.reason : (this.disconnectReason ?? e);
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Run a command; resolves with its `return` value, rejects with QmpError for QEMU's `error`. */
  async execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    options: { signal?: AbortSignal } = {},
  ): Promise<T> {
    if (this.stateValue !== 'running')
      throw this.disconnectReason && this.stateValue === 'idle'
        ? new QmpDisconnectedError(`QMP ${command}: not connected (${this.disconnectReason.message})`, {
            cause: this.disconnectReason,
          })
        : new QmpStateError(`QMP ${command}: not connected (${this.stateValue})`);
    options.signal?.throwIfAborted();
    const id = this.nextId();
    const msg = args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
    const signal = options.signal;
    let onAbort: (() => void) | undefined;
    try {
      return (await new Promise<unknown>((resolve, reject) => {
        this.pending.set(id, { command, resolve, reject });
        if (signal) {
          onAbort = () => reject(signal.reason);
          signal.addEventListener('abort', onAbort, { once: true });
        }
        this.socket!.write(`${JSON.stringify(msg)}\n`);
      })) as T;
    } finally {
      this.pending.delete(id);
      if (onAbort) signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * A listener for events named in `names` (all events when omitted), buffering from now on. Register it
   * before the command whose events it waits for.
   */
  listen(names?: readonly string[]): QmpEventListener {
    const l = new QmpEventListener(names ? new Set(names) : undefined, (x) => this.listeners.delete(x));
    if (this.stateValue === 'idle') l.end(this.disconnectReason ?? new QmpStateError('QMP not connected'));
    else this.listeners.add(l);
    return l;
  }

  /** Wait for one event from now on. (To catch an event a command causes, use `listen` before the command.) */
  async waitForEvent(
    name: string,
    predicate: (e: QmpEvent) => boolean = () => true,
    signal?: AbortSignal,
  ): Promise<QmpEvent> {
    const l = this.listen([name]);
    try {
      return await l.next(predicate, signal);
    } finally {
      l.close();
    }
  }

  /** Call `fn` for every event until the returned function is called. */
  onEvent(fn: (e: QmpEvent) => void): () => void {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }

  /** Resolves when the connection is closed (at once when idle). */
  closed(): Promise<void> {
    if (this.stateValue === 'idle') return Promise.resolve();
    return new Promise((resolve) => this.closedWaiters.push(resolve));
  }

  /** Close the connection; waiting calls are rejected with QmpDisconnectedError. */
  async close(): Promise<void> {
    if (this.stateValue === 'idle') return;
    const socket = this.socket;
    const done = this.closed();
    this.teardown(undefined);
    socket?.destroy();
    await done;
  }

  private nextId(): string {
    this.seq += 1;
    return `${this.name}-${this.seq}`;
  }

  /** The reader loop's body: one line from QEMU. */
  private onLine(line: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = parseLine(line) as Record<string, unknown>;
      if (msg === null || typeof msg !== 'object') throw new Error('not an object');
    } catch {
      this.fatal(new QmpProtocolError(`QMP: malformed line from QEMU: ${line.slice(0, 200)}`));
      return;
    }
    if (typeof msg['event'] === 'string') {
      const e: QmpEvent = {
        event: msg['event'],
        data: (msg['data'] as Record<string, unknown> | undefined) ?? {},
        timestamp: eventTime(msg['timestamp']),
      };
      for (const l of [...this.listeners]) l.deliver(e);
      for (const fn of [...this.subscribers]) fn(e);
      return;
    }
    const id = msg['id'];
    const p = typeof id === 'string' ? this.pending.get(id) : undefined;
    if (!p) {
      // A reply to a call that was aborted meanwhile; anything else without a known id is not QMP.
      if (typeof id === 'string' && id.startsWith(`${this.name}-`)) return;
      this.fatal(new QmpProtocolError(`QMP: reply to no request: ${line.slice(0, 200)}`));
      return;
    }
    const error = msg['error'] as { class?: unknown; desc?: unknown } | undefined;
    if (error)
      p.reject(new QmpError(p.command, String(error.class ?? 'GenericError'), String(error.desc ?? '')));
    else if ('return' in msg) p.resolve(msg['return']);
    else this.fatal(new QmpProtocolError(`QMP: reply without return or error: ${line.slice(0, 200)}`));
  }

  /** A protocol violation ends the connection (python qmp does the same). */
  private fatal(err: QmpProtocolError): void {
    const socket = this.socket;
    this.teardown(new QmpDisconnectedError(`QMP connection dropped: ${err.message}`, { cause: err }));
    socket?.destroy();
  }

  /** Enter `idle`: reject every waiting call and listener once. `reason` undefined = our own close. */
  private teardown(reason: Error | undefined): void {
    if (this.stateValue === 'idle') return;
    this.stateValue = 'disconnecting';
    this.disconnectReason = reason;
    const err = reason ?? new QmpDisconnectedError('QMP connection closed');
    this.onTeardown?.(err);
    this.onTeardown = undefined;
    for (const p of [...this.pending.values()]) p.reject(err);
    this.pending.clear();
    for (const l of [...this.listeners]) l.end(err);
    this.listeners.clear();
    this.socket?.destroy();
    this.socket = undefined;
    this.stateValue = 'idle';
    for (const w of this.closedWaiters.splice(0)) w();
  }
}

function parseLine(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch {
    throw new QmpProtocolError(`QMP: malformed line: ${line.slice(0, 200)}`);
  }
}

/** Lines received before the reader loop runs, handed to the handshake one at a time. */
class HandshakeLines {
  private readonly lines: string[] = [];
  private waiter: { resolve(line: string): void; reject(err: Error): void } | undefined;
  private failed: Error | undefined;

  push(line: string): void {
    const w = this.waiter;
    this.waiter = undefined;
    if (w) w.resolve(line);
    else this.lines.push(line);
  }

  next(): Promise<string> {
    const line = this.lines.shift();
    if (line !== undefined) return Promise.resolve(line);
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  fail(err: Error): void {
    this.failed ??= err;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(err);
  }

  drain(): string[] {
    return this.lines.splice(0);
  }
}

/** Splits a byte stream into lines (QMP ends lines with CRLF). */
class LineReader {
  private rest = '';
  push(chunk: Buffer): string[] {
    const text = this.rest + chunk.toString('utf8');
    const parts = text.split('\n');
    this.rest = parts.pop() ?? '';
    return parts.map((l) => l.replace(/\r$/, '')).filter((l) => l.trim() !== '');
  }
}
