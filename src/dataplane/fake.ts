// In-memory data planes for unit tests of the home agent and the mobile router: they hold the state a
// kernel would, record every call, and can be told to fail the next call (to test "forwarding setup
// failed", BA status 143, and the mobile router's recovery).
import { OfflinkError } from '../errors.ts';
import type {
  BindingChange,
  HomeAgentDataplane,
  MobileRouterDataplane,
  MobileRouterRoutes,
  TunnelBinding,
} from './types.ts';

export interface FakeCall {
  method: string;
  args: unknown[];
}

class Failures {
  private readonly queue: { method: string | undefined; error: Error }[] = [];

  add(method: string | undefined, error: Error | undefined): void {
    this.queue.push({
      method,
      error: error ?? new OfflinkError('ERR_COMMAND', `injected failure of ${method ?? 'next call'}`),
    });
  }

  /** Throws the first queued failure that applies to `method`. */
  check(method: string): void {
    const i = this.queue.findIndex((f) => f.method === undefined || f.method === method);
    if (i >= 0) throw this.queue.splice(i, 1)[0]!.error;
  }
}

export type HomeAgentMethod = 'init' | 'reconcile' | 'update' | 'flush';

export class FakeHomeAgentDataplane implements HomeAgentDataplane {
  /** Installed bindings by home address. */
  readonly bindings = new Map<string, TunnelBinding>();
  readonly calls: FakeCall[] = [];
  initialized = false;
  private readonly failures = new Failures();

  /** Make the next call (of `method`, or of any method) throw `error` without changing state. */
  failNext(method?: HomeAgentMethod, error?: Error): void {
    this.failures.add(method, error);
  }

  /** Destination (MNP or HoA/128) → CoA, as the routes would be. */
  routes(): Map<string, string> {
    const out = new Map<string, string>();
    for (const b of this.bindings.values()) {
      for (const p of b.prefixes) out.set(p, b.coa);
      out.set(`${b.hoa}/128`, b.coa);
    }
    return out;
  }

  async init(): Promise<void> {
    this.begin('init', []);
    this.initialized = true;
  }

  async reconcile(bindings: readonly TunnelBinding[]): Promise<void> {
    this.begin('reconcile', [bindings]);
    this.bindings.clear();
    for (const b of bindings) this.bindings.set(b.hoa, b);
  }

  async update(changes: readonly BindingChange[]): Promise<void> {
    this.begin('update', [changes]);
    for (const change of changes) {
      if (change.op === 'set') this.bindings.set(change.binding.hoa, change.binding);
      else this.bindings.delete(change.binding.hoa);
    }
  }

  async flush(): Promise<void> {
    this.begin('flush', []);
    this.bindings.clear();
    this.initialized = false;
  }

  private begin(method: HomeAgentMethod, args: unknown[]): void {
    this.calls.push({ method, args });
    this.failures.check(method);
  }
}

export type MobileRouterMethod = 'initHost' | 'activate' | 'deactivate' | 'flushHost';

export class FakeMobileRouterDataplane implements MobileRouterDataplane {
  host: { coa: string; haAddress: string; uplink: string; table: number } | undefined;
  /** Active networks by name. */
  readonly active = new Map<string, MobileRouterRoutes>();
  readonly calls: FakeCall[] = [];
  private readonly failures = new Failures();

  failNext(method?: MobileRouterMethod, error?: Error): void {
    this.failures.add(method, error);
  }

  async initHost(options: { coa: string; haAddress: string; uplink: string; table: number }): Promise<void> {
    this.begin('initHost', [options]);
    this.host = { ...options };
  }

  async activate(routes: MobileRouterRoutes): Promise<void> {
    this.begin('activate', [routes]);
    this.active.set(routes.network, routes);
  }

  async deactivate(routes: MobileRouterRoutes): Promise<void> {
    this.begin('deactivate', [routes]);
    this.active.delete(routes.network);
  }

  async flushHost(): Promise<void> {
    this.begin('flushHost', []);
    this.active.clear();
    this.host = undefined;
  }

  private begin(method: MobileRouterMethod, args: unknown[]): void {
    this.calls.push({ method, args });
    this.failures.check(method);
  }
}
