// The QEMU driver's migration stream with TLS (root, network namespaces, qemu-system-x86_64, TCG,
// openssl, tcpdump, tshark). Certificates are made here: one CA trusted by hosts A and B, each host's
// server certificate naming its care-of address.
//
//   host A 2001:db8:a::2 ── r ── host B 2001:db8:b::2      (a guest bridge br-t on each)
//
// The guest boots on A and migrates A→B in plain TCP (the capture's first bytes are QEMU's stream magic
// "QEVM": the check below can tell), B→A with TLS (a TLS handshake record instead, and no "QEVM" in any
// segment), then A→B with A's client certificate signed by a CA that B does not trust: B refuses the
// handshake and the guest keeps running on A. Finally A→B with the right certificates works.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { GuestNetwork } from '../src/hypervisor/driver.ts';
import { buildGuestImage, type GuestImage } from '../src/hypervisor/qemu/guest-image.ts';
import { site } from '../src/lab/netbuild.ts';
import { capturePayloads, QEVM, TLS_CLIENT_HELLO } from './helpers/capture.ts';
import { type NetnsLab, withNetns } from './helpers/netns.ts';
import { hostPki, makeCa } from './helpers/pki.ts';
import { Procs } from './helpers/procs.ts';
import { closeQemuHosts, type QemuHost, qemuHost } from './helpers/qemu-host.ts';
import { qemuMissing, skipUnless } from './helpers/requirements.ts';

const missing =
  qemuMissing() ||
  (['/usr/bin/tcpdump', '/usr/bin/tshark', '/usr/bin/openssl'].find((p) => !existsSync(p)) ?? false);
const skip = skipUnless(missing === false, missing ? `${missing} (scripts/bootstrap)` : '');

const BRIDGE = 'br-t';
const GUEST = 'gt';
const MAC = '52:54:00:0f:1c:07';
const UPLINK = { a: '2001:db8:a::2', b: '2001:db8:b::2' } as const;
const network: GuestNetwork = { name: 'tnet', bridge: BRIDGE, guests: [GUEST] };

type Host = QemuHost<'host-a' | 'host-b'>;

async function buildLab(lab: NetnsLab, dir: string, image: GuestImage) {
  const sites = [
    site({ ns: 'a', dev: 'up0', router: 'r', routerDev: 'r-a', subnet: '2001:db8:a::' }),
    site({ ns: 'b', dev: 'up0', router: 'r', routerDev: 'r-b', subnet: '2001:db8:b::' }),
  ];
  const { a, b } = await lab.build({
    namespaces: [{ name: 'r', forwarding: true }, { name: 'a' }, { name: 'b' }],
    veths: sites.map((s) => s.veth),
    routes: sites.map((s) => s.route),
  });
  const options = { dir, image, network, prefixes: ['2001:db8:170::/64'], guest: { name: GUEST, mac: MAC } };
  const hosts = { a: qemuHost('host-a', a, UPLINK.a, options), b: qemuHost('host-b', b, UPLINK.b, options) };
  await hosts.a.link.ensure();
  await hosts.b.link.ensure();
  return hosts;
}

describe('qemu driver: TLS migration stream (real VMs, namespaces)', { skip }, () => {
  test('plain stream starts with QEVM; TLS stream is TLS; an untrusted source is refused and the guest stays', {
    timeout: 400_000,
  }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'offlink-qemu-tls-'));
    const image = await buildGuestImage({
      cacheDir: process.getuid?.() === 0 ? undefined : join(dir, 'cache'),
    });
    const ca = makeCa(join(dir, 'ca'));
    const rogue = makeCa(join(dir, 'rogue-ca'), 'not the cluster CA');
    const pki = {
      a: hostPki(join(dir, 'pki-a'), 'host-a', UPLINK.a, [ca]),
      b: hostPki(join(dir, 'pki-b'), 'host-b', UPLINK.b, [ca]),
      // A's certificates from another CA (which A trusts, so its own QEMU loads them; B does not).
      aRogue: hostPki(join(dir, 'pki-a-rogue'), 'host-a', UPLINK.a, [ca, rogue], rogue),
    };
    const procs = new Procs();
    let hosts: Awaited<ReturnType<typeof buildLab>> | undefined;
    try {
      await withNetns(async (lab) => {
        hosts = await buildLab(lab, dir, image);
        const { a, b } = hosts;
        await a.driver.startGuest(GUEST, { network });
        const bootId = a.driver.bootIdOf(GUEST);
        assert.ok(bootId);

        let n = 0;
        const migrate = async (src: Host, dst: Host) => {
          const stop = await capturePayloads(
            procs,
            dst.ns,
            join(dir, `m${++n}.pcap`),
            src.uplink,
            dst.uplink,
          );
          const incoming = await dst.driver.prepareIncoming(GUEST, { network, source: src.name });
          try {
            const result = await src.driver.migrate(GUEST, { host: dst.name, incoming }, { network });
            return { result, incoming, payloads: (await stop()).map((x) => x.hex) };
          } catch (err) {
            await stop().catch(() => []);
            await dst.driver.cancelIncoming(GUEST, { network, source: src.name });
            throw err;
          }
        };
        const runsOn = async (h: Host) => (await h.driver.listGuests(network))[0]?.state;

        // 1. plain: the control for the stream check
        const plain = await migrate(a, b);
        assert.equal(plain.incoming['tls'], false);
        assert.ok(plain.payloads[0]?.startsWith(QEVM), `plain stream starts with QEVM: ${plain.payloads[0]}`);
        assert.equal(await runsOn(b), 'running');

        // 2. TLS both ends
        a.driver.configureMigration({ tls: { dir: pki.a } });
        b.driver.configureMigration({ tls: { dir: pki.b } });
        const tls = await migrate(b, a);
        assert.equal(tls.incoming['tls'], true);
        const first = tls.payloads[0] ?? '';
        // A TLS record: content type 22 (handshake), version 3.x, then a ClientHello (handshake type 1).
        assert.match(first, TLS_CLIENT_HELLO, `TLS stream starts with a ClientHello: ${first.slice(0, 24)}`);
        assert.ok(!tls.payloads.some((p) => p.includes(QEVM)), 'no segment carries the plain stream magic');
        assert.ok(
          tls.payloads.length > 100,
          `the guest's memory went through (${tls.payloads.length} segments)`,
        );
        assert.equal(await runsOn(a), 'running');
        assert.equal(await runsOn(b), undefined);
        assert.ok((tls.result.transferredBytes ?? 0) > 10 << 20, 'RAM was transferred');

        // 3. A's certificate from a CA that B does not trust: B refuses, the guest stays on A
        a.driver.configureMigration({ tls: { dir: pki.aRogue } });
        const err = await migrate(a, b).then(
          () => undefined,
          (e: unknown) => e as Error,
        );
        assert.ok(err, 'the migration to a host that does not trust us fails');
        assert.match(err.message, /keeps running on the source/);
        assert.match(err.message, /TLS handshake with host-b failed: both hosts' certificates/);
        assert.equal(await runsOn(a), 'running', 'the guest runs on A');
        assert.equal(await runsOn(b), undefined, 'nothing on B');

        // 4. one end without TLS: refused before anything is sent
        a.driver.configureMigration({ tls: { dir: pki.a } });
        b.driver.configureMigration({ tls: undefined });
        await assert.rejects(migrate(a, b), /has none; the guest keeps running here/);
        assert.equal(await runsOn(a), 'running');

        // 5. the right certificates again: it moves
        b.driver.configureMigration({ tls: { dir: pki.b } });
        const back = await migrate(a, b);
        assert.match(back.payloads[0] ?? '', TLS_CLIENT_HELLO);
        assert.equal(await runsOn(b), 'running');
        console.log(
          `plain A→B: total ${plain.result.figures?.['totalTimeMs']} ms, downtime ${plain.result.downtimeMs} ms; ` +
            `TLS B→A: total ${tls.result.figures?.['totalTimeMs']} ms, downtime ${tls.result.downtimeMs} ms; ` +
            `TLS A→B: total ${back.result.figures?.['totalTimeMs']} ms, downtime ${back.result.downtimeMs} ms; ` +
            `refused: ${err.message}`,
        );
      });
    } finally {
      await procs.killAll();
      await closeQemuHosts(hosts);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
