// The data plane (docs/dataplane.md): backends, runners, fakes, and the factories the daemons use.
import { OfflinkError } from '../errors.ts';
import { BpfHomeAgentDataplane } from './bpf/ha.ts';
import { BpfMobileRouterDataplane } from './bpf/mr.ts';
import type { DataplaneComponents } from './ha.ts';
import type { MobileRouterDataplaneOptions } from './mr.ts';
import type { Backend } from './probe.ts';
import { Seg6HomeAgentDataplane, Seg6MobileRouterDataplane } from './seg6.ts';
import type { HomeAgentDataplane, HomeAgentDataplaneOptions, MobileRouterDataplane } from './types.ts';

export { BindingConflictError } from './bindings.ts';
export { BpfHomeAgentDataplane } from './bpf/ha.ts';
export { BpfMobileRouterDataplane } from './bpf/mr.ts';
export * from './fake.ts';
export { type DataplaneComponents, TunnelHomeAgentDataplane } from './ha.ts';
export { checkInterfaceName } from './ifname.ts';
export { RT_PROTO } from './kernel.ts';
export {
  type MobileRouterDataplaneOptions,
  type MobileRouterHost,
  TunnelMobileRouterDataplane,
} from './mr.ts';
export { COUNTER, HA_TABLE, MR_TABLE } from './nft.ts';
export * from './probe.ts';
export * from './runner.ts';
export * from './seg6.ts';
export type * from './types.ts';

/** A home agent data plane with flush() (every backend has one). */
export type HomeAgentBackend = HomeAgentDataplane & { readonly backend: Backend };
/** A mobile router data plane as every backend implements it (with handover forwarding and flushHost). */
export type MobileRouterBackend = MobileRouterDataplane &
  Required<Pick<MobileRouterDataplane, 'forward' | 'acceptTunnelFrom'>> & {
    readonly backend: Backend;
    flushHost(): Promise<void>;
  };

export function createHomeAgentDataplane(
  backend: Backend,
  components: DataplaneComponents,
  options: HomeAgentDataplaneOptions,
): HomeAgentBackend {
  if (backend === 'bpf') return new BpfHomeAgentDataplane(components, options);
  if (backend === 'seg6') return new Seg6HomeAgentDataplane(components, options);
  throw new OfflinkError('ERR_CONFIG', `unknown data plane backend ${JSON.stringify(backend)}`);
}

export function createMobileRouterDataplane(
  backend: Backend,
  components: DataplaneComponents,
  options: MobileRouterDataplaneOptions = {},
): MobileRouterBackend {
  if (backend === 'bpf') return new BpfMobileRouterDataplane(components, options);
  if (backend === 'seg6') return new Seg6MobileRouterDataplane(components, options);
  throw new OfflinkError('ERR_CONFIG', `unknown data plane backend ${JSON.stringify(backend)}`);
}
