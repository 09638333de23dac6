// What the migration procedure needs of a mobile router and of a network: narrow views of
// src/mobilerouter's MobileRouter and of the agent's network config, so the procedure is tested with fakes.
import type { GuestNetwork } from '../hypervisor/driver.ts';
import type { MobileRouter } from '../mobilerouter/mobilerouter.ts';

/** The operations of a mobile router that a migration uses (docs/agent.md). */
export type RouterControl = Pick<
  MobileRouter,
  'prepare' | 'activate' | 'prepareHandover' | 'forwardTo' | 'standby' | 'deregister' | 'status'
>;

/** One mobile network on this host, as a migration sees it. */
export interface MigratingNetwork extends GuestNetwork {
  homeAddress: string;
  prefixes: readonly string[];
}
