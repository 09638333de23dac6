// Which accelerator the qemu driver uses, and the CPU model that goes with it.
//
// KVM when it works, TCG otherwise. "Works" is tested, not assumed: /dev/kvm must open read-write, and
// a QEMU with `-accel kvm` must run the guest kernel up to its first console line ("Linux version")
// within a few seconds. The second test is needed because a /dev/kvm can answer every ioctl and still
// not run an ordinary kernel: on the CI machines /dev/kvm is a paravirtual backend (kvm_pvm) where
// QEMU starts, SeaBIOS runs, and a stock Debian kernel's decompressor spins forever. (QEMU itself does
// the KVM_GET_API_VERSION check when it opens /dev/kvm, and says so on stderr when it fails.)
//
// CPU model, unless the config names one (`hypervisor.cpu`):
// - KVM: `-cpu host` — every feature of the host's CPU. The guest sees exactly the host's CPUID, so it
//   may migrate only between hosts with the same CPU model, microcode and kernel (libvirt's
//   host-passthrough has the same rule). For a mixed fleet, name a model all hosts have (`Skylake-Server`,
//   `EPYC`, …) in `hypervisor.cpu`.
// - TCG: QEMU's default (no `-cpu`: qemu64 for x86_64). A fixed, named model: the same CPUID on every
//   host and every QEMU version, so migration between identical hosts is safe — and between different
//   ones too. `max` would give more features, but what it contains changes with the QEMU version (and
//   TCG emulates each extra feature slowly), so it is not the default.
// Both ends of a migration must run the same accelerator and model: the destination reports its own in
// its prepare reply and the source refuses a mismatch before it sends anything.
import { spawn } from 'node:child_process';
import { closeSync, constants, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type Accel = 'kvm' | 'tcg';
/** The config's choice: probe, or force one. */
export type AccelChoice = Accel | 'auto';

export interface AccelDecision {
  accel: Accel;
  /** Why (for the log and `listGuests`). */
  reason: string;
}

/** The seams of the probe: the real ones below; fakes in unit tests. */
export interface AccelProbeDeps {
  /** Open /dev/kvm read-write; throws (with the errno) when that fails. */
  openKvm(): void;
  /** Run the guest kernel under KVM; true when its first console line came in time, else why not. */
  bootsUnderKvm(): Promise<true | string>;
}

/** Decide the accelerator: `choice` when forced, else the probe's answer. */
export async function decideAccel(choice: AccelChoice, deps: AccelProbeDeps): Promise<AccelDecision> {
  if (choice !== 'auto') return { accel: choice, reason: `hypervisor.accel: ${choice}` };
  try {
    deps.openKvm();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    return { accel: 'tcg', reason: `/dev/kvm cannot be opened (${code})` };
  }
  const boots = await deps.bootsUnderKvm();
  if (boots === true) return { accel: 'kvm', reason: 'the guest kernel runs under KVM' };
  return { accel: 'tcg', reason: `/dev/kvm opens but ${boots}` };
}

/** The `-accel` and `-cpu` arguments. */
export function accelArgs(accel: Accel, cpu?: string): string[] {
  const model = cpu ?? (accel === 'kvm' ? 'host' : undefined);
  return ['-accel', accel, ...(model ? ['-cpu', model] : [])];
}

/** The CPU model a QEMU runs with, as a string ('' for QEMU's default): what both ends must share. */
export function cpuModel(accel: Accel, cpu?: string): string {
  return cpu ?? (accel === 'kvm' ? 'host' : '');
}

const KVM = '/dev/kvm';
/** The kernel's first line on the console, once it runs decompressed. */
const KERNEL_UP = /Linux version /;

/**
 * The real probe: /dev/kvm, then QEMU with `-accel kvm` and the CPU model guests would get (`cpu`,
 * default host) booting `kernel` for at most `timeoutMs`.
 */
export function realAccelProbe(options: {
  qemu: string;
  kernel: () => string;
  cpu?: string | undefined;
  timeoutMs?: number;
}): AccelProbeDeps {
  return {
    openKvm() {
      closeSync(openSync(KVM, constants.O_RDWR));
    },
    bootsUnderKvm: () =>
      bootKernel(options.qemu, options.kernel, cpuModel('kvm', options.cpu), options.timeoutMs ?? 5_000),
  };
}

async function bootKernel(
  qemu: string,
  kernelOf: () => string,
  cpu: string,
  timeoutMs: number,
): Promise<true | string> {
  let kernel: string;
  try {
    kernel = kernelOf();
  } catch (err) {
    return `no guest kernel to test it with (${(err as Error).message})`;
  }
  const serial = join(tmpdir(), `offlink-kvm-probe-${process.pid}-${Date.now()}.log`);
  const child = spawn(
    qemu,
    [
      '-accel',
      'kvm',
      '-cpu',
      cpu,
      '-machine',
      'q35',
      '-nodefaults',
      '-no-user-config',
      '-display',
      'none',
      '-m',
      '128',
      '-kernel',
      kernel,
      '-append',
      'console=ttyS0 panic=-1',
      '-serial',
      `file:${serial}`,
      '-no-reboot',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-2000);
  });
  let exited = false;
  const gone = new Promise<void>((resolve) => {
    child.once('error', (err) => {
      stderr = err.message;
      exited = true;
      resolve();
    });
    child.once('exit', () => {
      exited = true;
      resolve();
    });
  });
  const read = () => {
    try {
      return readFileSync(serial, 'latin1');
    } catch {
      return '';
    }
  };
  const deadline = performance.now() + timeoutMs;
  try {
    for (;;) {
      if (KERNEL_UP.test(read())) return true;
      if (exited) {
        const why = stderr.trim().split('\n').at(-1) ?? '';
        return `QEMU with -accel kvm exited before the kernel ran${why ? `: ${why}` : ''}`;
      }
      if (performance.now() > deadline)
        return `the guest kernel printed nothing under KVM within ${timeoutMs / 1000} s`;
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    if (!exited) child.kill('SIGKILL');
    await gone;
    rmSync(serial, { force: true });
  }
}
