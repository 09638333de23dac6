// Structured logs (STYLE 9): one JSON object a line on stderr, with binding / network / migration ids as
// fields (`log.child({ hoa })`). Level from OFFLINK_LOG_LEVEL (default info); `silent` in unit tests.
//
// What goes at which level: a line per Binding Update (refreshes, BUs sent) at debug; state changes (a new
// binding, a CoA change, deregistration, expiry, a mobile router registered or handed over) at info;
// warnings an outsider can repeat at will (bad packets, failed authentication, refused requests) through
// a LogLimiter, so a flood costs a few lines a second and a count.
//
// The destination is asynchronous: a line is queued and written by libuv's thread pool, so a slow
// journal or a full pipe never stalls the event loop (a synchronous write blocks until the reader takes
// it). What is queued is written synchronously when the process exits (pino registers that for an
// asynchronous destination), also after an uncaught exception; a daemon that stops awaits flushLogger().
// Only SIGKILL loses the lines still queued.
import { pino } from 'pino';
import { TokenBucket } from './ratelimit.ts';

export type Logger = pino.Logger;

export function createLogger(
  name: string,
  options: { level?: string; destination?: number; sync?: boolean } = {},
): Logger {
  const level = options.level ?? process.env['OFFLINK_LOG_LEVEL'] ?? 'info';
  return pino(
    { name, level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ dest: options.destination ?? 2, sync: options.sync ?? false }),
  );
}

/** The parts of pino's asynchronous destination (sonic-boom) flushLogger needs. */
interface AsyncDestination {
  /** A write is in flight in the thread pool (more may be queued behind it). */
  _writing?: boolean;
  once(event: 'drain', listener: () => void): unknown;
}

/**
 * Resolves once every line logged so far has been written (the daemons' last step before exiting), or
 * after `timeoutMs` if the reader does not take them (the exit handler then writes the rest).
 */
export async function flushLogger(logger: Logger, timeoutMs = 2000): Promise<void> {
  const stream = (logger as unknown as Record<symbol, AsyncDestination | undefined>)[pino.symbols.streamSym];
  // sonic-boom's own flush(cb) answers at once when lines are written as they come (minLength 0); its
  // 'drain' comes when the last queued write is done.
  if (!stream?._writing) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    stream.once('drain', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** A logger that writes nothing, for unit tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

type Level = 'debug' | 'info' | 'warn' | 'error';

/**
 * At most `lines` lines every `intervalMs` per kind (a token bucket: a burst of `lines`, then one every
 * intervalMs / lines). The first line a kind writes after some were dropped carries `suppressed`, how
 * many. Kinds are a fixed set chosen by the code (a BA status, a refusal reason), never a value from
 * the packet, so the table stays small however an attacker varies its packets.
 */
export class LogLimiter {
  private readonly kinds = new Map<string, { bucket: TokenBucket; suppressed: number }>();

  constructor(
    private readonly log: Logger,
    private readonly clock: { now(): number },
    private readonly options: { lines: number; intervalMs: number } = { lines: 20, intervalMs: 1000 },
  ) {}

  /** Log `msg` at `level` unless `kind` is over its budget; returns whether it was written. */
  write(level: Level, kind: string, fields: Record<string, unknown>, msg: string): boolean {
    let entry = this.kinds.get(kind);
    if (!entry) {
      entry = { bucket: new TokenBucket(this.options.lines, this.options.intervalMs), suppressed: 0 };
      this.kinds.set(kind, entry);
    }
    if (!entry.bucket.take(this.clock.now())) {
      entry.suppressed++;
      return false;
    }
    const suppressed = entry.suppressed;
    entry.suppressed = 0;
    this.log[level](suppressed > 0 ? { ...fields, suppressed } : fields, msg);
    return true;
  }

  warn(kind: string, fields: Record<string, unknown>, msg: string): boolean {
    return this.write('warn', kind, fields, msg);
  }
}
