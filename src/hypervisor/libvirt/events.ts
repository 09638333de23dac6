// libvirt's domain events, as `virsh event --all --loop --timestamp` prints them (libvirt 9.0):
//
//   2026-12-07 13:00:09.074+0000: event 'lifecycle' for domain 'lvx': Suspended Migrated
//   2026-12-07 13:00:11.318+0000: event 'job-completed' for domain 'lvx':
//   	time_elapsed: 1159
//   	downtime: 90
//
// One long-running virsh per libvirtd (`VirshEvents`), through the ProcessSpawner seam; the timestamp is
// virsh's own clock when the event reached it, so two streams run by one host compare directly (the
// source's "Suspended Migrated" and the destination's "Resumed Migrated" give the guest's pause).
import type { Logger } from '../../log.ts';
import type { ProcessSpawner, SpawnedProcess } from '../../system/process.ts';

export interface DomainEvent {
  /** Epoch ms, from virsh's timestamp. */
  at: number;
  /** `lifecycle`, `job-completed`, `migration-iteration`, … */
  type: string;
  domain: string;
  /** What follows the colon on the first line (`Suspended Migrated`, `iteration: '2'`); '' when nothing. */
  detail: string;
  /** The tab-indented `key: value` lines that follow (job-completed's statistics), values as printed. */
  params: Record<string, string>;
}

const HEAD =
  /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d\.\d{3})([+-]\d\d)(\d\d): event '([^']+)' for domain '(.*)':(?: (.*))?$/;
const PARAM = /^\t([^:]+): (.*)$/;

/**
 * Reads virsh's event output line by line: `push(line)` returns the events a line completes.
 * An event with parameters (job-completed) is complete when a line that is not one of its parameters
 * comes, or on `flush()`: virsh prints all of one event's lines at once, so the stream flushes a
 * pending event after a short quiet time. A line that is not an event (none are known) is dropped.
 */
export class EventLineParser {
  private pending: DomainEvent | undefined;

  push(line: string): DomainEvent[] {
    const param = PARAM.exec(line);
    if (param && this.pending) {
      this.pending.params[param[1]!] = param[2]!;
      return [];
    }
    const out: DomainEvent[] = [];
    const held = this.flush();
    if (held) out.push(held);
    const m = HEAD.exec(line);
    if (m) {
      const at = Date.parse(`${m[1]}T${m[2]}${m[3]}:${m[4]}`);
      const e: DomainEvent = { at, type: m[5]!, domain: m[6]!, detail: m[7] ?? '', params: {} };
      // A detail on the first line means the event is whole (lifecycle: handed on at once); a bare
      // colon means its parameters follow on the next lines.
      if (e.detail !== '') out.push(e);
      else this.pending = e;
    }
    return out;
  }

  flush(): DomainEvent | undefined {
    const e = this.pending;
    this.pending = undefined;
    return e;
  }

  get holding(): boolean {
    return this.pending !== undefined;
  }
}

export interface EventWaiter {
  /** Settles with the first matching event after the waiter was made; rejects when closed or timed out. */
  readonly event: Promise<DomainEvent>;
  close(): void;
}

export interface VirshEventsOptions {
  uri: string;
  spawner: ProcessSpawner;
  virsh?: string;
  logger?: Logger;
  /** Wait before restarting a virsh that exited (default 1000 ms). */
  restartMs?: number;
}

/**
 * One `virsh event --loop` on one libvirtd, restarted when it exits (libvirtd restarted or not up yet).
 * `stdbuf -oL` makes virsh's stdout line-buffered into the pipe; without it events arrive in 4 KiB lumps.
 */
export class VirshEvents {
  private proc: SpawnedProcess | undefined;
  private closed = false;
  private readonly parser = new EventLineParser();
  private flushTimer: NodeJS.Timeout | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private readonly listeners = new Set<(e: DomainEvent) => void>();

  constructor(private readonly options: VirshEventsOptions) {}

  get argv(): string[] {
    const virsh = this.options.virsh ?? 'virsh';
    return ['stdbuf', '-oL', virsh, '-q', '-c', this.options.uri, 'event', '--all', '--loop', '--timestamp'];
  }

  start(): void {
    if (this.proc || this.closed) return;
    const proc = this.options.spawner.spawn(this.argv, {
      onStdoutLine: (line) => this.line(line),
      onStderrLine: (line) => this.options.logger?.debug({ uri: this.options.uri, line }, 'virsh event'),
    });
    this.proc = proc;
    void proc.exited.then((exit) => {
      if (this.proc !== proc) return;
      this.proc = undefined;
      if (this.closed) return;
      this.options.logger?.warn({ uri: this.options.uri, exit }, 'virsh event exited; restarting');
      this.restartTimer = setTimeout(() => this.start(), this.options.restartMs ?? 1000);
      this.restartTimer.unref?.();
    });
  }

  /** Calls `fn` with every event until the returned function is called. */
  onEvent(fn: (e: DomainEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Make the waiter before the action that causes the event, so it cannot be missed. */
  next(match: (e: DomainEvent) => boolean): EventWaiter {
    let off = () => {};
    let rejectWaiter: (err: Error) => void = () => {};
    const event = new Promise<DomainEvent>((resolve, reject) => {
      rejectWaiter = reject;
      off = this.onEvent((e) => {
        if (!match(e)) return;
        off();
        resolve(e);
      });
    });
    event.catch(() => {});
    return {
      event,
      close: () => {
        off();
        rejectWaiter(new Error('event waiter closed'));
      },
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.restartTimer);
    clearTimeout(this.flushTimer);
    const proc = this.proc;
    this.proc = undefined;
    if (proc) {
      proc.kill();
      await proc.exited;
    }
    this.listeners.clear();
  }

  private line(line: string): void {
    clearTimeout(this.flushTimer);
    for (const e of this.parser.push(line)) this.emit(e);
    // A lone event is complete only when the next one starts: flush it once virsh has been quiet.
    if (this.parser.holding) {
      this.flushTimer = setTimeout(() => {
        const e = this.parser.flush();
        if (e) this.emit(e);
      }, 20);
      this.flushTimer.unref?.();
    }
  }

  private emit(e: DomainEvent): void {
    for (const fn of [...this.listeners]) fn(e);
  }
}

/** Lifecycle details that mean "the guest stopped on the source for the switchover". */
export const SUSPENDED_FOR_MIGRATION = new Set(['Suspended Migrated', 'Suspended Post-copy']);
/** Lifecycle details that mean "the guest runs on the destination". */
export const RESUMED_AFTER_MIGRATION = new Set(['Resumed Migrated', 'Resumed Post-copy']);
