// Router advertisements for a guest link through radvd (docs/dataplane.md): the MR writes radvd's config for the
// bridge and runs `radvd -n` as a child only while the network is active on this host.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Clock, TimerHandle } from '../clock.ts';
import type { Logger } from '../log.ts';
import type { ProcessSpawner, SpawnedProcess } from '../system/process.ts';

export interface RadvdTiming {
  /**
   * Unsolicited RA interval bounds in seconds. 3 and 4 are the smallest radvd accepts without Mobile IPv6
   * extensions: a guest that missed the first RAs after a handover hears one within 4 s (lab speed; the
   * RFC 4861 defaults of 200–600 s would leave it waiting for minutes if it never solicits).
   */
  minIntervalSeconds: number;
  maxIntervalSeconds: number;
  /** Router lifetime; long, so a guest keeps its default router across a handover gap. */
  defaultLifetimeSeconds: number;
}

export const DEFAULT_RADVD_TIMING: RadvdTiming = {
  minIntervalSeconds: 3,
  maxIntervalSeconds: 4,
  defaultLifetimeSeconds: 1800,
};

export interface RadvdConfigInput {
  bridge: string;
  /** /64 prefixes advertised for SLAAC (on-link + autonomous). */
  linkPrefixes: readonly string[];
  mtu: number;
  timing: RadvdTiming;
}

/** radvd.conf text for one guest bridge. */
export function renderRadvdConfig(input: RadvdConfigInput): string {
  const prefixes = input.linkPrefixes
    .map((p) => `  prefix ${p} {\n    AdvOnLink on;\n    AdvAutonomous on;\n    AdvRouterAddr off;\n  };\n`)
    .join('');
  return (
    `# Written by offlink for ${input.bridge}; regenerated on every activation.\n` +
    `interface ${input.bridge} {\n` +
    '  AdvSendAdvert on;\n' +
    '  IgnoreIfMissing on;\n' +
    `  MinRtrAdvInterval ${input.timing.minIntervalSeconds};\n` +
    `  MaxRtrAdvInterval ${input.timing.maxIntervalSeconds};\n` +
    `  AdvDefaultLifetime ${input.timing.defaultLifetimeSeconds};\n` +
    `  AdvLinkMTU ${input.mtu};\n` +
    `${prefixes}` +
    '};\n'
  );
}

/** How long to wait before restarting a radvd that died while it should run. */
const RESTART_DELAY_MS = 1000;
/** How long radvd gets to exit after SIGTERM. */
const STOP_TIMEOUT_MS = 2000;

/** One radvd child for one bridge. start/stop are idempotent. */
export class Radvd {
  private child: SpawnedProcess | undefined;
  private wanted = false;
  private restartTimer: TimerHandle | undefined;
  readonly configPath: string;
  readonly pidPath: string;

  constructor(
    private readonly components: { spawner: ProcessSpawner; clock: Clock; logger: Logger },
    private readonly options: RadvdConfigInput & { runDir: string },
  ) {
    this.configPath = join(options.runDir, `radvd-${options.bridge}.conf`);
    this.pidPath = join(options.runDir, `radvd-${options.bridge}.pid`);
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  async start(): Promise<void> {
    this.wanted = true;
    if (this.child) return;
    await mkdir(this.options.runDir, { recursive: true, mode: 0o755 });
    // radvd refuses a config file that others can write.
    await writeFile(this.configPath, renderRadvdConfig(this.options), { mode: 0o644 });
    await rm(this.pidPath, { force: true });
    if (!this.wanted || this.child) return;
    this.spawn();
  }

  private spawn(): void {
    const log = this.components.logger;
    const argv = ['radvd', '-n', '-C', this.configPath, '-p', this.pidPath, '-m', 'stderr'];
    const child = this.components.spawner.spawn(argv, {
      onStderrLine: (line) => log.debug({ radvd: line }, 'radvd'),
    });
    this.child = child;
    log.debug({ pid: child.pid, argv }, 'radvd started');
    void child.exited.then((exit) => {
      if (this.child !== child) return;
      this.child = undefined;
      if (!this.wanted) return;
      log.error({ ...exit }, 'radvd exited while the network is active; restarting');
      this.restartTimer = this.components.clock.setTimer(RESTART_DELAY_MS, () => {
        this.restartTimer = undefined;
        if (this.wanted && !this.child) this.spawn();
      });
    });
  }

  async stop(): Promise<void> {
    this.wanted = false;
    this.restartTimer?.cancel();
    this.restartTimer = undefined;
    const child = this.child;
    this.child = undefined;
    if (child) {
      // SIGTERM: radvd sends a final RA with router lifetime 0 (RFC 4861 §6.2.5) and tells its privsep
      // child to exit. The RA only reaches this host's bridge, which the guests have left by the time a
      // handover calls standby(). (radvd leaves the privsep child for init to reap.)
      child.kill('SIGTERM');
      const timer = this.components.clock.setTimer(STOP_TIMEOUT_MS, () => child.kill('SIGKILL'));
      await child.exited;
      timer.cancel();
    }
    await rm(this.pidPath, { force: true });
    await rm(this.configPath, { force: true });
  }
}
