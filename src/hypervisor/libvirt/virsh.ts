// The virsh commands the libvirt driver runs, as typed calls over the CommandRunner seam (argv, never a
// shell). Each reads only what virsh 9.0 prints for it: `domstate --reason` one line "state (reason)";
// the others nothing on success and "error: …" on stderr on failure.
import type { CommandRunner, RunResult } from '../../system/runner.ts';
import { HypervisorError } from '../driver.ts';

/** libvirt's domain states as virsh names them (virshDomainStateToString). */
export type DomainStateName =
  | 'no state'
  | 'running'
  | 'idle'
  | 'paused'
  | 'in shutdown'
  | 'shut off'
  | 'crashed'
  | 'pmsuspended';

export interface DomainState {
  state: DomainStateName | string;
  /** `booted`, `migrated`, `migrating`, `user`, … ('' when virsh printed none). */
  reason: string;
}

export interface VirshMigrateOptions {
  /** `--p2p`: the source libvirtd connects to the destination itself. */
  p2p?: boolean;
  /** `--persistent --undefinesource`: the definition moves with the guest. */
  persistent?: boolean;
  /** `--tls`: TLS for the migration stream (certificates from qemu.conf on both hosts). */
  tls?: boolean;
  /** `--bandwidth`, MiB/s. */
  bandwidthMiBs?: number;
  /** Kill virsh after this long (the driver aborts the job itself before that). */
  timeoutMs?: number;
}

/** virsh's message when the domain does not exist on that libvirtd. */
const NO_DOMAIN = /failed to get domain/;

export class Virsh {
  constructor(
    private readonly runner: CommandRunner,
    private readonly binary = 'virsh',
  ) {}

  private run(uri: string, args: readonly string[], timeoutMs?: number): Promise<RunResult> {
    return this.runner.run([this.binary, '-q', '-c', uri, ...args], {
      allowFailure: true,
      ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    });
  }

  /** The domain's state on `uri`, or undefined when that libvirtd has no such domain. */
  async domState(uri: string, domain: string): Promise<DomainState | undefined> {
    const r = await this.run(uri, ['domstate', '--reason', domain]);
    if (r.exitCode !== 0) {
      if (NO_DOMAIN.test(r.stderr)) return undefined;
      throw new HypervisorError('ERR_HYPERVISOR', `virsh -c ${uri} domstate ${domain}: ${virshMessage(r)}`);
    }
    const line = r.stdout.trim();
    const m = /^(.*?) \((.*)\)$/.exec(line);
    return m ? { state: m[1]!, reason: m[2]! } : { state: line, reason: '' };
  }

  /** `virsh migrate --live`: resolves when virsh exits, with its result (failure is not thrown). */
  migrate(
    uri: string,
    domain: string,
    destination: string,
    options: VirshMigrateOptions = {},
  ): Promise<RunResult> {
    const args = ['migrate', '--live'];
    if (options.p2p) args.push('--p2p');
    if (options.persistent) args.push('--persistent', '--undefinesource');
    if (options.tls) args.push('--tls');
    if (options.bandwidthMiBs !== undefined) args.push('--bandwidth', String(options.bandwidthMiBs));
    args.push(domain, destination);
    return this.run(uri, args, options.timeoutMs);
  }

  /** `virsh domjobabort`: cancels a running migration (libvirt then resumes the guest on the source). */
  abortJob(uri: string, domain: string): Promise<RunResult> {
    return this.run(uri, ['domjobabort', domain]);
  }

  resume(uri: string, domain: string): Promise<RunResult> {
    return this.run(uri, ['resume', domain]);
  }
}

/** virsh's error text without its "error: " prefixes, on one line. */
export function virshMessage(r: RunResult): string {
  const text = r.stderr
    .split('\n')
    .map((l) => l.replace(/^error: /, '').trim())
    .filter((l) => l !== '')
    .join('; ');
  return text || `exit ${r.exitCode}`;
}
