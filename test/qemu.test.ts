// A real QEMU guest migrated across subnets (root, network namespaces, qemu-system-x86_64, TCG).
//
//   cn (2001:db8:c::2) ── r (router) ──┬── host A uplink 2001:db8:a::2   bridge br-q (MNP 2001:db8:100::/64)
//                                      └── host B uplink 2001:db8:b::2   bridge br-q (same MAC, gateway)
//
// The guest boots behind A (its tap on A's bridge; SLAAC from A's radvd), moves to B and back while the
// correspondent sends echo probes, receives the guest's own probes and stream, and holds one TCP
// connection to the guest's counter service open. The migration stream goes A → r → B. The path switch
// is done by hand in the switchover hook (the router's route for the MNP), standing in for the HA's
// binding change. Then the failure cases, each ending with the guest still running on A.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { DriverMigrationResult, DriverProgress, GuestNetwork } from '../src/hypervisor/driver.ts';
import { QemuDriver } from '../src/hypervisor/qemu/driver.ts';
import { buildGuestImage, type GuestImage, slaacAddress } from '../src/hypervisor/qemu/guest-image.ts';
import type { EndpointResult } from '../src/lab/endpoint.ts';
import { measure } from '../src/lab/measure.ts';
import { site } from '../src/lab/netbuild.ts';
import { series } from '../src/lab/traffic.ts';
import { ExecRunner } from '../src/system/runner.ts';
import { type NetnsLab, sh, withNetns } from './helpers/netns.ts';
import { type Proc, Procs } from './helpers/procs.ts';
import { closeQemuHosts, type QemuHost, qemuHost } from './helpers/qemu-host.ts';
import { qemuMissing, skipUnless } from './helpers/requirements.ts';

const missing = qemuMissing();
const skip = skipUnless(missing === false, missing || '');

const MNP = '2001:db8:100::/64';
const BRIDGE = 'br-q';
const GUEST = 'g1';
const MAC = '52:54:00:0f:1c:01';
/** The guest's SLAAC address: the MNP's /64 + EUI-64 of MAC. */
const GUEST_ADDR = slaacAddress(MNP, MAC);
const UPLINK = { a: '2001:db8:a::2', b: '2001:db8:b::2' } as const;
const CN = '2001:db8:c::2';
const LAB_ENDPOINT = new URL('../src/lab/endpoint.ts', import.meta.url).pathname;
const GUEST_ENDPOINT = new URL('../src/lab/vm-endpoint.ts', import.meta.url).pathname;
const network: GuestNetwork = { name: 'qnet', bridge: BRIDGE, guests: [GUEST] };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.timeOrigin + performance.now();

type Host = QemuHost<'host-a' | 'host-b'>;

async function buildLab(lab: NetnsLab, dir: string, image: GuestImage) {
  // a router r with the two hosts and the correspondent on their own /64s; r routes the MNP to host a
  const sites = [
    site({ ns: 'a', dev: 'up0', router: 'r', routerDev: 'r-a', subnet: '2001:db8:a::' }),
    site({ ns: 'b', dev: 'up0', router: 'r', routerDev: 'r-b', subnet: '2001:db8:b::' }),
    site({ ns: 'cn', dev: 'up0', router: 'r', routerDev: 'r-c', subnet: '2001:db8:c::' }),
  ];
  const { r, a, b, cn } = await lab.build({
    namespaces: [
      { name: 'r', forwarding: true },
      { name: 'a', forwarding: true },
      { name: 'b', forwarding: true },
      { name: 'cn' },
    ],
    veths: sites.map((s) => s.veth),
    routes: [...sites.map((s) => s.route), { ns: 'r', to: MNP, via: UPLINK.a }],
  });

  const peers = new Map<string, QemuDriver>();
  const options = {
    dir,
    image,
    network,
    prefixes: [MNP],
    guest: { name: GUEST, mac: MAC },
    peerResumedAt: (h: string, g: string) => peers.get(h)?.resumedAt(g) ?? Promise.resolve(undefined),
  };
  const hosts = { a: qemuHost('host-a', a, UPLINK.a, options), b: qemuHost('host-b', b, UPLINK.b, options) };
  for (const h of [hosts.a, hosts.b]) peers.set(h.name, h.driver);
  await hosts.a.link.ensure();
  await hosts.b.link.ensure();
  await hosts.a.link.startAdvertising();
  return { r, cn, hosts };
}

interface ClientResult {
  echo: { sent: number[]; arrivals: (number | null)[] };
  counters: { at: number; counter: number; boot: string }[];
  tcp: { open: boolean; error: string };
}

/** Longest silence between consecutive arrivals within [from, to]. */
function longestSilence(arrivals: readonly number[], from: number, to: number): number {
  const pts = arrivals.filter((t) => t >= from && t <= to).sort((x, y) => x - y);
  let gap = 0;
  let prev = from;
  for (const t of [...pts, to]) {
    gap = Math.max(gap, t - prev);
    prev = t;
  }
  return gap;
}

describe('qemu driver (real VM, namespaces)', { skip }, () => {
  test('boots behind host A, migrates to B and back; TCP survives, state survives; failures roll back', {
    timeout: 300_000,
  }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'offlink-qemu-'));
    const t0 = now();
    const image = await buildGuestImage({
      cacheDir: process.getuid?.() === 0 ? undefined : join(dir, 'cache'),
    });
    const procs = new Procs();
    let hosts: Awaited<ReturnType<typeof buildLab>>['hosts'] | undefined;
    try {
      await withNetns(async (lab) => {
        const built = await buildLab(lab, dir, image);
        hosts = built.hosts;
        const { a, b } = built.hosts;

        const bootStart = now();
        await a.driver.startGuest(GUEST, { network });
        const bootMs = now() - bootStart;
        const bootId = a.driver.bootIdOf(GUEST);
        assert.ok(bootId, 'the guest printed its boot id');

        const node = (script: string, options: unknown) =>
          procs.start(built.cn, [process.execPath, '--import', 'tsx', script, JSON.stringify(options)]);
        const client: Proc = node(new URL('./fixtures/qemu-client.ts', import.meta.url).pathname, {
          guest: GUEST_ADDR,
          self: CN,
          echoRate: 250,
        });
        await client.waitFor((l) => l.includes('"ready"'), 30_000);
        // SLAAC, TCP connect and the echo reply all show up in the progress lines.
        await client.waitFor((l) => {
          const p = JSON.parse(l) as { echoReceived?: number; tcp?: boolean };
          return (p.echoReceived ?? 0) > 50 && p.tcp === true;
        }, 60_000);
        // The lab's traffic: its correspondent endpoint, and the QEMU guest's (driven from cn).
        const common = {
          probePort: 40001,
          streamPort: 40000,
          probeRate: 250,
          streamPayload: 1316,
          graceMs: 400,
        };
        const cnEnd = node(LAB_ENDPOINT, {
          ...common,
          role: 'cn',
          bind: CN,
          peer: GUEST_ADDR,
          streamKbps: 0,
          out: join(dir, 'traffic-cn.json'),
        });
        await cnEnd.waitFor((l) => l.includes('"ready"'), 30_000);
        const guestEnd = node(GUEST_ENDPOINT, {
          ...common,
          role: 'guest',
          bind: GUEST_ADDR,
          peer: CN,
          streamKbps: 520,
          out: join(dir, 'traffic-guest.json'),
        });
        await guestEnd.waitFor((l) => l.includes('"ready"'), 30_000);
        const trafficFrom = now();

        const windows: { from: number; to: number; result: DriverMigrationResult; label: string }[] = [];
        const migrate = async (src: Host, dst: Host, label: string) => {
          const progress: DriverProgress[] = [];
          let switching: Promise<unknown> | undefined;
          const from = now();
          const incoming = await dst.driver.prepareIncoming(GUEST, { network, source: src.name });
          assert.match(String(incoming['uri']), new RegExp(`^tcp:\\[${dst.uplink}\\]:\\d+$`));
          const result = await src.driver.migrate(
            GUEST,
            { host: dst.name, incoming },
            {
              network,
              onProgress: (p) => progress.push(p),
              // Like the migration procedure's hook: start the path switch and return, so it overlaps
              // the final stop-and-copy instead of lengthening the pause.
              onSwitchover: async () => {
                // (Spawning `ip` forks this big process: do it after QEMU has been told to continue.)
                switching = new Promise((resolve) => setImmediate(resolve)).then(() =>
                  sh(['ip', '-n', built.r, '-6', 'route', 'replace', MNP, 'via', dst.uplink]),
                );
              },
            },
          );
          await switching;
          await dst.driver.announce(GUEST, { network });
          await src.link.stopAdvertising();
          await dst.link.startAdvertising();
          windows.push({ from, to: now(), result, label });
          assert.ok(progress.some((p) => p.phase === 'switchover'));
          assert.ok(progress.some((p) => p.phase === 'resumed'));
          assert.deepEqual((await src.driver.listGuests(network)).length, 0, 'source QEMU quit');
          const there = await dst.driver.listGuests(network);
          assert.equal(there[0]?.state, 'running');
          return result;
        };

        await sleep(1500);
        await migrate(a, b, 'A→B');
        await sleep(2500);
        // Back without overlap: the hook (the path switch) runs only after QEMU completed, to compare.
        b.driver.configureMigration({ overlap: false });
        await migrate(b, a, 'B→A (no overlap)');
        await sleep(2500);

        // --- failures: each ends with the guest running on A and B holding nothing ---
        const failures: string[] = [];
        const expectRollback = async (what: string, run: (ac: AbortController) => Promise<unknown>) => {
          const ac = new AbortController();
          const err = await run(ac).then(
            () => undefined,
            (e: unknown) => e as Error,
          );
          assert.ok(err, `${what}: the migration must fail`);
          failures.push(`${what}: ${err.message}`);
          assert.match(err.message, /keeps running on the source/, what);
          await b.driver.cancelIncoming(GUEST, { network, source: a.name });
          assert.equal((await b.driver.listGuests(network)).length, 0, `${what}: nothing left on B`);
          const here = await a.driver.listGuests(network);
          assert.equal(here[0]?.state, 'running', `${what}: the guest runs on A`);
          await sh(['ip', '-n', built.r, '-6', 'route', 'replace', MNP, 'via', UPLINK.a]);
        };
        a.driver.configureMigration({ maxBandwidth: 4 << 20, progressIntervalMs: 100 });
        const slowMigration =
          (onTransfer: (ac: AbortController) => Promise<void> | void) => async (ac: AbortController) => {
            const incoming = await b.driver.prepareIncoming(GUEST, { network, source: a.name });
            let fired = false;
            return a.driver.migrate(
              GUEST,
              { host: b.name, incoming },
              {
                network,
                signal: ac.signal,
                onProgress: (p) => {
                  if (p.phase === 'transfer' && (p.transferredBytes ?? 0) > 1 << 20 && !fired) {
                    fired = true;
                    void onTransfer(ac);
                  }
                },
              },
            );
          };
        await expectRollback(
          'destination QEMU dies',
          slowMigration(() => {
            process.kill(b.driver.pidOf(GUEST)!, 'SIGKILL');
          }),
        );
        await expectRollback(
          'QMP socket closes',
          slowMigration(() => a.driver.qmpOf(GUEST)?.close()),
        );
        await expectRollback(
          'abort',
          slowMigration((ac) => ac.abort(new Error('operator cancelled'))),
        );
        a.driver.configureMigration({ maxBandwidth: 128 << 20 });
        await sleep(1500);

        const trafficTo = now();
        client.send('stop');
        cnEnd.send('stop');
        guestEnd.send('stop');
        const result = JSON.parse(
          await client.waitFor((l) => l.includes('"result"'), 15_000),
        ) as ClientResult;
        await cnEnd.waitFor((l) => l.includes('"done"'), 15_000);
        await guestEnd.waitFor((l) => l.includes('"done"'), 30_000);
        const read = (f: string) =>
          JSON.parse(readFileSync(join(dir, f), 'utf8')) as EndpointResult & { tcpBroken?: boolean };
        const [cnResult, guestResult] = [read('traffic-cn.json'), read('traffic-guest.json')];
        assert.equal(guestResult.tcpBroken, false, 'the guest endpoint kept its TCP connection');
        const labMeasure = measure(
          [series('guest→cn', guestResult, cnResult), series('cn→guest', cnResult, guestResult)],
          windows.map((w, i) => ({ index: i + 1, start: w.from, end: w.to })),
          { from: trafficFrom, to: trafficTo },
        );
        const echoArrivals = result.echo.arrivals.filter((x): x is number => x !== null);

        // TCP survived, and the counter kept counting: never reset, never restarted (same boot id).
        assert.equal(result.tcp.open, true, `TCP connection closed: ${result.tcp.error}`);
        assert.ok(result.counters.length > 50);
        for (let i = 1; i < result.counters.length; i++) {
          assert.ok(result.counters[i]!.counter >= result.counters[i - 1]!.counter, 'counter went backwards');
          assert.equal(result.counters[i]!.boot, bootId, 'guest restarted');
        }
        const last = result.counters.at(-1)!;
        for (const w of windows) {
          const before = result.counters.filter((c) => c.at < w.from).at(-1);
          assert.ok(before && last.counter > before.counter, `${w.label}: counter kept counting`);
        }
        assert.ok(cnResult.stream.received > 0, 'the guest stream arrived');

        const lines = windows.map((w, i) => {
          const echoGap = longestSilence(echoArrivals, w.from - 200, w.to + 1000);
          const m = labMeasure.migrations[i]!;
          const dirs = m.directions.map((d) => `${d.name} ${d.gapMs.toFixed(0)} ms`).join(', ');
          const f = w.result.figures ?? {};
          assert.ok(echoGap < 3000, `${w.label}: echo gap ${echoGap} ms`);
          assert.ok(m.gapMs < 3000, `${w.label}: lab gap ${m.gapMs} ms`);
          return `${w.label}: qemu total ${f['totalTimeMs']} ms, downtime ${f['downtimeMs']} ms, setup ${f['setupTimeMs']} ms, paused (dst RESUME - src STOP) ${w.result.pausedMs} ms, sent ${((f['transferredBytes'] ?? 0) / 2 ** 20).toFixed(1)} MiB, hypervisor step ${w.result.hypervisorMs} ms; gap: echo ${echoGap.toFixed(0)} ms, lab probes ${dirs}; lost ${m.lost}`;
        });
        const lost = result.echo.arrivals.filter((x) => x === null).length;
        console.log(
          [
            `boot ${bootMs.toFixed(0)} ms (image ${image.built ? `built in ${image.buildMs.toFixed(0)} ms` : 'cached'})`,
            ...lines,
            `echo: ${result.echo.sent.length} sent, ${lost} lost; lab probes ${labMeasure.summary.sent} sent, ${labMeasure.summary.lost} lost; stream ${cnResult.stream.received}/${guestResult.stream.sent}`,
            ...failures,
            `whole test ${((now() - t0) / 1000).toFixed(1)} s`,
          ].join('\n'),
        );
        for (const w of windows) {
          assert.ok((w.result.figures?.['downtimeMs'] ?? -1) >= 0, 'QEMU reported its downtime');
          assert.ok(w.result.pausedMs !== undefined && w.result.pausedMs > 0, 'measured pause');
        }
      });
    } finally {
      await procs.killAll();
      await closeQemuHosts(hosts);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('QEMU missing and a guest that never boots end with clear errors and nothing left', {
    timeout: 120_000,
  }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'offlink-qemu-'));
    const image = await buildGuestImage();
    try {
      await withNetns(async (lab) => {
        const ns = await lab.ns('h');
        const runner = new ExecRunner({ netns: ns });
        await runner.run(['ip', 'link', 'add', BRIDGE, 'type', 'bridge']);
        await runner.run(['ip', 'link', 'set', BRIDGE, 'up']);
        const make = (extra: Partial<ConstructorParameters<typeof QemuDriver>[0]>) =>
          new QemuDriver({
            host: 'h',
            netns: ns,
            runDir: join(dir, 'h'),
            guests: { [GUEST]: { mac: MAC, memoryMiB: 96 } },
            incomingAddress: () => '2001:db8::1',
            runner: new ExecRunner(),
            image: async () => image,
            ...extra,
          });
        const taps = async () => (await runner.run(['ip', '-j', 'link', 'show', 'type', 'tun'])).stdout;

        const missing = make({ qemu: '/nonexistent/qemu-system-x86_64' });
        await assert.rejects(missing.startGuest(GUEST, { network }), /not found: install qemu-system-x86/);
        assert.equal(JSON.parse(await taps()).length, 0, 'tap removed');

        const never = make({ ready: /this line never comes/, bootTimeoutMs: 3000 });
        const t = now();
        await assert.rejects(never.startGuest(GUEST, { network }), (e: Error & { code?: string }) => {
          assert.equal(e.code, 'ERR_HYPERVISOR_BOOT');
          assert.match(e.message, /not booted after 3 s/);
          return true;
        });
        assert.ok(now() - t < 20_000);
        assert.equal((await never.listGuests(network)).length, 0);
        assert.equal(JSON.parse(await taps()).length, 0, 'tap removed');
        await never.close();
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
