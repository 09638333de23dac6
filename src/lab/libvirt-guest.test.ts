import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkLibvirtRequirements, domainXml } from './libvirt-guest.ts';

describe('lab libvirt guest', () => {
  it('a missing requirement names its Debian package and scripts/bootstrap', () => {
    for (const [missing, pkg] of [
      ['/usr/sbin/libvirtd', 'libvirt-daemon'],
      [
        '/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so',
        'libvirt-daemon-driver-qemu',
      ],
      ['/usr/bin/virsh', 'libvirt-clients'],
      ['/usr/bin/qemu-system-x86_64', 'qemu-system-x86'],
      ['/usr/bin/busybox', 'busybox-static'],
    ] as const) {
      assert.throws(
        () => checkLibvirtRequirements((p) => p !== missing),
        (err: Error & { code?: string }) =>
          err.code === 'ERR_LAB_MISSING_PACKAGE' &&
          err.message.includes(`--guest libvirt needs ${missing} (Debian package ${pkg}`) &&
          err.message.includes('scripts/bootstrap'),
        missing,
      );
    }
  });

  it('the domain: TCG, direct kernel boot with the command line, a virtio NIC with the MAC on the bridge, console to a file', () => {
    const xml = domainXml({
      name: 'ofl-guest-1',
      kernel: '/k/vmlinuz',
      initrd: '/k/initrd',
      cmdline: 'console=ttyS0 offlink.addr=2001:db8:100::10/64',
      bridge: 'ofl-net1',
      mac: '02:0f:00:00:02:01',
    });
    assert.match(xml, /^<domain type='qemu'>/);
    assert.match(xml, /<name>ofl-guest-1<\/name>/);
    assert.match(xml, /<memory unit='MiB'>128<\/memory>/);
    assert.match(xml, /<kernel>\/k\/vmlinuz<\/kernel>\s*<initrd>\/k\/initrd<\/initrd>/);
    assert.match(xml, /<cmdline>console=ttyS0 offlink.addr=2001:db8:100::10\/64<\/cmdline>/);
    assert.match(
      xml,
      /<interface type='bridge'>\s*<source bridge='ofl-net1'\/>\s*<mac address='02:0f:00:00:02:01'\/>\s*<model type='virtio'\/>/,
    );
    assert.match(xml, /<source path='\/var\/log\/libvirt\/qemu\/ofl-guest-1.serial.log'\/>/);
  });
});
