// Router advertisements for a guest link through radvd (docs/dataplane.md): the MR writes radvd's config for the
// bridge and runs `radvd -n` as a child only while the network is active on this host.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import type { ProcessSpawner } from '../system/process.ts';
import { SupervisedChild } from '../system/supervised.ts';

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

/** One radvd child for one bridge. start/stop are idempotent. */
export class Radvd {
  private readonly child: SupervisedChild;
  readonly configPath: string;
  readonly pidPath: string;

  constructor(
    components: { spawner: ProcessSpawner; clock: Clock; logger: Logger },
    private readonly options: RadvdConfigInput & { runDir: string },
  ) {
    this.child = new SupervisedChild(components, 'radvd');
    this.configPath = join(options.runDir, `radvd-${options.bridge}.conf`);
    this.pidPath = join(options.runDir, `radvd-${options.bridge}.pid`);
  }

  get running(): boolean {
    return this.child.running;
  }

  async start(): Promise<void> {
    this.child.want();
    if (this.child.running) return;
    await mkdir(this.options.runDir, { recursive: true, mode: 0o755 });
    // radvd refuses a config file that others can write.
    await writeFile(this.configPath, renderRadvdConfig(this.options), { mode: 0o644 });
    await rm(this.pidPath, { force: true });
    this.child.run(['radvd', '-n', '-C', this.configPath, '-p', this.pidPath, '-m', 'stderr']);
  }

  async stop(): Promise<void> {
    // SIGTERM: radvd sends a final RA with router lifetime 0 (RFC 4861 §6.2.5) and tells its privsep
    // child to exit. The RA only reaches this host's bridge, which the guests have left by the time a
    // handover calls standby(). (radvd leaves the privsep child for init to reap.)
    await this.child.stop();
    await rm(this.pidPath, { force: true });
    await rm(this.configPath, { force: true });
  }
}
