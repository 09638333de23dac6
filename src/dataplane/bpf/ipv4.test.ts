// IPv4 prefixes of dual-stack networks (RFC 5555) on the eBPF backend, against FakeBpf and the typed fake
// kernel: IPv4 routes and rules in the IPv4 tables, map entries keyed ::ffff:a.b.c.d, the kernel probe for
// IPv4 decapsulation, and seg6's refusal (the real kernel: test/dataplane-ipv4.test.ts).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { FakeKernel } from '../fake-kernel.ts';
import { opFamily } from '../kernel.ts';
import { Seg6HomeAgentDataplane, Seg6MobileRouterDataplane } from '../seg6.ts';
import type { MobileRouterRoutes, TunnelBinding } from '../types.ts';
import { FakeBpf } from './fake.ts';
import { BpfHomeAgentDataplane } from './ha.ts';
import { BpfMobileRouterDataplane } from './mr.ts';

const HA = '2001:db8:ffff::1';
const COA = '2001:db8:a::2';
const binding = (coa: string, prefixes = ['2001:db8:100::/64', '10.1.0.0/24']): TunnelBinding => ({
  hoa: '2001:db8:ffff::101',
  coa,
  prefixes,
  id: 1,
});
const routes = (prefixes = ['2001:db8:100::/64', '10.1.0.0/24']): MobileRouterRoutes => ({
  network: 'net1',
  haAddress: HA,
  coa: COA,
  uplink: 'up0',
  bridge: 'ofl-net1',
  prefixes,
  table: 100,
  rulePref: 2000,
});

function maps(fake: FakeBpf, bpffs: string) {
  const m = fake.openMaps(bpffs);
  try {
    return {
      encapDst: Object.fromEntries(m.encapDst.entries()),
      encapSrc: Object.fromEntries(m.encapSrc.entries()),
      ingress: Object.fromEntries(m.ingress.entries()),
    };
  } finally {
    m.close();
  }
}

/** The raw LPM key of an IPv4 prefix as the program looks it up: ::ffff:a.b.c.d, length 96 + n. */
function rawKeys(fake: FakeBpf, bpffs: string, map: 'ofl_encap_dst' | 'ofl_ingress'): string[] {
  const id = fake.pins.get(`${bpffs}/tc/globals/${map}`)!;
  return [...fake.maps.get(id)!.entries.keys()];
}

describe('BpfHomeAgentDataplane, IPv4 prefixes', () => {
  let dir: string;
  let fake: FakeBpf;
  let k: FakeKernel;
  let bpffs: string;
  const make = (
    tunnelled = ['2001:db8:100::/64', '10.1.0.0/25', '10.1.0.128/25', '2001:db8:ffff::100/126'],
  ) =>
    new BpfHomeAgentDataplane(
      { kernel: k, sys: fake, object: '/x/o.bpf.o' },
      { haAddress: HA, uplink: 'ha-up', table: 200, mss: 1400, tunnelled, runDir: dir },
    );

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'offlink-bpf-ipv4-'));
    fake = new FakeBpf();
    k = new FakeKernel({ onLoad: (mount) => fake.load(mount) }).addLink('ha-up');
    bpffs = join(dir, 'bpf', 'ha-4026531840');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('init: IPv4 prefixes of the prefix table are one aggregated encap bpf route in the IPv4 main table', async () => {
    await make().init();
    assert.deepEqual(
      k.netOps().map((op) => (op.op === 'replace-route' ? op.route.dst : op.op)),
      ['2001:db8:100::/64', '2001:db8:ffff::100/126', '10.1.0.0/24'],
    );
    assert.equal((await k.routes('main', 4)).length, 1);
    assert.deepEqual(
      (await k.routes('main', 4)).map((r) => [r.dst, r.dev, r.encap?.type]),
      [['10.1.0.0/24', 'ha-up', 'bpf']],
    );
  });

  test('init: TCP MSS clamping for IPv4 SYNs in `table ip offlink`, 20 bytes above the IPv6 MSS', async () => {
    await make().init();
    const v4 = k.nftOps().find((op) => op.op === 'define-table' && op.table.family === 'ip');
    assert.ok(v4 && v4.op === 'define-table');
    assert.deepEqual(
      v4.table.chains[0]!.rules.map((r) => r.statement),
      [
        'oifname "ha-up" tcp flags syn tcp option maxseg size > 1420 tcp option maxseg size set 1420',
        'iifname "ha-up" tcp flags syn tcp option maxseg size > 1420 tcp option maxseg size set 1420',
      ],
    );
  });

  test('a binding with an IPv4 prefix: encapsulation and ingress entries keyed ::ffff:a.b.c.d, no process', async () => {
    const dp = make();
    await dp.init();
    k.clear();
    await dp.update([{ op: 'set', binding: binding(COA) }]);
    assert.deepEqual(k.calls, []);
    const m = maps(fake, bpffs);
    assert.deepEqual(m.encapDst['10.1.0.0/24'], { src: HA, dst: COA });
    assert.equal(m.ingress['10.1.0.0/24'], COA);
    // prefix length 96 + 24 = 120 (host order), then ::ffff:10.1.0.0
    assert.ok(rawKeys(fake, bpffs, 'ofl_ingress').includes(`78000000${'00'.repeat(10)}ffff0a010000`));
  });

  test('an IPv4 prefix outside the prefix table gets a route of its own, in the IPv4 table', async () => {
    const dp = make(['2001:db8:100::/64']);
    await dp.init();
    k.clear();
    await dp.update([{ op: 'set', binding: binding(COA, ['2001:db8:100::/64', '10.7.0.0/16']) }]);
    assert.deepEqual(
      k
        .netOps()
        .map((op) => (op.op === 'replace-route' ? op.route.dst : op.op))
        .sort(),
      ['10.7.0.0/16', '2001:db8:ffff::101/128'],
    );
    assert.deepEqual(
      (await k.routes('main', 4)).map((r) => r.dst),
      ['10.7.0.0/16'],
    );
  });

  test('a kernel without BPF_F_ADJ_ROOM_DECAP_L3_IPV4: a clear error, nothing installed for the binding', async () => {
    fake.decapIPv4 = false;
    const dp = make(['2001:db8:100::/64']);
    await dp.init();
    await assert.rejects(dp.update([{ op: 'set', binding: binding(COA) }]), {
      code: 'ERR_DATAPLANE_IPV4',
      message: /10\.1\.0\.0\/24.*need Linux >= 6\.3.*BPF_F_ADJ_ROOM_DECAP_L3_IPV4/,
    });
    assert.deepEqual(maps(fake, bpffs).encapDst, {});
    // IPv6-only bindings still work there
    await dp.update([{ op: 'set', binding: binding(COA, ['2001:db8:100::/64']) }]);
    assert.deepEqual(maps(fake, bpffs).encapDst['2001:db8:100::/64'], { src: HA, dst: COA });
    await assert.rejects(make().init(), { code: 'ERR_DATAPLANE_IPV4' });
  });

  test('an IPv6-only home agent never probes for IPv4 decapsulation', async () => {
    const dp = make(['2001:db8:100::/64']);
    await dp.init();
    await dp.update([{ op: 'set', binding: binding(COA, ['2001:db8:100::/64']) }]);
    assert.ok(!fake.calls.includes('adjustRoomProbe'));
  });

  test('flush removes the IPv4 routes and both clamping tables', async () => {
    const dp = make();
    await dp.init();
    await dp.flush();
    assert.deepEqual(await k.routes('main', 4), []);
    assert.deepEqual(await k.routes('main'), []);
    assert.deepEqual([...k.nftTables.keys()], []);
  });
});

describe('BpfMobileRouterDataplane, IPv4 prefixes', () => {
  let dir: string;
  let fake: FakeBpf;
  let k: FakeKernel;
  let dp: BpfMobileRouterDataplane;
  let bpffs: string;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'offlink-bpf-mr-ipv4-'));
    fake = new FakeBpf();
    k = new FakeKernel({ onLoad: (mount) => fake.load(mount) });
    k.netns = '7';
    k.addLink('up0', { index: 2 }).addLink('ofl-net1', { index: 5, bridge: true });
    dp = new BpfMobileRouterDataplane(
      { kernel: k, sys: fake, object: '/x/o.bpf.o' },
      { mss: 1400, runDir: dir },
    );
    bpffs = join(dir, 'bpf', 'mr-7');
    await dp.initHost({ coa: COA, haAddress: HA, uplink: 'up0', table: 200 });
  });
  afterEach(async () => {
    await dp.flushHost();
    rmSync(dir, { recursive: true, force: true });
  });

  test('activate: the IPv4 rule from the bridge and an IPv4 default route into the tunnel, like IPv6', async () => {
    k.clear();
    await dp.activate(routes());
    const encap = { type: 'bpf', object: '/x/o.bpf.o', section: 'lwt_xmit', headroom: 40, bpffs };
    assert.deepEqual(k.netOps(), [
      { op: 'add-rule', rule: { priority: 2000, from: '2001:db8:100::/64', iif: 'ofl-net1', table: 100 } },
      { op: 'replace-route', route: { dst: '::/0', table: 100, dev: 'up0', encap } },
      { op: 'add-rule', rule: { priority: 2000, from: '10.1.0.0/24', iif: 'ofl-net1', table: 100 } },
      { op: 'replace-route', route: { dst: '0.0.0.0/0', table: 100, dev: 'up0', encap } },
    ]);
    assert.deepEqual(maps(fake, bpffs).encapSrc, {
      '2001:db8:100::/64': { src: COA, dst: HA },
      '10.1.0.0/24': { src: COA, dst: HA },
    });
  });

  test('an IPv6-only network makes no IPv4 ops', async () => {
    k.clear();
    await dp.activate(routes(['2001:db8:100::/64']));
    await dp.deactivate(routes(['2001:db8:100::/64']));
    assert.deepEqual(
      k.netOps().filter((op) => opFamily(op) === 4),
      [],
    );
  });

  test('dropping the IPv4 prefix, and deactivate, remove the IPv4 rule and route', async () => {
    await dp.activate(routes());
    await dp.activate(routes(['2001:db8:100::/64']));
    assert.deepEqual(await k.rules(4), []);
    assert.deepEqual(await k.routes('all', 4), []);
    assert.deepEqual(Object.keys(maps(fake, bpffs).encapSrc), ['2001:db8:100::/64']);
    await dp.activate(routes());
    await dp.deactivate(routes());
    assert.deepEqual(await k.rules(4), []);
    assert.deepEqual(await k.routes('all', 4), []);
  });

  test('a kernel without IPv4 decapsulation: activate with an IPv4 prefix fails clearly, installs nothing', async () => {
    fake.decapIPv4 = false;
    const old = new BpfMobileRouterDataplane(
      { kernel: k, sys: fake, object: '/x/o.bpf.o' },
      { mss: 1400, runDir: dir },
    );
    await old.initHost({ coa: COA, haAddress: HA, uplink: 'up0', table: 200 });
    k.clear();
    await assert.rejects(old.activate(routes()), { code: 'ERR_DATAPLANE_IPV4' });
    assert.deepEqual(k.netOps(), []);
  });
});

describe('seg6 refuses IPv4 prefixes (it tunnels IPv6 only here)', () => {
  test('home agent: a binding with an IPv4 prefix is refused before any kernel call', async () => {
    const k = new FakeKernel();
    const dp = new Seg6HomeAgentDataplane(
      { kernel: k },
      { haAddress: HA, uplink: 'up0', table: 200, mss: 1400 },
    );
    await dp.init();
    k.clear();
    await assert.rejects(dp.update([{ op: 'set', binding: binding(COA) }]), {
      code: 'ERR_DATAPLANE_IPV4',
      message: /seg6 data plane tunnels IPv6 prefixes only; IPv4 prefixes \(10\.1\.0\.0\/24\)/,
    });
    await assert.rejects(dp.reconcile([binding(COA)]), { code: 'ERR_DATAPLANE_IPV4' });
    assert.deepEqual(k.writes(), []);
  });

  test('mobile router: activating a network with an IPv4 prefix is refused', async () => {
    const k = new FakeKernel();
    const dp = new Seg6MobileRouterDataplane({ kernel: k }, { mss: 1400 });
    await dp.initHost({ coa: COA, haAddress: HA, uplink: 'up0', table: 200 });
    k.clear();
    await assert.rejects(dp.activate(routes()), { code: 'ERR_DATAPLANE_IPV4' });
    await assert.rejects(dp.forward(routes(), '2001:db8:b::2'), { code: 'ERR_DATAPLANE_IPV4' });
    assert.deepEqual(k.writes(), []);
  });
});
