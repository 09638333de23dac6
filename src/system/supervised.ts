// A child process that should run while something is active (radvd, dnsmasq on a guest link): started
// with `run`, restarted after a delay when it dies while still wanted, stopped with SIGTERM (SIGKILL if it
// does not exit in time). `run` and `stop` are idempotent.
import type { Clock, TimerHandle } from '../clock.ts';
import type { Logger } from '../log.ts';
import type { ProcessSpawner, SpawnedProcess } from './process.ts';

/** How long to wait before restarting a child that died while it should run. */
const RESTART_DELAY_MS = 1000;
/** How long a child gets to exit after SIGTERM. */
const STOP_TIMEOUT_MS = 2000;

export class SupervisedChild {
  private child: SpawnedProcess | undefined;
  private wanted = false;
  private restartTimer: TimerHandle | undefined;

  constructor(
    private readonly components: { spawner: ProcessSpawner; clock: Clock; logger: Logger },
    /** The program's name in log lines (`radvd`). */
    private readonly name: string,
  ) {}

  get running(): boolean {
    return this.child !== undefined;
  }

  /** Whether `run` was called since the last `stop` (set before any await of the caller's). */
  get wantedNow(): boolean {
    return this.wanted;
  }

  /** Mark the child wanted; the caller prepares its files, then calls `run`. */
  want(): void {
    this.wanted = true;
  }

  /** Spawn `argv` unless it runs already or is no longer wanted. */
  run(argv: readonly string[]): void {
    if (!this.wanted || this.child) return;
    const log = this.components.logger;
    const child = this.components.spawner.spawn(argv, {
      onStderrLine: (line) => log.debug({ [this.name]: line }, this.name),
    });
    this.child = child;
    log.debug({ pid: child.pid, argv }, `${this.name} started`);
    void child.exited.then((exit) => {
      if (this.child !== child) return;
      this.child = undefined;
      if (!this.wanted) return;
      log.error({ ...exit }, `${this.name} exited while the network is active; restarting`);
      this.restartTimer = this.components.clock.setTimer(RESTART_DELAY_MS, () => {
        this.restartTimer = undefined;
        this.run(argv);
      });
    });
  }

  /** Stop the child (SIGTERM, then SIGKILL after STOP_TIMEOUT_MS) and cancel any pending restart. */
  async stop(): Promise<void> {
    this.wanted = false;
    this.restartTimer?.cancel();
    this.restartTimer = undefined;
    const child = this.child;
    this.child = undefined;
    if (!child) return;
    child.kill('SIGTERM');
    const timer = this.components.clock.setTimer(STOP_TIMEOUT_MS, () => child.kill('SIGKILL'));
    await child.exited;
    timer.cancel();
  }
}
