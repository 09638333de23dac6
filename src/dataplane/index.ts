// The data plane (DESIGN §4): backends, runners, fakes, and the factories the daemons use.
import { OfflinkError } from '../errors.ts';
import type { DataplaneComponents, TunnelHomeAgentDataplane } from './ha.ts';
import { Ip6tnlHomeAgentDataplane, Ip6tnlMobileRouterDataplane } from './ip6tnl.ts';
import type { MobileRouterDataplaneOptions, TunnelMobileRouterDataplane } from './mr.ts';
import { Seg6HomeAgentDataplane, Seg6MobileRouterDataplane } from './seg6.ts';
import type { HomeAgentDataplaneOptions } from './types.ts';

export * from './addr.ts';
export * from './fake.ts';
export { BindingConflictError, type DataplaneComponents, TunnelHomeAgentDataplane } from './ha.ts';
export * from './ip6tnl.ts';
export { RT_PROTO } from './kernel.ts';
export {
  type MobileRouterDataplaneOptions,
  type MobileRouterHost,
  TunnelMobileRouterDataplane,
} from './mr.ts';
export { COUNTER, HA_TABLE, MR_TABLE } from './nft.ts';
export * from './runner.ts';
export * from './seg6.ts';
export type * from './types.ts';

export type DataplaneBackend = 'seg6' | 'ip6tnl';

export function createHomeAgentDataplane(
  backend: DataplaneBackend,
  components: DataplaneComponents,
  options: HomeAgentDataplaneOptions,
): TunnelHomeAgentDataplane {
  if (backend === 'seg6') return new Seg6HomeAgentDataplane(components, options);
  if (backend === 'ip6tnl') return new Ip6tnlHomeAgentDataplane(components, options);
  throw new OfflinkError('ERR_CONFIG', `unknown data plane backend ${JSON.stringify(backend)}`);
}

export function createMobileRouterDataplane(
  backend: DataplaneBackend,
  components: DataplaneComponents,
  options: MobileRouterDataplaneOptions = {},
): TunnelMobileRouterDataplane {
  if (backend === 'seg6') return new Seg6MobileRouterDataplane(components, options);
  if (backend === 'ip6tnl') return new Ip6tnlMobileRouterDataplane(components, options);
  throw new OfflinkError('ERR_CONFIG', `unknown data plane backend ${JSON.stringify(backend)}`);
}
