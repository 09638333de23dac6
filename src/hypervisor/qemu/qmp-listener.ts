// Scoped event listeners of the QMP client (qmp.ts).
import { QmpStateError } from './qmp-errors.ts';

export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  /** QEMU's timestamp of the event, wall-clock milliseconds since the epoch (microsecond resolution). */
  timestamp: number;
}

/**
 * Events for one consumer, buffered from the moment the listener is made. `next` takes the first buffered
 * (or future) event that matches; a disconnect rejects it. Close it when done (or use `using`-style
 * try/finally) so it stops buffering.
 */
export class QmpEventListener {
  private readonly buffer: QmpEvent[] = [];
  private waiter:
    | { match: (e: QmpEvent) => boolean; resolve(e: QmpEvent): void; reject(err: Error): void }
    | undefined;
  private ended: Error | undefined;

  constructor(
    private readonly names: ReadonlySet<string> | undefined,
    private readonly detach: (l: QmpEventListener) => void,
  ) {}

  /** @internal the client delivers an event. */
  deliver(e: QmpEvent): void {
    if (this.names && !this.names.has(e.event)) return;
    if (this.waiter?.match(e)) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve(e);
      return;
    }
    this.buffer.push(e);
  }

  /** @internal the connection ended. */
  end(err: Error): void {
    this.ended ??= err;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(err);
  }

  /** The next event (buffered or future) that satisfies `predicate`; earlier non-matching ones are dropped. */
  next(predicate: (e: QmpEvent) => boolean = () => true, signal?: AbortSignal): Promise<QmpEvent> {
    if (this.waiter) return Promise.reject(new QmpStateError('QMP listener: next() is already waiting'));
    while (this.buffer.length > 0) {
      const e = this.buffer.shift()!;
      if (predicate(e)) return Promise.resolve(e);
    }
    if (this.ended) return Promise.reject(this.ended);
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<QmpEvent>((resolve, reject) => {
      const onAbort = () => {
        this.waiter = undefined;
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiter = {
        match: predicate,
        resolve: (e) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(e);
        },
        reject: (err) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
    });
  }

  /** Events buffered and not yet taken. */
  get pending(): readonly QmpEvent[] {
    return this.buffer;
  }

  close(): void {
    this.detach(this);
    this.end(new QmpStateError('QMP listener closed'));
  }
}
