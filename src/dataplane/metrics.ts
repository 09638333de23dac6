// The data plane's packet counters (tunnelled, dropped by reason) as a Prometheus counter, for the home
// agent's and the host agent's /metrics. The kernel's counters start at zero when the programs are
// loaded; the exported counter only ever grows (a reset adds what was counted since).
import { Counter, type Registry } from 'prom-client';

export interface CountingDataplane {
  readonly backend?: string;
  packetCounters?(): Promise<Record<string, number>>;
}

export function registerDataplaneMetrics(registry: Registry, prefix: string, dp: CountingDataplane): void {
  if (!dp.packetCounters) return;
  const last = new Map<string, number>();
  const backend = dp.backend ?? 'unknown';
  new Counter({
    name: `${prefix}_dataplane_packets_total`,
    help: 'Packets the data plane counted since its programs were loaded, by counter: tunnelled (encapOk, decapOk, forwardOk), dropped by reason (encapNoBinding, decapNoBinding, decapWrongSource, …)',
    labelNames: ['backend', 'counter'],
    registers: [registry],
    async collect() {
      let now: Record<string, number>;
      try {
        now = await dp.packetCounters!();
      } catch {
        return; // not set up yet (a host with no active network)
      }
      for (const [counter, value] of Object.entries(now)) {
        const before = last.get(counter) ?? 0;
        this.inc({ backend, counter }, value >= before ? value - before : value);
        last.set(counter, value);
      }
    },
  });
}
