// What the mobile router's host-side parts (CoA tracking, the guest link) are given: the kernel's links,
// a spawner for long-running processes (radvd; src/system/process.ts), a clock and a logger.
import type { Clock } from '../clock.ts';
import type { LinkKernel } from '../dataplane/kernel.ts';
import type { Logger } from '../log.ts';
import type { ProcessSpawner } from '../system/process.ts';

/** What the parts that work on the host (CoA tracking, the guest link) need: its links, its processes. */
export interface HostComponents {
  kernel: LinkKernel;
  /** radvd. */
  spawner: ProcessSpawner;
  clock: Clock;
  logger: Logger;
}
