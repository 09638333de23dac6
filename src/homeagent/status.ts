// The binding cache as GET /status shows it (and `offlink status --ha` prints): plain JSON, times as ISO text.
import type { Binding } from './bcache.ts';
import type { PrefixTable } from './prefixtable.ts';

export interface BindingStatus {
  hoa: string;
  mobileRouter: string | undefined;
  coa: string;
  prefixes: readonly string[];
  sequence: number;
  lifetimeSeconds: number;
  remainingSeconds: number;
  mode: string;
  id: number;
  registeredAt: string;
  updatedAt: string;
  expiresAt: string;
  /** In a cluster: the HA that accepted the binding's last BU. */
  servedBy?: string | undefined;
}

/** In a cluster (store: etcd): this HA and the members etcd lists (cluster.ts). */
export interface ClusterStatus {
  /** This HA's name. */
  name: string;
  etcd: 'reachable' | 'unreachable';
  expiryOwner: boolean;
  members: readonly {
    name: string;
    serving: boolean;
    expiryOwner: boolean;
    since: number;
    [f: string]: unknown;
  }[];
}

export interface HomeAgentStatus {
  haAddress: string;
  /** The data plane backend in use (bpf, seg6). */
  dataplane?: string;
  now: string;
  cluster?: ClusterStatus;
  bindings: BindingStatus[];
}

export function bindingCacheStatus(
  bindings: readonly Binding[],
  table: PrefixTable,
  haAddress: string,
  now: number,
  servedBy?: (hoa: string) => string | undefined,
): HomeAgentStatus {
  const iso = (ms: number) => new Date(ms).toISOString();
  return {
    haAddress,
    now: iso(now),
    bindings: [...bindings]
      .sort((a, b) => a.id - b.id)
      .map((b) => ({
        hoa: b.hoa,
        mobileRouter: table.byHomeAddress(b.hoa)?.name,
        coa: b.coa,
        prefixes: b.prefixes,
        sequence: b.sequence,
        lifetimeSeconds: b.lifetimeSeconds,
        remainingSeconds: Math.max(0, Math.round((b.expiresAt - now) / 1000)),
        mode: b.mode,
        id: b.id,
        registeredAt: iso(b.registeredAt),
        updatedAt: iso(b.updatedAt),
        expiresAt: iso(b.expiresAt),
        ...(servedBy ? { servedBy: servedBy(b.hoa) } : {}),
      })),
  };
}
