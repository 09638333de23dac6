// What integration tests need from the machine, and what happens when it is missing: locally the tests
// that need it are skipped with the reason; under CI=true a missing requirement is a failure (a test
// named after the requirement fails), so a CI machine that lacks something can never pass by skipping.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { type Backend, type ProbeResult, probeBackends } from '../../src/dataplane/probe.ts';
import { findGuestKernel } from '../../src/hypervisor/qemu/guest-image.ts';
import { checkLibvirtRequirements } from '../../src/lab/libvirt-guest.ts';
import { ExecRunner } from '../../src/system/runner.ts';

export const inCI = process.env['CI'] === 'true';

/** `skip` option value: false when `ok`; otherwise the reason (and, under CI, a failing test). */
export function skipUnless(ok: boolean, reason: string): false | string {
  if (ok) return false;
  if (inCI) {
    test(`requirement: ${reason}`, () => {
      throw new Error(`CI=true: ${reason} is required here, not skipped`);
    });
  }
  return reason;
}

/** Whether `command args…` runs and exits 0 (a tool is installed). */
export function runs(command: string, args: readonly string[] = ['--version']): boolean {
  try {
    execFileSync(command, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** Root and network namespaces (every integration test): the skip option. */
export function needsRoot(): false | string {
  return skipUnless(isRoot(), 'root (network namespaces)');
}

/** What a real QEMU guest needs here that is missing (root, QEMU, busybox, radvd, a guest kernel), or false. */
export function qemuMissing(): string | false {
  if (!isRoot()) return 'root (network namespaces)';
  for (const p of ['/usr/bin/qemu-system-x86_64', '/usr/bin/busybox', '/usr/sbin/radvd']) {
    if (!existsSync(p)) return `${p} (scripts/bootstrap)`;
  }
  try {
    findGuestKernel();
  } catch (err) {
    return (err as Error).message;
  }
  return false;
}

/**
 * What a libvirt test needs here that is missing (root, what `--guest libvirt` needs: libvirtd, virsh,
 * QEMU, busybox, the libvirt-qemu user, a guest kernel; and `extra`), or false.
 */
export function libvirtMissing(extra: readonly string[] = []): string | false {
  if (!isRoot()) return 'root (network namespaces)';
  for (const p of extra) if (!existsSync(p)) return `${p} (scripts/bootstrap)`;
  try {
    checkLibvirtRequirements();
  } catch (err) {
    return (err as Error).message;
  }
  return false;
}

/**
 * The data plane backends this kernel runs, probed once per test file. A backend the kernel lacks is
 * named (with the reason) in a passing test's diagnostics; with none usable, the test fails.
 *
 * OFFLINK_TEST_BACKENDS (comma-separated, e.g. `seg6`) narrows the tests to those backends, and each
 * one named there must work on this kernel or this test fails (scripts/seg6-vm sets it: under TCG,
 * running the bpf tests again in the VM would double a long run and prove nothing new).
 */
export async function dataplaneBackends(): Promise<Backend[]> {
  if (!isRoot()) return [];
  const only = process.env['OFFLINK_TEST_BACKENDS']?.split(',').filter((b) => b !== '');
  const result: ProbeResult = await probeBackends({ runner: new ExecRunner() });
  const usable = result.backends
    .filter((b) => b.usable && (only === undefined || only.includes(b.backend)))
    .map((b) => b.backend);
  test(`data plane backends on kernel ${result.kernelRelease}`, (t) => {
    for (const b of result.backends) {
      if (only !== undefined && !only.includes(b.backend))
        t.diagnostic(`${b.backend}: not tested (OFFLINK_TEST_BACKENDS=${only.join(',')})`);
      else t.diagnostic(b.usable ? `${b.backend}: tested` : `${b.backend}: not on this kernel (${b.reason})`);
    }
    const missing = (only ?? []).filter((name) => !usable.includes(name as Backend));
    if (missing.length > 0)
      throw new Error(`OFFLINK_TEST_BACKENDS names ${missing.join(', ')}, which this kernel does not run`);
    if (usable.length === 0) throw new Error('no data plane backend works on this kernel');
  });
  return usable;
}
