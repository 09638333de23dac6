// The real KVM probe against this machine's /dev/kvm and QEMU (root, qemu-system-x86_64, a guest
// kernel). Whatever it decides must be true: with KVM, the guest kernel ran under KVM (the probe saw
// its first line); with TCG because the kernel printed nothing under KVM, it still prints nothing when
// given three times as long (the probe was not merely impatient), and under TCG the same kernel runs.
// On the CI machines /dev/kvm is a kvm_pvm backend that does not run a stock kernel: TCG.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decideAccel, realAccelProbe } from '../src/hypervisor/qemu/accel.ts';
import { findGuestKernel } from '../src/hypervisor/qemu/guest-image.ts';
import { qemuMissing, skipUnless } from './helpers/requirements.ts';

const missing = qemuMissing();
const skip = skipUnless(missing === false, missing || '');

describe('KVM probe (real /dev/kvm and QEMU)', { skip }, () => {
  // -cpu host (the default with KVM) and a named model (what `hypervisor.cpu` may say): on the CI
  // machines the first makes QEMU abort at once (an MSR kvm_pvm refuses), the second spins silently.
  for (const cpu of [undefined, 'qemu64'])
    test(`its decision holds with -cpu ${cpu ?? 'host'}: KVM runs the kernel, or not even when given longer`, {
      timeout: 120_000,
    }, async (t) => {
      const kernel = () => findGuestKernel().vmlinuz;
      const probe = (timeoutMs?: number) =>
        realAccelProbe({ qemu: 'qemu-system-x86_64', kernel, cpu, ...(timeoutMs ? { timeoutMs } : {}) });
      const started = performance.now();
      const decision = await decideAccel('auto', probe());
      const ms = performance.now() - started;
      t.diagnostic(`${decision.accel}: ${decision.reason} (${ms.toFixed(0)} ms)`);
      assert.ok(ms < 15_000, `the probe took ${ms} ms`);
      if (decision.accel === 'kvm') {
        assert.match(decision.reason, /runs under KVM/);
        return;
      }
      if (!/printed nothing under KVM/.test(decision.reason)) return; // no /dev/kvm, or QEMU refused it
      const longer = await probe(15_000).bootsUnderKvm();
      assert.notEqual(longer, true, 'the kernel ran under KVM after all: the probe gave up too early');
    });
});
