// The eBPF home agent data plane against FakeBpf and the typed fake kernel: what goes into the maps for each
// binding change, and that binding changes spawn no process (the real kernel: test/dataplane.test.ts).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { BindingConflictError } from '../bindings.ts';
import { FakeKernel } from '../fake-kernel.ts';
import type { TunnelBinding } from '../types.ts';
import { FakeBpf } from './fake.ts';
import { BpfHomeAgentDataplane } from './ha.ts';

const HA = '2001:db8:ffff::1';
const b1 = (coa: string, prefixes = ['2001:db8:100::/64']): TunnelBinding => ({
  hoa: '2001:db8:ffff::101',
  coa,
  prefixes,
  id: 1,
});
const b2 = (coa: string): TunnelBinding => ({
  hoa: '2001:db8:ffff::102',
  coa,
  prefixes: ['2001:db8:200::/64'],
  id: 2,
});
const TUNNELLED = [
  '2001:db8:100::/64',
  '2001:db8:101::/64',
  '2001:db8:200::/64',
  '2001:db8:200:1::/64',
  '2001:db8:ffff::100/126',
];

/** Every map's entries, decoded, from the pins under the daemon's bpffs. */
function contents(fake: FakeBpf, bpffs: string) {
  const maps = fake.openMaps(bpffs);
  try {
    return {
      encapDst: Object.fromEntries(maps.encapDst.entries()),
      ingress: Object.fromEntries(maps.ingress.entries()),
      local: maps.local.values(),
      peers: maps.peers.values(),
    };
  } finally {
    maps.close();
  }
}

const tunnel = (coa: string) => ({ src: HA, dst: coa });

describe('BpfHomeAgentDataplane', () => {
  let dir: string;
  let fake: FakeBpf;
  let k: FakeKernel;
  let dp: BpfHomeAgentDataplane;
  let bpffs: string;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'offlink-bpf-ha-'));
    fake = new FakeBpf();
    k = new FakeKernel({ onLoad: (mount) => fake.load(mount) }).addLink('ha-up');
    dp = new BpfHomeAgentDataplane(
      { kernel: k, sys: fake, object: '/x/offlink.bpf.o' },
      { haAddress: HA, uplink: 'ha-up', table: 200, mss: 1400, tunnelled: TUNNELLED, runDir: dir },
    );
    bpffs = join(dir, 'bpf', 'ha-4026531840');
    await dp.init();
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('init: own bpffs, decapsulation program on the uplink, one route per aggregate, own address', () => {
    assert.ok(fake.mounts.has(bpffs));
    assert.deepEqual(k.tc.get('ha-up ingress'), {
      dev: 'ha-up',
      hook: 'ingress',
      object: '/x/offlink.bpf.o',
      section: 'tc',
      bpffs,
      id: 1,
    });
    const encap = { type: 'bpf', object: '/x/offlink.bpf.o', section: 'lwt_xmit', headroom: 40, bpffs };
    // (the two 2001:db8:200:… /64s are halves of one /63; 100:: and 101:: are not)
    assert.deepEqual(
      k.netOps(),
      ['2001:db8:100::/64', '2001:db8:101::/64', '2001:db8:200::/63', '2001:db8:ffff::100/126'].map(
        (dst) => ({
          op: 'replace-route',
          route: { dst, table: 'main', dev: 'ha-up', encap },
        }),
      ),
    );
    assert.deepEqual(contents(fake, bpffs), { encapDst: {}, ingress: {}, local: [HA], peers: [] });
  });

  test('registration, CoA change and deregistration are map entries only: no process', async () => {
    k.clear();
    await dp.update([{ op: 'set', binding: b1('2001:db8:a::2') }]);
    assert.deepEqual(contents(fake, bpffs).encapDst, {
      '2001:db8:100::/64': tunnel('2001:db8:a::2'),
      '2001:db8:ffff::101/128': tunnel('2001:db8:a::2'),
    });
    await dp.update([{ op: 'set', binding: b1('2001:db8:b::2') }]);
    assert.deepEqual(contents(fake, bpffs).ingress, {
      '2001:db8:100::/64': '2001:db8:b::2',
      '2001:db8:ffff::101/128': '2001:db8:b::2',
    });
    await dp.update([{ op: 'delete', binding: b1('2001:db8:b::2') }]);
    assert.deepEqual(contents(fake, bpffs).encapDst, {});
    assert.deepEqual(contents(fake, bpffs).ingress, {});
    assert.deepEqual(k.calls, []);
  });

  test('a refresh (the same binding again) writes nothing', async () => {
    await dp.update([{ op: 'set', binding: b1('2001:db8:a::2') }]);
    fake.calls.length = 0;
    await dp.update([{ op: 'set', binding: b1('2001:db8:a::2') }]);
    assert.deepEqual(
      fake.calls.filter((call) => call !== 'mapLookup'),
      [],
    );
  });

  test('a prefix moving from one binding to another in one batch', async () => {
    await dp.update([
      { op: 'set', binding: b1('2001:db8:a::2', ['2001:db8:100::/64', '2001:db8:101::/64']) },
    ]);
    await dp.update([
      { op: 'set', binding: b1('2001:db8:a::2', ['2001:db8:100::/64']) },
      { op: 'set', binding: { ...b2('2001:db8:b::2'), prefixes: ['2001:db8:101::/64'] } },
    ]);
    assert.deepEqual(contents(fake, bpffs).ingress, {
      '2001:db8:100::/64': '2001:db8:a::2',
      '2001:db8:ffff::101/128': '2001:db8:a::2',
      '2001:db8:101::/64': '2001:db8:b::2',
      '2001:db8:ffff::102/128': '2001:db8:b::2',
    });
  });

  test('two bindings claiming one prefix: refused, nothing changed', async () => {
    await dp.update([{ op: 'set', binding: b1('2001:db8:a::2') }]);
    const before = contents(fake, bpffs);
    await assert.rejects(
      dp.update([{ op: 'set', binding: { ...b2('2001:db8:b::2'), prefixes: ['2001:db8:100::/64'] } }]),
      BindingConflictError,
    );
    assert.deepEqual(contents(fake, bpffs), before);
  });

  test('reconcile: the maps hold exactly the bindings given, whatever they held', async () => {
    await dp.update([
      { op: 'set', binding: b1('2001:db8:a::2') },
      { op: 'set', binding: b2('2001:db8:a::2') },
    ]);
    await dp.reconcile([b2('2001:db8:c::2')]);
    assert.deepEqual(contents(fake, bpffs).encapDst, {
      '2001:db8:200::/64': tunnel('2001:db8:c::2'),
      '2001:db8:ffff::102/128': tunnel('2001:db8:c::2'),
    });
  });

  test('a destination no configured prefix covers gets a route of its own', async () => {
    k.clear();
    await dp.update([{ op: 'set', binding: { ...b2('2001:db8:b::2'), prefixes: ['2001:db8:300::/64'] } }]);
    // (the home address is inside 2001:db8:ffff::100/126 already)
    assert.deepEqual(
      k.netOps().map((op) => (op.op === 'replace-route' ? op.route.dst : op.op)),
      ['2001:db8:300::/64'],
    );
  });

  test('after a failed update the next one rebuilds the maps from scratch', async () => {
    await dp.update([{ op: 'set', binding: b1('2001:db8:a::2') }]);
    const batch = fake.mapUpdateBatch.bind(fake);
    fake.mapUpdateBatch = () => {
      throw Object.assign(new Error('ENOMEM'), { code: 'ENOMEM' });
    };
    await assert.rejects(dp.update([{ op: 'set', binding: b2('2001:db8:b::2') }]));
    fake.mapUpdateBatch = batch;
    await dp.update([{ op: 'set', binding: b1('2001:db8:c::2') }]);
    assert.deepEqual(contents(fake, bpffs).encapDst, {
      '2001:db8:100::/64': tunnel('2001:db8:c::2'),
      '2001:db8:ffff::101/128': tunnel('2001:db8:c::2'),
    });
  });

  test('changes applied in any order end in the state of the last one', async () => {
    const configs: TunnelBinding[][] = [
      [b1('2001:db8:a::2')],
      [b1('2001:db8:b::2'), b2('2001:db8:b::2')],
      [b2('2001:db8:a::2')],
      [],
      [b1('2001:db8:a::2', ['2001:db8:100::/64', '2001:db8:101::/64']), b2('2001:db8:c::2')],
    ];
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    let installed: TunnelBinding[] = [];
    for (let round = 0; round < 40; round++) {
      const next = configs[Math.floor(random() * configs.length)]!;
      const gone = installed.filter((b) => !next.some((n) => n.hoa === b.hoa));
      await dp.update([
        ...gone.map((binding) => ({ op: 'delete' as const, binding })),
        ...next.map((binding) => ({ op: 'set' as const, binding })),
      ]);
      installed = next;
      const want: Record<string, string> = {};
      for (const b of next) for (const d of [...b.prefixes, `${b.hoa}/128`]) want[d] = b.coa;
      assert.deepEqual(contents(fake, bpffs).ingress, want, `round ${round}`);
    }
  });

  test('counters are summed over CPUs', async () => {
    fake.count(bpffs, 5, 3, 0);
    fake.count(bpffs, 5, 4, 1);
    const counters = await dp.packetCounters();
    assert.equal(counters.decapWrongSource, 7);
    assert.equal(counters.decapOk, 0);
  });

  test('flush: routes, program, maps and bpffs gone', async () => {
    await dp.update([{ op: 'set', binding: b1('2001:db8:a::2') }]);
    await dp.flush();
    assert.equal(k.routeTable.size, 0);
    assert.equal(k.nftTables.size, 0);
    assert.equal(k.tc.size, 0);
    assert.ok(!fake.mounts.has(bpffs));
    assert.deepEqual(fake.pinned(`${bpffs}/tc/globals`), []);
  });
});
