// The libvirt driver's `migration.tls` (virsh migrate --tls) against two real libvirtds (root, network
// namespaces, libvirtd, QEMU with TCG, openssl, tcpdump, tshark). Each libvirtd's qemu.conf names its
// host's certificate directory (migrate_tls_x509_cert_dir), made here with one CA.
//
//   host A 2001:db8:a::2 (libvirtd A) ── r ── host B 2001:db8:b::2 (libvirtd B); bridge ofl-tls on both
//
// A transient domain runs on A; the driver moves it A→B with TLS (what A sends to B's QEMU starts with a
// TLS ClientHello and never shows QEMU's plain stream magic) and back; then A's certificates are
// replaced by ones from a CA that B does not trust, and A→B is refused with the domain still on A.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { GuestNetwork } from '../src/hypervisor/driver.ts';
import { LibvirtDriver } from '../src/hypervisor/libvirt/driver.ts';
import { buildGuestImage, type GuestImage } from '../src/hypervisor/qemu/guest-image.ts';
import { domainXml } from '../src/lab/libvirt-guest.ts';
import { LibvirtHosts, qemuTcpUri, removeStaleLibvirt } from '../src/lab/libvirt-hosts.ts';
import { site } from '../src/lab/netbuild.ts';
import { silentLogger } from '../src/log.ts';
import { netnsSpawner } from '../src/system/process.ts';
import { ExecRunner } from '../src/system/runner.ts';
import { capturePayloads, QEVM, TLS_CLIENT_HELLO } from './helpers/capture.ts';
import { openNetns } from './helpers/netns.ts';
import { hostPki, makeCa } from './helpers/pki.ts';
import { Procs } from './helpers/procs.ts';
import { libvirtMissing, skipUnless } from './helpers/requirements.ts';

const missing = libvirtMissing(['/usr/bin/openssl', '/usr/bin/tcpdump', '/usr/bin/tshark']);
const skip = skipUnless(missing === false, missing || '');

const GUEST = 'guest-t';
const DOMAIN = 'lv-tls';
const BRIDGE = 'ofl-tls';
const HOSTS = { 'host-a': '2001:db8:a::2', 'host-b': '2001:db8:b::2' } as const;
type Host = keyof typeof HOSTS;
const network: GuestNetwork = { name: 'tnet', bridge: BRIDGE, guests: [GUEST] };

function guestXml(image: GuestImage): string {
  return domainXml({
    name: DOMAIN,
    kernel: image.kernel,
    initrd: image.initrd,
    cmdline: 'console=ttyS0 quiet panic=-1',
    bridge: BRIDGE,
    mac: '52:54:00:0f:15:07',
  });
}

describe('libvirt driver: --tls migration stream (real libvirtd, namespaces)', { skip }, () => {
  test('the stream is TLS; a source whose certificate the destination does not trust is refused, the domain stays', {
    timeout: 400_000,
  }, async () => {
    await removeStaleLibvirt();
    const netns = await openNetns();
    const libvirt = LibvirtHosts.temporary(netns.tag);
    const procs = new Procs();
    const dir = mkdtempSync(join(tmpdir(), 'offlink-libvirt-tls-'));
    const drivers: LibvirtDriver[] = [];
    try {
      const ca = makeCa(join(dir, 'ca'));
      const rogue = makeCa(join(dir, 'rogue-ca'), 'not the cluster CA');
      const pki = {
        'host-a': hostPki(join(dir, 'pki-a'), 'host-a', HOSTS['host-a'], [ca]),
        'host-b': hostPki(join(dir, 'pki-b'), 'host-b', HOSTS['host-b'], [ca]),
      };
      const sites = (['a', 'b'] as const).map((h) =>
        site({ ns: h, dev: 'up0', router: 'r', routerDev: `r-${h}`, subnet: `2001:db8:${h}::` }),
      );
      const made = await netns.build({
        namespaces: [{ name: 'r', forwarding: true }, { name: 'a' }, { name: 'b' }],
        bridges: [
          { ns: 'a', name: BRIDGE, mtu: 1500 },
          { ns: 'b', name: BRIDGE, mtu: 1500 },
        ],
        veths: sites.map((s) => s.veth),
        routes: sites.map((s) => s.route),
      });
      const ns: Record<Host, string> = { 'host-a': made.a!, 'host-b': made.b! };
      const [image] = await Promise.all([
        buildGuestImage(),
        libvirt.start(
          (Object.keys(HOSTS) as Host[]).map((h) => ({
            name: h,
            ns: ns[h],
            address: HOSTS[h],
            tlsDir: pki[h],
          })),
        ),
      ]);
      const xml = join(dir, 'domain.xml');
      writeFileSync(xml, guestXml(image));
      await libvirt.virsh('host-a', ['create', xml]);

      const driver = (h: Host) => {
        const peer: Host = h === 'host-a' ? 'host-b' : 'host-a';
        const d = new LibvirtDriver({
          host: h,
          uri: qemuTcpUri(HOSTS[h]),
          peers: { [peer]: qemuTcpUri(HOSTS[peer]) },
          guests: { [GUEST]: { domain: DOMAIN } },
          runner: new ExecRunner({ netns: ns[h] }),
          spawner: netnsSpawner(ns[h]),
          migration: { tls: true, timeoutMs: 90_000 },
          logger: silentLogger(),
        });
        d.start();
        drivers.push(d);
        return d;
      };
      const d = { 'host-a': driver('host-a'), 'host-b': driver('host-b') };
      const runsOn = async (h: Host) => (await d[h].listGuests(network))[0]?.state;
      let n = 0;
      const migrate = async (src: Host, dst: Host) => {
        const stop = await capturePayloads(procs, ns[dst], join(dir, `m${++n}.pcap`), HOSTS[src], HOSTS[dst]);
        try {
          const incoming = await d[dst].prepareIncoming(GUEST, { network, source: src });
          const result = await d[src].migrate(GUEST, { host: dst, incoming }, { network });
          return { result, payloads: await stop() };
        } catch (err) {
          await stop().catch(() => []);
          throw err;
        }
      };
      assert.equal(await runsOn('host-a'), 'running');

      const there = await migrate('host-a', 'host-b');
      assert.equal(await runsOn('host-b'), 'running');
      assert.equal(await runsOn('host-a'), undefined);
      // libvirt's RPC (port 16509: the source's virsh to B's libvirtd, and B's event watcher's
      // connection to A's answered from A) is not the migration stream, QEMU's own connection.
      const stream = there.payloads.filter((p) => p.srcPort !== 16509 && p.dstPort !== 16509);
      assert.match(stream[0]?.hex ?? '', TLS_CLIENT_HELLO, `TLS stream: ${stream[0]?.hex.slice(0, 24)}`);
      assert.ok(!stream.some((p) => p.hex.includes(QEVM)), 'no segment carries the plain stream magic');
      assert.ok(stream.length > 100, `the guest's memory went through (${stream.length} segments)`);

      await migrate('host-b', 'host-a');
      assert.equal(await runsOn('host-a'), 'running');

      // A's certificates replaced by ones from a CA B does not trust (libvirt hands QEMU the directory
      // at each migration, so the new files count from the next one).
      hostPki(pki['host-a'], 'host-a', HOSTS['host-a'], [ca, rogue], rogue);
      const err = await migrate('host-a', 'host-b').then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      assert.ok(err, 'the migration to a host that does not trust A fails');
      assert.match(err.message, /keeps running on the source/);
      assert.equal(await runsOn('host-a'), 'running', 'the domain runs on A');
      assert.equal(await runsOn('host-b'), undefined, 'nothing on B');
      console.log(`TLS A→B: ${JSON.stringify(there.result.figures)}; refused: ${err.message.slice(0, 300)}`);
    } finally {
      for (const drv of drivers) await drv.close();
      await procs.killAll();
      await libvirt.close();
      await netns.cleanup();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
