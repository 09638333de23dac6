// Long-running child processes (radvd, `ip monitor`): the seam lives in the data plane layer (which runs
// `bridge monitor` itself); re-exported here for the mobile router's parts.
import type { Clock } from '../clock.ts';
import type { LinkKernel } from '../dataplane/kernel.ts';
import type { Logger } from '../log.ts';
import type { ProcessSpawner } from '../system/process.ts';

export {
  nodeSpawner,
  type ProcessExit,
  type ProcessSpawner,
  type SpawnedProcess,
  type SpawnOptions,
} from '../system/process.ts';

/** What the parts that work on the host (CoA tracking, the guest link) need: its links, its processes. */
export interface HostComponents {
  kernel: LinkKernel;
  /** radvd. */
  spawner: ProcessSpawner;
  clock: Clock;
  logger: Logger;
}
