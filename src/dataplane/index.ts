// The data plane (docs/dataplane.md): backends, runners, fakes, and the factories the daemons use.

import type { Clock } from '../clock.ts';
import { OfflinkError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { ProcessSpawner } from '../system/process.ts';
import type { CommandRunner } from '../system/runner.ts';
import { BpfHomeAgentDataplane } from './bpf/ha.ts';
import { BpfMobileRouterDataplane } from './bpf/mr.ts';
import { Iproute2Kernel } from './iproute2.ts';
import type { NetKernel } from './kernel.ts';
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
export { Iproute2Kernel } from './iproute2.ts';
export { type NetKernel, RT_PROTO } from './kernel.ts';
export {
  type MobileRouterDataplaneOptions,
  type MobileRouterHost,
  TunnelMobileRouterDataplane,
} from './mr.ts';
export { COUNTER, HA_TABLE, MR_TABLE } from './nft.ts';
export * from './probe.ts';
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

/** What the daemons build a data plane from: the host's commands (or a kernel), a logger, a clock. */
export interface HostComponents {
  runner: CommandRunner;
  /** Long-running processes (the bpf mobile router's `bridge monitor fdb`); without: polling. */
  spawner?: ProcessSpawner;
  logger?: Logger;
  clock?: Clock;
}

function kernelOf(components: HostComponents): { kernel: NetKernel; logger?: Logger; clock?: Clock } {
  const kernel = new Iproute2Kernel({
    runner: components.runner,
    ...(components.spawner ? { spawner: components.spawner } : {}),
  });
  return {
    kernel,
    ...(components.logger ? { logger: components.logger } : {}),
    ...(components.clock ? { clock: components.clock } : {}),
  };
}

export function createHomeAgentDataplane(
  backend: Backend,
  components: HostComponents,
  options: HomeAgentDataplaneOptions,
): HomeAgentBackend {
  if (backend === 'bpf') return new BpfHomeAgentDataplane(kernelOf(components), options);
  if (backend === 'seg6') return new Seg6HomeAgentDataplane(kernelOf(components), options);
  throw new OfflinkError('ERR_CONFIG', `unknown data plane backend ${JSON.stringify(backend)}`);
}

export function createMobileRouterDataplane(
  backend: Backend,
  components: HostComponents,
  options: MobileRouterDataplaneOptions = {},
): MobileRouterBackend {
  if (backend === 'bpf') return new BpfMobileRouterDataplane(kernelOf(components), options);
  if (backend === 'seg6') return new Seg6MobileRouterDataplane(kernelOf(components), options);
  throw new OfflinkError('ERR_CONFIG', `unknown data plane backend ${JSON.stringify(backend)}`);
}
