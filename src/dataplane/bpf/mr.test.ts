// The eBPF mobile router data plane against FakeBpf and the typed fake kernel: a network's rules and route
// go in once; CoA changes and a handover's forwarding and trust are map entries only.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { FakeKernel } from '../fake-kernel.ts';
import type { MobileRouterRoutes } from '../types.ts';
import { FakeBpf } from './fake.ts';
import { BpfMobileRouterDataplane } from './mr.ts';

const HA = '2001:db8:ffff::1';
const COA = '2001:db8:a::2';
const NEW_HOST = '2001:db8:b::2';
const routes = (coa = COA): MobileRouterRoutes => ({
  network: 'net1',
  haAddress: HA,
  coa,
  uplink: 'up0',
  bridge: 'ofl-net1',
  prefixes: ['2001:db8:100::/64'],
  table: 100,
  rulePref: 2000,
});
const host = (coa = COA) => ({ coa, haAddress: HA, uplink: 'up0', table: 200 });

/** The host the mobile router runs on: an uplink, the network's bridge with one guest port. */
function kernel(fake: FakeBpf): FakeKernel {
  const k = new FakeKernel({ onLoad: (bpffs) => fake.load(bpffs) });
  k.netns = '7';
  k.addLink('up0', { index: 2 })
    .addLink('ofl-net1', { index: 5, bridge: true })
    .addLink('vg-guest', { index: 9, master: 'ofl-net1' });
  k.fdbEntries = [
    { mac: '52:54:00:00:00:0a', dev: 'vg-guest', master: 'ofl-net1', permanent: false },
    { mac: 'd6:3a:f3:9c:79:17', dev: 'vg-guest', master: 'ofl-net1', permanent: true },
    { mac: '33:33:00:00:00:01', dev: 'ofl-net1', permanent: true },
  ];
  return k;
}

const bpfEncap = (bpffs: string) => ({
  type: 'bpf' as const,
  object: '/x/o.bpf.o',
  section: 'lwt_xmit',
  headroom: 40,
  bpffs,
});

function contents(fake: FakeBpf, bpffs: string) {
  const maps = fake.openMaps(bpffs);
  try {
    return {
      encapSrc: Object.fromEntries(maps.encapSrc.entries()),
      encapDst: Object.fromEntries(maps.encapDst.entries()),
      local: maps.local.values(),
      peers: maps.peers.values().sort(),
      fdb: maps.fdb?.entries() ?? [],
    };
  } finally {
    maps.close();
  }
}

describe('BpfMobileRouterDataplane', () => {
  let dir: string;
  let fake: FakeBpf;
  let k: FakeKernel;
  let dp: BpfMobileRouterDataplane;
  let bpffs: string;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'offlink-bpf-mr-'));
    fake = new FakeBpf();
    k = kernel(fake);
    dp = new BpfMobileRouterDataplane(
      { kernel: k, sys: fake, object: '/x/o.bpf.o' },
      { mss: 1400, runDir: dir },
    );
    bpffs = join(dir, 'bpf', 'mr-7');
    await dp.initHost(host());
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('initHost: the CoA is the tunnel endpoint, the home agent the trusted peer', () => {
    assert.deepEqual(contents(fake, bpffs), {
      encapSrc: {},
      encapDst: {},
      local: [COA],
      peers: [HA],
      fdb: [],
    });
    assert.deepEqual(k.tc.get('up0 ingress'), {
      dev: 'up0',
      hook: 'ingress',
      object: '/x/o.bpf.o',
      section: 'tc',
      bpffs,
      id: 1,
    });
  });

  test('activate: rule and route once, then the network egress is a map entry', async () => {
    k.clear();
    await dp.activate(routes());
    assert.deepEqual(k.writes(), [
      {
        call: 'apply',
        ops: [
          {
            op: 'add-rule',
            rule: { priority: 2000, from: '2001:db8:100::/64', iif: 'ofl-net1', table: 100 },
          },
          { op: 'replace-route', route: { dst: '::/0', table: 100, dev: 'up0', encap: bpfEncap(bpffs) } },
        ],
      },
      {
        call: 'attachProgram',
        program: { dev: 'ofl-net1', hook: 'egress', object: '/x/o.bpf.o', section: 'tc/bridge', bpffs },
      },
    ]);
    k.clear();
    await dp.activate(routes());
    assert.deepEqual(k.writes(), [], 'activating again: no kernel change beyond the maps');
    assert.deepEqual(contents(fake, bpffs).encapSrc, { '2001:db8:100::/64': { src: COA, dst: HA } });
  });

  test("the bridge fast path's map mirrors the guests of the bridge's forwarding database", async () => {
    await dp.activate(routes());
    // the guest's dynamic entry only: not the port's own (permanent) address, not multicast
    assert.deepEqual(contents(fake, bpffs).fdb, [{ bridge: 5, mac: '52:54:00:00:00:0a', port: 9 }]);
    await dp.deactivate(routes());
    assert.deepEqual(contents(fake, bpffs).fdb, []);
  });

  test('forwarding-database changes the kernel announces reach the map', async () => {
    await dp.activate(routes());
    const runPendingWork = async () => {
      for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
    };
    k.emitFdb({ deleted: false, mac: '52:54:00:00:00:0b', dev: 'vg-guest', master: 'ofl-net1' });
    k.emitFdb({ deleted: false, mac: '52:54:00:00:00:0c', dev: 'vg-guest', master: 'other-br' });
    await runPendingWork();
    assert.deepEqual(
      contents(fake, bpffs)
        .fdb.map((e) => e.mac)
        .sort(),
      ['52:54:00:00:00:0a', '52:54:00:00:00:0b'],
    );
    k.emitFdb({ deleted: true, mac: '52:54:00:00:00:0a', dev: 'vg-guest', master: 'ofl-net1' });
    await runPendingWork();
    assert.deepEqual(contents(fake, bpffs).fdb, [{ bridge: 5, mac: '52:54:00:00:00:0b', port: 9 }]);
  });

  test('a CoA change re-points the entries; no process for the network', async () => {
    await dp.activate(routes());
    k.clear();
    await dp.initHost(host('2001:db8:c::2'));
    await dp.activate(routes('2001:db8:c::2'));
    // the host's clamping table is rewritten (same content); the network's rule, route and program are not
    assert.deepEqual(
      k.writes().map((call) => call.call),
      ['nft'],
    );
    const maps = contents(fake, bpffs);
    assert.deepEqual(maps.local, ['2001:db8:c::2']);
    assert.deepEqual(maps.encapSrc, { '2001:db8:100::/64': { src: '2001:db8:c::2', dst: HA } });
  });

  test('handover: the old host forwards, the new one trusts it; all map entries', async () => {
    await dp.activate(routes());
    k.clear();
    await dp.forward(routes(), NEW_HOST);
    await dp.acceptTunnelFrom({ coa: COA, table: 200 }, '2001:db8:d::2');
    assert.deepEqual(k.calls, []);
    const maps = contents(fake, bpffs);
    assert.deepEqual(maps.encapDst, { '2001:db8:100::/64': { src: COA, dst: NEW_HOST } });
    assert.deepEqual(maps.peers, ['2001:db8:d::2', HA]);
    // the guests come back: activation ends the forwarding; the next initHost the extra trust
    await dp.activate(routes());
    await dp.initHost(host());
    assert.deepEqual(contents(fake, bpffs).encapDst, {});
    assert.deepEqual(contents(fake, bpffs).peers, [HA]);
  });

  test('deactivate: entries, rules and route of the network go', async () => {
    await dp.activate(routes());
    k.clear();
    await dp.deactivate(routes());
    assert.deepEqual(contents(fake, bpffs).encapSrc, {});
    assert.deepEqual(k.netOps(), [
      { op: 'delete-rule', rule: { priority: 2000, from: '2001:db8:100::/64', iif: 'ofl-net1', table: 100 } },
      { op: 'delete-route', dst: '::/0', table: 100 },
    ]);
    assert.deepEqual(k.table(100).size, 0);
    assert.ok(!k.ruleList.some((r) => r.ours && r.table === 100));
  });

  test('bad input is refused before anything changes', async () => {
    k.clear();
    await assert.rejects(dp.activate({ ...routes(), rulePref: 1000 }), /bad rule preference/);
    await assert.rejects(dp.forward(routes(), 'not-an-address'), /invalid IPv6 address/);
    await assert.rejects(dp.initHost({ ...host(), uplink: 'bad name' }), /bad interface name/);
    assert.deepEqual(k.calls, []);
  });
});
