// Long-running child processes (radvd, `ip monitor`): the seam lives in the data plane layer (which runs
// `bridge monitor` itself); re-exported here for the mobile router's parts.
import type { Clock } from '../clock.ts';
import type { ProcessSpawner } from '../dataplane/process.ts';
import type { CommandRunner } from '../dataplane/types.ts';
import type { Logger } from '../log.ts';

export {
  nodeSpawner,
  type ProcessExit,
  type ProcessSpawner,
  type SpawnedProcess,
  type SpawnOptions,
} from '../dataplane/process.ts';

/** What a part that runs commands and long-running processes on the host (CoA tracking, guest link) needs. */
export interface HostComponents {
  runner: CommandRunner;
  spawner: ProcessSpawner;
  clock: Clock;
  logger: Logger;
}
