// Care-of address tracking (RFC 6275 §11.5 movement detection, reduced to what a host needs): the CoA is
// the uplink's global IPv6 address that is neither tentative nor deprecated. It is read from the kernel
// and re-read whenever the kernel announces an address change (`ip -6 monitor address`), plus a slow
// poll, in case the watch dies unnoticed.
// One tracker per host serves every mobile network on it.
import type { Clock, TimerHandle } from '../clock.ts';
import type { InterfaceAddress, LinkKernel, Watch } from '../dataplane/kernel.ts';
import type { Logger } from '../log.ts';

/** What a mobile router needs to know about its care-of address. */
export interface CoaSource {
  /** The current care-of address, undefined while the uplink has none. */
  readonly coa: string | undefined;
  /** Called with the new value after every change; returns an unsubscribe function. */
  onChange(listener: (coa: string | undefined) => void): () => void;
}

/** Usable CoA candidates, oldest first (the most stable choice): global, settled, not temporary. */
export function usableAddresses(addresses: readonly InterfaceAddress[]): string[] {
  // privacy (temporary) addresses are not ours to register
  return addresses.filter((a) => a.scope === 'global' && a.flags.length === 0).map((a) => a.address);
}

/** Keep the current CoA while it stays usable (no needless re-registration), else take the oldest. */
export function selectCoa(candidates: readonly string[], current: string | undefined): string | undefined {
  if (current !== undefined && candidates.includes(current)) return current;
  return candidates[0];
}

export interface CoaTrackerOptions {
  uplink: string;
  /** Re-read this often even without monitor events; 0 disables. Default 5000 ms. */
  pollMs?: number;
  /** Monitor events come in bursts (add + route + flags): read once after this quiet time. Default 20 ms. */
  debounceMs?: number;
}

export class CoaTracker implements CoaSource {
  private current: string | undefined;
  private readonly listeners = new Set<(coa: string | undefined) => void>();
  private monitor: Watch | undefined;
  private pollTimer: TimerHandle | undefined;
  private debounceTimer: TimerHandle | undefined;
  private running = false;
  private reading: Promise<void> | undefined;
  private readAgain = false;

  constructor(
    private readonly components: { kernel: LinkKernel; clock: Clock; logger: Logger },
    private readonly options: CoaTrackerOptions,
  ) {}

  get coa(): string | undefined {
    return this.current;
  }

  onChange(listener: (coa: string | undefined) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Read the address once and start watching. */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    this.startMonitor();
    await this.refresh();
    this.schedulePoll();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.pollTimer?.cancel();
    this.debounceTimer?.cancel();
    const m = this.monitor;
    this.monitor = undefined;
    if (m) {
      m.stop();
      await m.exited;
    }
    await this.reading;
  }

  /** Re-read the uplink's addresses now; concurrent calls coalesce into one more read. */
  refresh(): Promise<void> {
    if (this.reading) {
      this.readAgain = true;
      return this.reading;
    }
    this.reading = (async () => {
      try {
        do {
          this.readAgain = false;
          await this.readOnce();
        } while (this.readAgain);
      } finally {
        this.reading = undefined;
      }
    })();
    return this.reading;
  }

  /** Resolves with the CoA as soon as there is one. */
  waitForCoa(signal?: AbortSignal): Promise<string> {
    if (this.current !== undefined) return Promise.resolve(this.current);
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        off();
        reject(signal?.reason ?? new Error('aborted'));
      };
      const off = this.onChange((coa) => {
        if (coa === undefined) return;
        off();
        signal?.removeEventListener('abort', onAbort);
        resolve(coa);
      });
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private async readOnce(): Promise<void> {
    const { uplink } = this.options;
    // A missing uplink is "no address yet", not an error: registration waits for it.
    const candidates = usableAddresses(await this.components.kernel.addresses(uplink, 'global'));
    const next = selectCoa(candidates, this.current);
    if (next === this.current) return;
    const previous = this.current;
    this.current = next;
    this.components.logger.info(
      { uplink, coa: next ?? null, previous: previous ?? null },
      'care-of address changed',
    );
    for (const l of [...this.listeners]) l(next);
  }

  private startMonitor(): void {
    const child = this.components.kernel.watchAddresses(() => this.kick());
    if (!child) return;
    this.monitor = child;
    void child.exited.then(() => {
      if (this.monitor !== child) return;
      this.monitor = undefined;
      if (!this.running) return;
      this.components.logger.warn('address watch ended; restarting it');
      this.components.clock.setTimer(1000, () => {
        if (this.running && !this.monitor) {
          this.startMonitor();
          this.kick();
        }
      });
    });
  }

  private kick(): void {
    if (!this.running || this.debounceTimer) return;
    this.debounceTimer = this.components.clock.setTimer(this.options.debounceMs ?? 20, () => {
      this.debounceTimer = undefined;
      void this.refresh().catch((err) =>
        this.components.logger.warn({ err }, 'reading the care-of address failed'),
      );
    });
  }

  private schedulePoll(): void {
    const ms = this.options.pollMs ?? 5000;
    if (ms <= 0 || !this.running) return;
    this.pollTimer = this.components.clock.setTimer(ms, () => {
      void this.refresh()
        .catch((err) => this.components.logger.warn({ err }, 'reading the care-of address failed'))
        .finally(() => this.schedulePoll());
    });
  }
}

/** A CoaSource set by hand, for tests and for callers that learn the CoA some other way. */
export class StaticCoaSource implements CoaSource {
  private readonly listeners = new Set<(coa: string | undefined) => void>();
  constructor(private value: string | undefined) {}
  get coa(): string | undefined {
    return this.value;
  }
  set(coa: string | undefined): void {
    if (coa === this.value) return;
    this.value = coa;
    for (const l of [...this.listeners]) l(coa);
  }
  onChange(listener: (coa: string | undefined) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
