// Every data plane backend this kernel runs, in network namespaces (root): HA and mobile routers
// programmed through ExecRunner({ netns }), real packets through the tunnel.
//   g  (guest, 2001:db8:100::10) -- mr (bridge ofl-net1, CoA 2001:db8:a::2) --+
//   g2 (same guest address)      -- mr2 (bridge ofl-net1, CoA 2001:db8:b::2) -+-- r -- ha (2001:db8:ffff::1) -- cn
// The guest links have MTU 1500 on purpose: then only MSS clamping (seg6) or Packet Too Big (bpf) keeps
// TCP alive through the tunnel.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  type Backend,
  createHomeAgentDataplane,
  createMobileRouterDataplane,
} from '../src/dataplane/index.ts';
import { RT_PROTO } from '../src/dataplane/kernel.ts';
import type { HomeAgentDataplaneOptions, MobileRouterRoutes, TunnelBinding } from '../src/dataplane/types.ts';
import { site } from '../src/lab/netbuild.ts';
import { type CommandRunner, ExecRunner, type RunOptions, type RunResult } from '../src/system/runner.ts';
import { type NetnsLab, withNetns } from './helpers/netns.ts';
import { iperfBytes, udpEcho, udpExchange, waitForOutput } from './helpers/probes.ts';
import { dataplaneBackends, needsRoot } from './helpers/requirements.ts';

const HA = '2001:db8:ffff::1';
const CN = '2001:db8:c::2';
const GUEST = '2001:db8:100::10';
const MNP = '2001:db8:100::/64';
const HOA = '2001:db8:ffff::100';
const COA1 = '2001:db8:a::2';
const COA2 = '2001:db8:b::2';
const binding = (coa: string): TunnelBinding => ({ hoa: HOA, coa, prefixes: [MNP], id: 7 });

/** Records what goes to the kernel, then runs it. */
class Tap implements CommandRunner {
  readonly calls: { argv: readonly string[]; input?: string }[] = [];
  constructor(private readonly inner: CommandRunner) {}
  run(argv: readonly string[], options?: RunOptions): Promise<RunResult> {
    this.calls.push({ argv, ...(options?.input !== undefined ? { input: options.input } : {}) });
    return this.inner.run(argv, options);
  }
}

const UDP_ECHO = udpEcho(6);
const waitFor = waitForOutput;

/** Send `count` datagrams of `size` bytes from ns to dst:7; returns the echo replies ("<name>:<size>"). */
function udp(lab: NetnsLab, ns: string, dst: string, size: number, count = 3, bind = ''): Promise<string[]> {
  return udpExchange(lab, ns, dst, size, { count, bind });
}

/** Bytes the receiver got in a 2-s iperf3 run from `client` to `server` (or reversed with -R). */
function iperf(lab: NetnsLab, serverNs: string, clientNs: string, serverAddr: string, reverse: boolean) {
  return iperfBytes(lab, { ns: serverNs, addr: serverAddr }, clientNs, { reverse });
}

async function topology(lab: NetnsLab) {
  // the HA's one uplink ha-up, to the router r that both MRs' subnets hang off; the correspondent
  // behind the HA on its own link
  const mrSite = (mr: 'mr' | 'mr2', rSide: string, subnet: string) =>
    site({ ns: mr, dev: 'up0', router: 'r', routerDev: rSide, subnet });
  const sites = [mrSite('mr', 'r-mr', '2001:db8:a::'), mrSite('mr2', 'r-mr2', '2001:db8:b::')];
  const haSite = site({ ns: 'r', dev: 'r-ha', router: 'ha', routerDev: 'ha-up', subnet: '2001:db8:1::' });
  const cnSite = site({ ns: 'cn', dev: 'cn0', router: 'ha', routerDev: 'ha-cn', subnet: '2001:db8:c::' });
  const guestSide = (guest: 'g' | 'g2', mr: 'mr' | 'mr2') => ({
    a: { ns: guest, dev: 'g0', addresses: [`${GUEST}/64`] },
    b: { ns: mr, dev: 'br-port', master: 'ofl-net1' },
  });
  return lab.build({
    namespaces: [
      { name: 'g' },
      { name: 'g2' },
      { name: 'mr', forwarding: true },
      { name: 'mr2', forwarding: true },
      { name: 'r', forwarding: true },
      { name: 'ha', forwarding: true },
      { name: 'cn' },
    ],
    bridges: (['mr', 'mr2'] as const).map((ns) => ({
      ns,
      name: 'ofl-net1',
      mac: '02:00:5e:10:00:01',
      addresses: ['2001:db8:100::1/64'],
    })),
    veths: [
      haSite.veth,
      cnSite.veth,
      ...sites.map((s) => s.veth),
      guestSide('g', 'mr'),
      guestSide('g2', 'mr2'),
    ],
    addresses: [{ ns: 'ha', dev: 'lo', address: `${HA}/128` }],
    routes: [
      { ns: 'ha', to: 'default', via: '2001:db8:1::2' },
      { ns: 'r', to: `${HA}/128`, via: '2001:db8:1::1' },
      { ns: 'r', to: '2001:db8:c::/64', via: '2001:db8:1::1' },
      ...sites.map((s) => s.route),
      cnSite.route,
      { ns: 'g', to: 'default', via: '2001:db8:100::1' },
      { ns: 'g2', to: 'default', via: '2001:db8:100::1' },
    ],
  });
}

const mrRoutes = (coa: string): MobileRouterRoutes => ({
  network: 'net1',
  haAddress: HA,
  coa,
  uplink: 'up0',
  bridge: 'ofl-net1',
  prefixes: [MNP],
  table: 100,
  rulePref: 100,
});

const backends = await dataplaneBackends();

/** Packets the HA's data plane dropped as not from the binding's CoA (names differ by backend). */
async function haDrops(dp: { packetCounters?(): Promise<Record<string, number>> }): Promise<number> {
  const c = (await dp.packetCounters?.()) ?? {};
  return (
    (c['unregisteredCoa'] ?? 0) +
    (c['innerSource'] ?? 0) +
    (c['decapNoBinding'] ?? 0) +
    (c['decapWrongSource'] ?? 0)
  );
}

for (const backend of backends) {
  describe(`${backend} data plane between namespaces`, { skip: needsRoot() }, () => {
    test('tunnel, clamping, handover forwarding, checks, CoA change, reconcile, flush', async (t) => {
      await withNetns((lab) => scenario(t, lab, backend, lab.runDir), { backend });
    });
  });
}

// The backends are identical on the wire: a home agent on one and mobile routers on the other interoperate.
const pairs: [Backend, Backend][] = [
  ['bpf', 'seg6'],
  ['seg6', 'bpf'],
];
for (const [haBackend, mrBackend] of pairs) {
  const both = backends.includes(haBackend) && backends.includes(mrBackend);
  test(`mixed backends: HA ${haBackend}, mobile routers ${mrBackend}`, {
    skip: both ? needsRoot() : `needs both bpf and seg6; this kernel runs ${backends.join(', ') || 'none'}`,
  }, async (t) => {
    await withNetns((lab) => interop(t, lab, haBackend, mrBackend), { backend: haBackend });
  });
}

/** Echo servers on both guests and the correspondent; `received(name)` counts what each got. */
async function echoServers(lab: NetnsLab, ns: Awaited<ReturnType<typeof topology>>) {
  const logs: Record<'g' | 'g2' | 'cn', string> = { g: '', g2: '', cn: '' };
  for (const [n, name] of [
    [ns.g, 'g'],
    [ns.g2, 'g2'],
    [ns.cn, 'cn'],
  ] as const) {
    const server = lab.spawn(n, ['node', '-e', UDP_ECHO, '7', name]);
    server.stdout?.on('data', (d) => (logs[name] += d));
    await waitFor(server, /ready/);
  }
  const received = (name: 'g' | 'g2' | 'cn') =>
    logs[name].split('\n').filter((l) => l.startsWith('rx ')).length;
  return { logs, received };
}

async function interop(t: test.TestContext, lab: NetnsLab, haBackend: Backend, mrBackend: Backend) {
  const ns = await topology(lab);
  const haDp = createHomeAgentDataplane(
    haBackend,
    { runner: new ExecRunner({ netns: ns.ha }) },
    {
      haAddress: HA,
      uplink: 'ha-up',
      table: 200,
      mss: 1400,
      tunnelled: [MNP, `${HOA}/128`],
      runDir: join(lab.runDir, 'ha'),
    },
  );
  await haDp.init();
  await haDp.reconcile([binding(COA1)]);
  for (const [netns, coa] of [
    [ns.mr, COA1],
    [ns.mr2, COA2],
  ] as const) {
    const dp = createMobileRouterDataplane(
      mrBackend,
      { runner: new ExecRunner({ netns }) },
      { mss: 1400, runDir: join(lab.runDir, netns) },
    );
    await dp.initHost({ coa, haAddress: HA, uplink: 'up0', table: 200 });
    await dp.activate(mrRoutes(coa));
  }
  const { received } = await echoServers(lab, ns);
  await t.test('UDP both directions, small and 1400-byte payloads', async () => {
    assert.deepEqual(await udp(lab, ns.cn, GUEST, 64), ['g:64', 'g:64', 'g:64']);
    assert.deepEqual(await udp(lab, ns.g, CN, 1400), ['cn:1400', 'cn:1400', 'cn:1400']);
  });
  await t.test('TCP bulk both directions', async () => {
    assert.ok((await iperf(lab, ns.g, ns.cn, GUEST, false)) > 10e6);
    assert.ok((await iperf(lab, ns.g, ns.cn, GUEST, true)) > 10e6);
  });
  await t.test('a CoA change moves traffic to the other mobile router', async () => {
    await haDp.update([{ op: 'set', binding: binding(COA2) }]);
    assert.deepEqual(await udp(lab, ns.cn, GUEST, 64), ['g2:64', 'g2:64', 'g2:64']);
    const before = received('cn');
    assert.deepEqual(await udp(lab, ns.g, CN, 64), []);
    assert.equal(received('cn'), before, 'the old CoA is no longer accepted');
  });
}

async function scenario(t: test.TestContext, lab: NetnsLab, backend: Backend, runDir: string): Promise<void> {
  const ns = await topology(lab);
  const haRunner = new Tap(new ExecRunner({ netns: ns.ha }));
  const haOptions: HomeAgentDataplaneOptions = {
    haAddress: HA,
    uplink: 'ha-up',
    table: 200,
    mss: 1400,
    tunnelled: [MNP, `${HOA}/128`],
    runDir: join(runDir, 'ha'),
  };
  const haDp = createHomeAgentDataplane(backend, { runner: haRunner }, haOptions);
  const mrOf = (netns: string, name: string, mss = 1400) =>
    createMobileRouterDataplane(
      backend,
      { runner: new ExecRunner({ netns }) },
      { mss, runDir: join(runDir, name) },
    );
  const mrDp = mrOf(ns.mr, 'mr');
  const mr2Dp = mrOf(ns.mr2, 'mr2');
  const haExec = (argv: string[]) => lab.exec(ns.ha, argv).then((r) => r.stdout);
  await haDp.init();
  await haDp.init(); // idempotent
  await haDp.reconcile([binding(COA1)]);
  for (const [dp, coa] of [
    [mrDp, COA1],
    [mr2Dp, COA2],
  ] as const) {
    await dp.initHost({ coa, haAddress: HA, uplink: 'up0', table: 200 });
    await dp.initHost({ coa, haAddress: HA, uplink: 'up0', table: 200 });
    await dp.activate(mrRoutes(coa));
  }
  // what each echo server received ("rx <source> <bytes>" lines)
  const { logs, received } = await echoServers(lab, ns);
  const cnReceived = () => received('cn');

  await t.test('UDP both directions, small and 1400-byte payloads', async () => {
    assert.deepEqual(await udp(lab, ns.cn, GUEST, 64), ['g:64', 'g:64', 'g:64']);
    assert.deepEqual(await udp(lab, ns.g, CN, 64), ['cn:64', 'cn:64', 'cn:64']);
    assert.deepEqual(await udp(lab, ns.cn, GUEST, 1400), ['g:1400', 'g:1400', 'g:1400']);
    assert.deepEqual(await udp(lab, ns.g, CN, 1400), ['cn:1400', 'cn:1400', 'cn:1400']);
  });

  await t.test('TCP bulk both directions (MSS clamped on HA and MR)', async () => {
    const down = await iperf(lab, ns.g, ns.cn, GUEST, false);
    const up = await iperf(lab, ns.g, ns.cn, GUEST, true);
    t.diagnostic(
      `iperf3 cn->guest ${(down / 2 / 1e6).toFixed(0)} MB/s, guest->cn ${(up / 2 / 1e6).toFixed(0)} MB/s`,
    );
    assert.ok(down > 10e6, `cn -> guest moved only ${down} bytes`);
    assert.ok(up > 10e6, `guest -> cn moved only ${up} bytes`);
    if (backend === 'bpf') {
      // decapsulated GSO packets went past the bridge, straight to the guest's port
      const fast = (await mrDp.packetCounters?.())?.['bridgeFastPath'] ?? 0;
      assert.ok(fast > 1000, `bridge fast path taken ${fast} times`);
    }
  });

  const clampTitle =
    backend === 'seg6'
      ? 'without clamping, full-size TCP segments are lost in the tunnel (seg6 encapsulates on input)'
      : 'without clamping, TCP still flows: the tunnel routes send Packet Too Big';
  await t.test(clampTitle, async () => {
    const noClampHa = createHomeAgentDataplane(backend, { runner: haRunner }, { ...haOptions, mss: 0 });
    const noClampMr = mrOf(ns.mr, 'mr', 0);
    await noClampHa.init();
    await noClampMr.initHost({ coa: COA1, haAddress: HA, uplink: 'up0', table: 200 });
    const down = await iperf(lab, ns.g, ns.cn, GUEST, false);
    if (backend === 'seg6') assert.ok(down < 1e6, `expected a stall without clamping, moved ${down} bytes`);
    else assert.ok(down > 10e6, `cn -> guest moved only ${down} bytes without clamping`);
    await haDp.init();
    await mrDp.initHost({ coa: COA1, haAddress: HA, uplink: 'up0', table: 200 });
    assert.deepEqual(await udp(lab, ns.cn, GUEST, 64, 1), ['g:64']);
  });

  await t.test(
    'handover forwarding: the old MR tunnels what the HA still sends on to the new one',
    async () => {
      // (the MRs reach each other's subnet through the router, as hosts do)
      const [g0, g20] = [received('g'), received('g2')];
      await mrDp.forward(mrRoutes(COA1), COA2);
      // The new MR does not accept tunnelled packets from the old one yet: lost, and not to the old guest.
      await udp(lab, ns.cn, GUEST, 64);
      assert.equal(received('g'), g0, 'the old host no longer delivers locally');
      assert.equal(received('g2'), g20, 'the new host drops what it was not told to accept');
      await mr2Dp.acceptTunnelFrom({ coa: COA2, table: 200 }, COA1);
      await udp(lab, ns.cn, GUEST, 1400); // full size: the forwarded packet fits the uplink MTU too
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(received('g2'), g20 + 3, logs.g2);
      assert.equal(received('g'), g0);
      // Coming back (activate) ends the forwarding; the next initHost removes the accept rule.
      await mrDp.activate(mrRoutes(COA1));
      await mr2Dp.initHost({ coa: COA2, haAddress: HA, uplink: 'up0', table: 200 });
      assert.deepEqual(await udp(lab, ns.cn, GUEST, 64), ['g:64', 'g:64', 'g:64']);
      const rules = await lab.exec(ns.mr2, ['ip', '-6', 'rule', 'show']);
      assert.doesNotMatch(rules.stdout, /from 2001:db8:a::2/);
      assert.equal(
        (await lab.exec(ns.mr, ['ip', '-6', 'route', 'show', 'table', '100', MNP])).stdout.trim(),
        '',
      );
    },
  );

  await t.test('tunnelled packets from an unregistered CoA are dropped', async () => {
    const before = await haDrops(haDp);
    const received = cnReceived();
    assert.deepEqual(await udp(lab, ns.g2, CN, 64), []);
    assert.equal(cnReceived(), received, 'nothing reached the correspondent');
    const after = await haDrops(haDp);
    assert.ok(after >= before + 3, JSON.stringify({ before, after }));
  });

  await t.test('decapsulated packets with an inner source outside the MNPs are dropped', async () => {
    const SPOOF = '2001:db8:bad::10';
    await lab.addr(ns.g, 'g0', `${SPOOF}/128`);
    // test scaffolding: the MR tunnels the spoofed source too (as the egress of another network)
    const spoofNet = { ...mrRoutes(COA1), network: 'spoof', prefixes: ['2001:db8:bad::/64'], table: 101 };
    await mrDp.activate({ ...spoofNet, rulePref: 101 });
    const before = await haDrops(haDp);
    assert.deepEqual(await udp(lab, ns.g, CN, 64, 3, SPOOF), []);
    assert.doesNotMatch(logs.cn, /rx 2001:db8:bad::10 /, 'nothing reached the correspondent');
    const after = await haDrops(haDp);
    assert.ok(after >= before + 3, JSON.stringify({ before, after }));
    await mrDp.deactivate({ ...spoofNet, rulePref: 101 });
    await mrDp.activate(mrRoutes(COA1)); // (seg6 removes every rule on the network's bridge)
    // the HoA is an allowed inner source of its binding
    assert.deepEqual(await udp(lab, ns.g, CN, 64, 1), ['cn:64']);
  });

  await t.test('a CoA change is made in place and moves traffic', async () => {
    const routeOf = async (dst: string) => (await haExec(['ip', '-6', 'route', 'show', dst])).trim();
    if (backend === 'seg6') assert.match(await routeOf(MNP), new RegExp(`segs 1 \\[ ${COA1} \\]`));
    haRunner.calls.length = 0;
    await haDp.update([{ op: 'set', binding: binding(COA2) }]);
    if (backend === 'seg6') {
      assert.match(await routeOf(MNP), new RegExp(`segs 1 \\[ ${COA2} \\]`));
      assert.match(await routeOf(HOA), new RegExp(`segs 1 \\[ ${COA2} \\]`));
      const batch = haRunner.calls.map((c) => c.input ?? '').join('');
      assert.match(batch, /route replace 2001:db8:100::\/64 /);
      assert.doesNotMatch(batch, /route del/);
    } else {
      // map entries only: not one process
      assert.deepEqual(
        haRunner.calls.map((c) => c.argv.join(' ')),
        [],
      );
    }
    assert.deepEqual(await udp(lab, ns.cn, GUEST, 64), ['g2:64', 'g2:64', 'g2:64']);
    assert.deepEqual(await udp(lab, ns.g2, CN, 1400), ['cn:1400', 'cn:1400', 'cn:1400']);
    const received = cnReceived();
    assert.deepEqual(await udp(lab, ns.g, CN, 64), []);
    assert.equal(cnReceived(), received, 'the old CoA is no longer registered');
  });

  await t.test('reconcile([]) removes the routes and elements of removed bindings', async () => {
    await haDp.reconcile([]);
    if (backend === 'seg6') {
      assert.equal((await haExec(['ip', '-6', 'route', 'show', 'proto', String(RT_PROTO)])).trim(), '');
      const table = await haExec(['nft', 'list', 'table', 'ip6', 'offlink']);
      assert.doesNotMatch(table, /2001:db8:b::2|2001:db8:100::/);
      assert.deepEqual(await udp(lab, ns.cn, GUEST, 64, 1), []);
    } else {
      // the aggregate routes stay (they are per prefix table, not per binding); without a map entry the
      // encapsulation program drops what they carry
      const before = (await haDp.packetCounters!())['encapNoBinding']!;
      assert.deepEqual(await udp(lab, ns.cn, GUEST, 64, 1), []);
      assert.equal((await haDp.packetCounters!())['encapNoBinding'], before + 1);
    }
  });

  await t.test('flush leaves no offlink routes, rules or table', async () => {
    await haDp.reconcile([binding(COA2)]);
    await haDp.flush();
    await haDp.flush(); // idempotent
    assert.equal(
      (await haExec(['ip', '-6', 'route', 'show', 'table', 'all', 'proto', String(RT_PROTO)])).trim(),
      '',
    );
    const rules = await haExec(['ip', '-6', 'rule', 'show']);
    assert.doesNotMatch(rules, new RegExp(`proto ${RT_PROTO}`));
    assert.match(rules, /^0:\s+from all lookup local/m);
    assert.doesNotMatch(await haExec(['nft', 'list', 'tables']), /offlink/);
    if (backend === 'seg6') assert.match(await haExec(['ip', 'sr', 'tunsrc', 'show']), /tunsrc addr ::$/m);
    else {
      assert.equal((await haExec(['tc', 'filter', 'show', 'dev', 'ha-up', 'ingress'])).trim(), '');
      assert.doesNotMatch(await haExec(['tc', 'qdisc', 'show', 'dev', 'ha-up']), /clsact/);
      assert.doesNotMatch(readFileSync('/proc/self/mountinfo', 'utf8'), new RegExp(`${runDir}/ha/`));
    }
    await mrDp.deactivate(mrRoutes(COA1));
    await mrDp.flushHost();
    const mrRules = await lab.exec(ns.mr, ['ip', '-6', 'rule', 'show']).then((r) => r.stdout);
    assert.doesNotMatch(mrRules, new RegExp(`proto ${RT_PROTO}|lookup 100`));
    const mrRoutesLeft = await lab.exec(ns.mr, [
      'ip',
      '-6',
      'route',
      'show',
      'table',
      'all',
      'proto',
      String(RT_PROTO),
    ]);
    assert.equal(mrRoutesLeft.stdout.trim(), '');
  });
}
