import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { buildGuestImage, GUEST_MODULES, guestCmdline, NewcWriter, slaacAddress } from './guest-image.ts';

const hasCpio = existsSync('/usr/bin/cpio') || existsSync('/bin/cpio');

describe('guest image', () => {
  test('slaacAddress is the modified EUI-64 of the MAC on the /64', () => {
    assert.equal(slaacAddress('2001:db8:100::/64', '52:54:00:0f:1c:01'), '2001:db8:100:0:5054:ff:fe0f:1c01');
    assert.equal(slaacAddress('2001:db8:1:2::/64', '02:00:00:00:00:01'), '2001:db8:1:2:0:ff:fe00:1');
    assert.throws(() => slaacAddress('2001:db8::/64', 'nope'), /not a MAC/);
  });

  test('guestCmdline: console on ttyS0, init_on_free, offlink parameters, no whitespace smuggling', () => {
    assert.equal(
      guestCmdline({ address: '2001:db8::5/64', mtu: 1460, slaacWaitS: 5 }),
      'console=ttyS0 quiet panic=-1 init_on_free=1 offlink.addr=2001:db8::5/64 offlink.mtu=1460 offlink.wait=5',
    );
    assert.throws(() => guestCmdline({ extra: ['a b'] }), /whitespace/);
  });

  test('guestCmdline: an IPv4 side only when given, validated', () => {
    assert.doesNotMatch(guestCmdline(), /addr4|gw4/);
    assert.equal(
      guestCmdline({ ipv4: { address: '10.1.0.10/24', gateway: '10.1.0.1' } }),
      'console=ttyS0 quiet panic=-1 init_on_free=1 offlink.addr4=10.1.0.10/24 offlink.gw4=10.1.0.1',
    );
    assert.throws(
      () => guestCmdline({ ipv4: { address: '10.1.0.10/24', gateway: '10.1.1.1' } }),
      /ipv4.gateway: 10.1.1.1: not in the address's subnet 10.1.0.0\/24/,
    );
    assert.throws(
      () => guestCmdline({ ipv4: { address: '10.1.0.10 quiet', gateway: '10.1.0.1' } }),
      /ipv4.address/,
    );
  });

  test('NewcWriter writes an archive cpio(1) lists, with a device node', {
    skip: !hasCpio && 'no cpio',
  }, () => {
    const w = new NewcWriter().dir('dev').node('dev/console', 0o020600, 5, 1);
    w.file('init', 0o755, Buffer.from('#!/bin/sh\n')).file('odd', 0o644, Buffer.from('xyz'));
    const listing = execFileSync('cpio', ['-itv', '--quiet'], { input: w.end() }).toString();
    assert.match(listing, /^drwxr-xr-x .* dev$/m);
    assert.match(listing, /^crw------- .* 5,\s+1 .* dev\/console$/m);
    assert.match(listing, /^-rwxr-xr-x .* 10 .* init$/m);
    assert.match(listing, /^-rw-r--r-- .* 3 .* odd$/m);
  });

  test('build from a fake kernel tree: modules in order, cached by content', {
    skip: !hasCpio && 'no cpio',
  }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'guest-image-'));
    try {
      const mods = join(dir, 'lib/modules/9.9');
      for (const sub of ['kernel/drivers/virtio', 'kernel/drivers/net', 'kernel/net/core'])
        mkdirSync(join(mods, sub), { recursive: true });
      for (const m of GUEST_MODULES) {
        const sub =
          m === 'failover'
            ? 'kernel/net/core'
            : /net/.test(m)
              ? 'kernel/drivers/net'
              : 'kernel/drivers/virtio';
        writeFileSync(join(mods, sub, `${m}.ko`), `module ${m}`);
      }
      // A static "busybox": any static ELF will do (gcc is needed for the guest's services anyway).
      writeFileSync(join(dir, 'bb.c'), 'int main(void){return 0;}');
      execFileSync('gcc', ['-static', '-o', join(dir, 'busybox'), join(dir, 'bb.c')]);
      const kernel = { version: '9.9', vmlinuz: join(dir, 'vmlinuz'), modulesDir: mods };
      const opts = { cacheDir: join(dir, 'cache'), kernel, busybox: join(dir, 'busybox') };
      const first = await buildGuestImage(opts);
      assert.equal(first.built, true);
      const again = await buildGuestImage(opts);
      assert.equal(again.built, false);
      assert.equal(again.initrd, first.initrd);
      const listing = execFileSync('cpio', ['-it', '--quiet'], {
        input: gunzipSync(execFileSync('cat', [first.initrd])),
      }).toString();
      assert.ok(listing.includes('bin/oflguest'));
      assert.ok(listing.includes('dev/console'));
      const init = execFileSync('cpio', ['-i', '--to-stdout', '--quiet', 'init'], {
        input: gunzipSync(execFileSync('cat', [first.initrd])),
      }).toString();
      assert.match(init, new RegExp(`for m in ${GUEST_MODULES.join(' ')}; do`));
      writeFileSync(join(mods, 'kernel/drivers/net/virtio_net.ko'), 'changed');
      const rebuilt = await buildGuestImage(opts);
      assert.equal(rebuilt.built, true);
      assert.notEqual(rebuilt.hash, first.hash);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a dynamically linked busybox is refused', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'guest-image-'));
    try {
      const mods = join(dir, 'lib/modules/9.9');
      mkdirSync(mods, { recursive: true });
      await assert.rejects(
        buildGuestImage({
          cacheDir: dir,
          kernel: { version: '9.9', vmlinuz: '/x', modulesDir: mods },
          busybox: '/bin/ls',
        }),
        /dynamically linked/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
