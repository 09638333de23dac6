import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { CommandRunner } from '../../system/runner.ts';
import { type AccelProbeDeps, accelArgs, cpuModel, decideAccel } from './accel.ts';
import { QemuDriver, readiness } from './driver.ts';
import { GUEST_READY } from './guest-image.ts';
import { qemuArgs } from './process.ts';

/** A probe whose answers are given, recording what was asked. */
function fake(open: NodeJS.ErrnoException | undefined, boots: true | string) {
  const asked: string[] = [];
  const deps: AccelProbeDeps = {
    openKvm() {
      asked.push('open');
      if (open) throw open;
    },
    async bootsUnderKvm() {
      asked.push('boot');
      return boots;
    },
  };
  return { deps, asked };
}
const errno = (code: string) => Object.assign(new Error(code), { code });

describe('accelerator choice', () => {
  const table: [string, ReturnType<typeof fake>, 'auto' | 'kvm' | 'tcg', 'kvm' | 'tcg', RegExp, string[]][] =
    [
      [
        'no /dev/kvm',
        fake(errno('ENOENT'), true),
        'auto',
        'tcg',
        /\/dev\/kvm cannot be opened \(ENOENT\)/,
        ['open'],
      ],
      ['/dev/kvm not ours', fake(errno('EACCES'), true), 'auto', 'tcg', /EACCES/, ['open']],
      [
        '/dev/kvm that does not run the kernel (this CI machine: kvm_pvm)',
        fake(undefined, 'the guest kernel printed nothing under KVM within 5 s'),
        'auto',
        'tcg',
        /^\/dev\/kvm opens but the guest kernel printed nothing under KVM within 5 s$/,
        ['open', 'boot'],
      ],
      ['a working KVM', fake(undefined, true), 'auto', 'kvm', /runs under KVM/, ['open', 'boot']],
      ['forced tcg: no probe', fake(undefined, true), 'tcg', 'tcg', /hypervisor.accel: tcg/, []],
      ['forced kvm: no probe', fake(errno('ENOENT'), 'x'), 'kvm', 'kvm', /hypervisor.accel: kvm/, []],
    ];
  for (const [what, { deps, asked }, choice, accel, reason, probed] of table)
    it(`${what} → ${accel}`, async () => {
      const d = await decideAccel(choice, deps);
      assert.equal(d.accel, accel);
      assert.match(d.reason, reason);
      assert.deepEqual(asked, probed);
    });
});

describe('CPU model', () => {
  it('host with KVM, QEMU’s default (no -cpu) with TCG, the config’s when given', () => {
    assert.deepEqual(accelArgs('kvm'), ['-accel', 'kvm', '-cpu', 'host']);
    assert.deepEqual(accelArgs('tcg'), ['-accel', 'tcg']);
    assert.deepEqual(accelArgs('kvm', 'Skylake-Server'), ['-accel', 'kvm', '-cpu', 'Skylake-Server']);
    assert.deepEqual(accelArgs('tcg', 'max'), ['-accel', 'tcg', '-cpu', 'max']);
    assert.equal(cpuModel('tcg'), '');
    assert.equal(cpuModel('kvm'), 'host');
  });

  it('reaches the QEMU command line, and nothing else names a model', () => {
    const m = { memoryMiB: 128, kernel: 'k', initrd: 'i', append: 'a', mac: '52:54:00:00:00:01' };
    const p = { qmp: 'q', serial: 's', tap: 't' };
    const tcg = qemuArgs('g', { ...m, accel: 'tcg' }, p);
    assert.equal(tcg[tcg.indexOf('-accel') + 1], 'tcg');
    assert.ok(!tcg.includes('-cpu'));
    const kvm = qemuArgs('g', { ...m, accel: 'kvm' }, p);
    assert.deepEqual(kvm.slice(kvm.indexOf('-accel'), kvm.indexOf('-accel') + 4), [
      '-accel',
      'kvm',
      '-cpu',
      'host',
    ]);
  });
});

describe('guest readiness', () => {
  const mac = '52:54:00:00:00:01';
  it('the offlink image: its console line', () => assert.equal(readiness({ mac }), GUEST_READY));
  it('a kernel of one’s own: as soon as QEMU runs it', () => {
    assert.equal(readiness({ mac, kernel: '/srv/vmlinuz' }), null);
    assert.equal(readiness({ mac, initrd: '/srv/initrd' }), null);
  });
  it('the config’s line, or false', () => {
    assert.deepEqual(readiness({ mac, kernel: '/k', ready: 'login: ' }), /login: /);
    assert.equal(readiness({ mac, ready: false }), null);
  });
  it('the driver-wide option wins (tests, the lab)', () => {
    assert.deepEqual(readiness({ mac, ready: 'x' }, /y/), /y/);
    assert.equal(readiness({ mac }, null), null);
  });
});

describe('QemuDriver: accelerator and CPU model together', () => {
  const runDir = mkdtempSync(join(tmpdir(), 'offlink-accel-'));
  after(() => rmSync(runDir, { recursive: true, force: true }));

  it('refuses cpu host on a host that runs TCG, before it makes anything', async () => {
    const calls: string[][] = [];
    const driver = new QemuDriver({
      host: 'h',
      runDir,
      guests: { g: { mac: '52:54:00:00:00:01', kernel: '/k', initrd: '/i' } },
      incomingAddress: () => '2001:db8::1',
      runner: {
        run: async (argv: readonly string[]) => {
          calls.push([...argv]);
          return { exitCode: 0, stdout: '', stderr: '' };
        },
      } as unknown as CommandRunner,
      cpu: 'host',
      accelProbe: fake(undefined, 'the guest kernel printed nothing under KVM within 5 s').deps,
    });
    await assert.rejects(
      driver.startGuest('g', { network: { name: 'n', bridge: 'br', guests: ['g'] } }),
      /hypervisor.cpu host needs KVM and this host runs TCG \(\/dev\/kvm opens but the guest kernel printed nothing/,
    );
    assert.deepEqual(calls, [], 'no tap, no QEMU');
  });
});
