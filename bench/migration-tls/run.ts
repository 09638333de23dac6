// What TLS costs the migration stream (qemu driver, TCG): one guest moved back and forth between two
// host namespaces, alternating plain and TLS migrations (certificates made here, as in test/qemu-tls),
// in both directions, QEMU's total time, its downtime, the guest's measured pause (destination RESUME − source STOP) and
// the bytes sent, per mode; the headline is TLS ÷ plain at p50.
//
//   node --import tsx bench/migration-tls/run.ts [--pairs N (6): N migrations of each mode] [--json FILE]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DriverMigrationResult, GuestNetwork } from '../../src/hypervisor/driver.ts';
import type { QemuDriver } from '../../src/hypervisor/qemu/driver.ts';
import { buildGuestImage } from '../../src/hypervisor/qemu/guest-image.ts';
import { site } from '../../src/lab/netbuild.ts';
import { withNetns } from '../../test/helpers/netns.ts';
import { hostPki, makeCa } from '../../test/helpers/pki.ts';
import { closeQemuHosts, qemuHost } from '../../test/helpers/qemu-host.ts';
import { describeMachine, finishMachineInfo, machineInfo } from '../lib/machine.ts';
import { numArg, parseArgs, writeResult } from '../lib/results.ts';
import { ratio, summarize } from '../lib/stats.ts';

const args = parseArgs(process.argv.slice(2));
const pairs = numArg(args, 'pairs', 6);
const UPLINK = { a: '2001:db8:a::2', b: '2001:db8:b::2' } as const;
const GUEST = 'gb';
const network: GuestNetwork = { name: 'bnet', bridge: 'br-b', guests: [GUEST] };

const machine = machineInfo();
const dir = mkdtempSync(join(tmpdir(), 'offlink-bench-tls-'));
const runs: { mode: 'plain' | 'tls'; from: string; result: DriverMigrationResult }[] = [];
let hosts: Parameters<typeof closeQemuHosts>[0];
try {
  const image = await buildGuestImage();
  const ca = makeCa(join(dir, 'ca'));
  const tlsDir = {
    a: hostPki(join(dir, 'a'), 'host-a', UPLINK.a, [ca]),
    b: hostPki(join(dir, 'b'), 'host-b', UPLINK.b, [ca]),
  };
  await withNetns(async (lab) => {
    const sites = (['a', 'b'] as const).map((h) =>
      site({ ns: h, dev: 'up0', router: 'r', routerDev: `r-${h}`, subnet: `2001:db8:${h}::` }),
    );
    const { a, b } = await lab.build({
      namespaces: [{ name: 'r', forwarding: true }, { name: 'a' }, { name: 'b' }],
      veths: sites.map((s) => s.veth),
      routes: sites.map((s) => s.route),
    });
    const drivers = new Map<string, QemuDriver>();
    const options = {
      dir,
      image,
      network,
      prefixes: ['2001:db8:171::/64'],
      guest: { name: GUEST, mac: '52:54:00:0f:1c:09' },
      peerResumedAt: (h: string, g: string) => drivers.get(h)?.resumedAt(g) ?? Promise.resolve(undefined),
    };
    hosts = { a: qemuHost('host-a', a!, UPLINK.a, options), b: qemuHost('host-b', b!, UPLINK.b, options) };
    for (const h of [hosts.a, hosts.b]) {
      drivers.set(h.name, h.driver);
      await h.link.ensure();
    }
    await hosts.a.driver.startGuest(GUEST, { network });
    let [src, dst] = [hosts.a, hosts.b];
    for (let i = 0; i < pairs * 2; i++) {
      // plain, plain, TLS, TLS, …: each mode runs both directions equally often.
      const mode = Math.floor(i / 2) % 2 === 0 ? 'plain' : 'tls';
      for (const [h, d] of [
        [hosts.a, tlsDir.a],
        [hosts.b, tlsDir.b],
      ] as const)
        h.driver.configureMigration({ tls: mode === 'tls' ? { dir: d } : undefined });
      await new Promise((r) => setTimeout(r, 1500));
      const incoming = await dst.driver.prepareIncoming(GUEST, { network, source: src.name });
      const result = await src.driver.migrate(GUEST, { host: dst.name, incoming }, { network });
      runs.push({ mode, from: src.name, result });
      console.log(
        `${mode.padEnd(5)} ${src.name} → ${dst.name}: total ${result.figures?.['totalTimeMs']} ms, downtime ${result.downtimeMs} ms, paused ${result.pausedMs} ms`,
      );
      [src, dst] = [dst, src];
    }
  });
} finally {
  await closeQemuHosts(hosts);
  rmSync(dir, { recursive: true, force: true });
}

const figure = (mode: 'plain' | 'tls', key: string) =>
  summarize(runs.filter((r) => r.mode === mode).map((r) => r.result.figures?.[key] ?? Number.NaN));
const keys = ['totalTimeMs', 'downtimeMs', 'pausedMs', 'transferredBytes'] as const;
const summary = Object.fromEntries(
  (['plain', 'tls'] as const).map((m) => [m, Object.fromEntries(keys.map((k) => [k, figure(m, k)]))]),
);
const headline = {
  tlsOverPlainTotalTimeP50: ratio(figure('tls', 'totalTimeMs').p50, figure('plain', 'totalTimeMs').p50),
  tlsOverPlainDowntimeP50: ratio(figure('tls', 'downtimeMs').p50, figure('plain', 'downtimeMs').p50),
  tlsOverPlainPausedP50: ratio(figure('tls', 'pausedMs').p50, figure('plain', 'pausedMs').p50),
};
const done = finishMachineInfo(machine);
console.log(`${describeMachine(done)}\n${JSON.stringify(headline)}`);
const path = writeResult(args.get('json'), 'migration-tls', {
  machine: done,
  pairs,
  headline,
  summary,
  runs: runs.map((r) => ({ mode: r.mode, from: r.from, ...r.result.figures })),
});
console.log(`written: ${path}`);
