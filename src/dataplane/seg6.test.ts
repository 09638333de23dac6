// seg6 backend against a fake kernel (STYLE: tailscale's router test): desired state → expected command
// lines, and every sequence of desired states, applied in random order, leaves exactly that state.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseDestination } from '../protocol/address.ts';
import { BindingConflictError } from './bindings.ts';
import { FakeKernel } from './fake-kernel.ts';
import { Seg6HomeAgentDataplane, Seg6MobileRouterDataplane } from './seg6.ts';
import type { BindingChange, MobileRouterRoutes, TunnelBinding } from './types.ts';

const HA = '2001:db8:ffff::1';
const options = { haAddress: HA, uplink: 'up0', table: 200, mss: 1400 };
const b = (n: number, coa: string, prefixes: string[] = [`2001:db8:${100 + n}::/64`]): TunnelBinding => ({
  hoa: `2001:db8:ffff::${100 + n}`,
  coa,
  prefixes,
  id: n,
});

function setup() {
  const kernel = new FakeKernel();
  const ha = new Seg6HomeAgentDataplane({ runner: kernel }, options);
  return { kernel, ha };
}

/** What the kernel must hold for `bindings`, checked independently of the implementation. */
function assertHolds(kernel: FakeKernel, bindings: readonly TunnelBinding[], label: string): void {
  const routes = new Map<string, string>();
  for (const x of bindings) {
    for (const p of [...x.prefixes, `${x.hoa}/128`]) {
      routes.set(
        parseDestination(p).text,
        `encap seg6 mode encap.red segs 1 [ ${x.coa} ] dev up0 metric 1024 pref medium`,
      );
    }
  }
  assert.deepEqual(
    new Map([...kernel.table('main')].sort()),
    new Map([...routes].sort()),
    `${label}: routes`,
  );
  const t = kernel.nft.get('offlink');
  assert.ok(t, `${label}: table`);
  const coa2id = t.maps.get('coa2id')!;
  assert.deepEqual(new Set(coa2id.keys()), new Set(bindings.map((x) => x.coa)), `${label}: coa2id`);
  assert.equal(new Set(coa2id.values()).size, coa2id.size, `${label}: one mark per CoA`);
  const want = new Map<string, Set<string>>();
  const add = (set: string, e: string) => want.set(set, (want.get(set) ?? new Set()).add(e));
  for (const x of bindings) {
    for (const p of [...x.prefixes, `${x.hoa}/128`].map(parseDestination)) {
      add(`allowed_${p.length}`, `${p.address} . ${coa2id.get(x.coa)}`);
      add(`mnp_${p.length}`, p.address);
    }
  }
  for (const [name, elems] of t.sets)
    assert.deepEqual(elems, want.get(name) ?? new Set(), `${label}: ${name}`);
}

describe('Seg6HomeAgentDataplane', () => {
  test('init on a fresh host: rule order, tunnel source, decapsulation, nftables table', async () => {
    const { kernel, ha } = setup();
    await ha.init();
    const lines = kernel.lines();
    assert.deepEqual(lines.slice(0, 8), [
      'ip -j -6 rule show',
      'ip -6 route show table 200 proto 241',
      'ip -6 -force -batch -',
      '  rule add pref 1000 lookup local protocol 241',
      '  rule del pref 0 lookup local',
      `  sr tunsrc set ${HA}`,
      `  rule add pref 10 to ${HA}/128 ipproto 41 lookup 200 protocol 241`,
      `  route replace ${HA}/128 proto 241 encap seg6local action End.DX6 nh6 :: dev up0 table 200`,
    ]);
    assert.equal(lines[8], 'nft -f -');
    const nft = lines.slice(9).join('\n');
    for (const rule of [
      `pre ip6 daddr ${HA} meta l4proto ipv6 ip6 saddr != @coa2id counter drop comment "unregistered-coa"`,
      `pre ip6 daddr ${HA} meta l4proto ipv6 meta mark set ip6 saddr map @coa2id`,
      'forward_check ip6 saddr & ffff:ffff:ffff:ffff:: . meta mark @allowed_64 accept',
      'forward_check ip6 saddr . meta mark @allowed_128 accept',
      'forward_check counter drop comment "inner-source"',
      'pre tcp flags syn ip6 daddr & ffff:ffff:ffff:ffff:: @mnp_64 tcp option maxseg size set 1400',
      'clamp_out meta mark != 0 tcp flags syn tcp option maxseg size set 1400',
    ]) {
      assert.ok(nft.includes(`add rule ip6 offlink ${rule}`), rule);
    }
    kernel.clear();
    await ha.init();
    assert.deepEqual(
      kernel.lines().slice(0, 5),
      [
        'ip -j -6 rule show',
        'ip -6 route show table 200 proto 241',
        'ip -6 -force -batch -',
        `  sr tunsrc set ${HA}`,
        `  route replace ${HA}/128 proto 241 encap seg6local action End.DX6 nh6 :: dev up0 table 200`,
      ],
      'a second init adds no rule',
    );
  });

  test('reconcile installs routes and elements; a CoA change replaces in place, never deletes', async () => {
    const { kernel, ha } = setup();
    await ha.init();
    kernel.clear();
    await ha.reconcile([b(1, '2001:db8:a::2')]);
    const lines = kernel.lines();
    assert.deepEqual(lines.slice(0, 3), [
      'ip -6 route show table main proto 241',
      'nft -j list table ip6 offlink',
      'nft -f -',
    ]);
    assert.deepEqual(lines.slice(-8), [
      '  add element ip6 offlink coa2id { 2001:db8:a::2 : 1 }',
      '  add element ip6 offlink allowed_64 { 2001:db8:101:: . 1 }',
      '  add element ip6 offlink allowed_128 { 2001:db8:ffff::101 . 1 }',
      '  add element ip6 offlink mnp_64 { 2001:db8:101:: }',
      '  add element ip6 offlink mnp_128 { 2001:db8:ffff::101 }',
      'ip -6 -force -batch -',
      '  route replace 2001:db8:101::/64 proto 241 encap seg6 mode encap.red segs 2001:db8:a::2 dev up0',
      '  route replace 2001:db8:ffff::101/128 proto 241 encap seg6 mode encap.red segs 2001:db8:a::2 dev up0',
    ]);
    kernel.clear();
    await ha.update([{ op: 'set', binding: b(1, '2001:db8:b::2') }]);
    // What the BA waits for: the new CoA's elements and the routes, no deletes (each deleting
    // transaction waits for an RCU grace period in the kernel).
    assert.deepEqual(kernel.lines(), [
      'nft -f -',
      '  add element ip6 offlink coa2id { 2001:db8:b::2 : 2 }',
      '  add element ip6 offlink allowed_64 { 2001:db8:101:: . 2 }',
      '  add element ip6 offlink allowed_128 { 2001:db8:ffff::101 . 2 }',
      'ip -6 -force -batch -',
      '  route replace 2001:db8:101::/64 proto 241 encap seg6 mode encap.red segs 2001:db8:b::2 dev up0',
      '  route replace 2001:db8:ffff::101/128 proto 241 encap seg6 mode encap.red segs 2001:db8:b::2 dev up0',
    ]);
    kernel.clear();
    await ha.settled();
    assert.deepEqual(kernel.lines(), [
      'nft -f -',
      '  add element ip6 offlink allowed_64 { 2001:db8:101:: . 1 }',
      '  delete element ip6 offlink allowed_64 { 2001:db8:101:: . 1 }',
      '  add element ip6 offlink allowed_128 { 2001:db8:ffff::101 . 1 }',
      '  delete element ip6 offlink allowed_128 { 2001:db8:ffff::101 . 1 }',
      '  add element ip6 offlink coa2id { 2001:db8:a::2 : 1 }',
      '  delete element ip6 offlink coa2id { 2001:db8:a::2 : 1 }',
    ]);
    await ha.settled();
    assertHolds(kernel, [b(1, '2001:db8:b::2')], 'after move');
    kernel.clear();
    await ha.update([{ op: 'set', binding: b(1, '2001:db8:b::2') }]);
    assert.deepEqual(kernel.lines(), [], 'the same binding again changes nothing');
  });

  test('bindings that share a CoA share its mark; the mark goes with the last of them', async () => {
    const { kernel, ha } = setup();
    await ha.init();
    await ha.update([
      { op: 'set', binding: b(1, '2001:db8:a::2') },
      { op: 'set', binding: b(2, '2001:db8:a::2') },
    ]);
    await ha.settled();
    assertHolds(kernel, [b(1, '2001:db8:a::2'), b(2, '2001:db8:a::2')], 'shared');
    await ha.update([{ op: 'delete', binding: b(1, '2001:db8:a::2') }]);
    await ha.settled();
    assertHolds(kernel, [b(2, '2001:db8:a::2')], 'one left');
    await ha.update([{ op: 'delete', binding: b(2, '2001:db8:a::2') }]);
    await ha.settled();
    assertHolds(kernel, [], 'none left');
  });

  test('random orders of desired states converge (update and reconcile)', async () => {
    const states: TunnelBinding[][] = [
      [],
      [b(1, '2001:db8:a::2')],
      [b(1, '2001:db8:b::2'), b(2, '2001:db8:a::2')],
      [b(1, '2001:db8:b::2', ['2001:db8:101::/64', '2001:db8:1100::/56']), b(3, '2001:db8:b::2')],
      [
        b(2, '2001:db8:c::2', ['2001:db8:101::/64']),
        b(3, '2001:db8:a::2', ['2001:db8:103::/64', '2001:db8:ffff::103/128']),
      ],
      [b(4, '2001:db8:a::2', ['2001:db8:1200::/48', '2001:db8:1300::/48']), b(1, '2001:db8:a::3')],
    ];
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let round = 0; round < 40; round++) {
      const { kernel, ha } = setup();
      await ha.init();
      let current: TunnelBinding[] = [];
      for (let step = 0; step < 8; step++) {
        const next = states[Math.floor(random() * states.length)]!;
        if (random() < 0.3) await ha.reconcile(next);
        else {
          const changes: BindingChange[] = [
            ...current
              .filter((c) => !next.some((n) => n.hoa === c.hoa))
              .map((binding) => ({ op: 'delete' as const, binding })),
            ...next.map((binding) => ({ op: 'set' as const, binding })),
          ];
          await ha.update(changes.sort(() => random() - 0.5));
        }
        await ha.settled();
        assertHolds(kernel, next, `round ${round} step ${step}`);
        assert.ok(!kernel.lines().some((l) => / route del .*segs/.test(l)));
        kernel.clear();
        await ha.reconcile(next);
        assert.deepEqual(
          kernel.lines().filter((l) => l.startsWith('  ') && (l.includes('route ') || l.includes('element'))),
          [],
          're-applying writes nothing',
        );
        kernel.clear();
        current = next;
      }
    }
  });

  test('a prefix claimed by two bindings is refused before any command', async () => {
    const { kernel, ha } = setup();
    await ha.init();
    await ha.update([{ op: 'set', binding: b(1, '2001:db8:a::2') }]);
    kernel.clear();
    const thief = b(2, '2001:db8:b::2', ['2001:db8:101::/64']);
    await assert.rejects(ha.update([{ op: 'set', binding: thief }]), BindingConflictError);
    await assert.rejects(ha.reconcile([b(1, '2001:db8:a::2'), thief]), BindingConflictError);
    assert.deepEqual(kernel.lines(), []);
    // but a prefix may move from one binding to another in one batch
    await ha.update([
      { op: 'delete', binding: b(1, '2001:db8:a::2') },
      { op: 'set', binding: thief },
    ]);
    await ha.settled();
    assertHolds(kernel, [thief], 'moved');
  });

  test('after a failed batch the next update reads the kernel and repairs it', async () => {
    const { kernel, ha } = setup();
    await ha.init();
    await ha.update([{ op: 'set', binding: b(1, '2001:db8:a::2') }]);
    kernel.failBatch = { atLine: 2 };
    await assert.rejects(ha.update([{ op: 'set', binding: b(2, '2001:db8:a::3') }]), {
      code: 'ERR_IP_BATCH',
    });
    kernel.clear();
    await ha.update([{ op: 'set', binding: b(3, '2001:db8:a::4') }]);
    assert.ok(kernel.lines().includes('nft -j list table ip6 offlink'), 'full reconcile');
    await ha.settled();
    assertHolds(kernel, [b(1, '2001:db8:a::2'), b(3, '2001:db8:a::4')], 'repaired');
  });

  test('transient ENOMEM lines are retried', async () => {
    const { kernel, ha } = setup();
    await ha.init();
    kernel.failBatch = { atLine: 1, enomem: true };
    await ha.update([{ op: 'set', binding: b(1, '2001:db8:a::2') }]);
    await ha.settled();
    assertHolds(kernel, [b(1, '2001:db8:a::2')], 'after retry');
  });

  test('flush removes what it installed and restores the rule order', async () => {
    const { kernel, ha } = setup();
    const pristine = structuredClone(kernel.rules);
    await ha.init();
    await ha.reconcile([b(1, '2001:db8:a::2'), b(2, '2001:db8:a::3')]);
    await ha.flush();
    await ha.flush();
    assert.deepEqual(kernel.rules, pristine);
    assert.equal(kernel.routes.size, 0);
    assert.equal(kernel.nft.size, 0);
    assert.equal(kernel.tunsrc, '::');
  });
});

describe('Seg6MobileRouterDataplane', () => {
  const host = { coa: '2001:db8:a::2', haAddress: HA, uplink: 'up0', table: 200 };
  const net = (name: string, n: number, coa = host.coa): MobileRouterRoutes => ({
    network: name,
    haAddress: HA,
    coa,
    uplink: 'up0',
    bridge: `ofl-${name}`,
    prefixes: [`2001:db8:${100 + n}::/64`],
    table: 100 + n,
    rulePref: 100 + n,
  });

  test('initHost, activate, deactivate: expected lines', async () => {
    const kernel = new FakeKernel();
    const mr = new Seg6MobileRouterDataplane({ runner: kernel });
    await mr.initHost(host);
    assert.deepEqual(kernel.lines().slice(2, 8), [
      'ip -6 -force -batch -',
      '  rule add pref 1000 lookup local protocol 241',
      '  rule del pref 0 lookup local',
      '  sr tunsrc set 2001:db8:a::2',
      `  rule add pref 10 from ${HA}/128 to 2001:db8:a::2/128 ipproto 41 lookup 200 protocol 241`,
      '  route replace 2001:db8:a::2/128 proto 241 encap seg6local action End.DX6 nh6 :: dev up0 table 200',
    ]);
    assert.ok(
      kernel
        .lines()
        .includes(
          '  add rule ip6 offlink-mr pre iifname != "up0" tcp flags syn tcp option maxseg size set 1400',
        ),
    );
    kernel.clear();
    await mr.activate(net('net1', 1));
    assert.deepEqual(kernel.lines(), [
      'ip -j -6 rule show',
      'ip -6 -force -batch -',
      '  rule add pref 101 from 2001:db8:101::/64 iif ofl-net1 lookup 101 protocol 241',
      `  route replace default proto 241 encap seg6 mode encap.red segs ${HA} dev up0 table 101`,
    ]);
    kernel.clear();
    await mr.deactivate(net('net1', 1));
    assert.deepEqual(kernel.lines(), [
      'ip -j -6 rule show',
      'ip -6 -force -batch -',
      '  rule del pref 101 from 2001:db8:101::/64 iif ofl-net1 lookup 101 protocol 241',
      '  route del default proto 241 table 101',
      '  route del 2001:db8:101::/64 proto 241 table 101',
    ]);
  });

  test('forward: the prefixes arriving on the uplink go on to the peer; activate and deactivate end it', async () => {
    const kernel = new FakeKernel();
    const mr = new Seg6MobileRouterDataplane({ runner: kernel });
    await mr.initHost(host);
    await mr.activate(net('net1', 1));
    kernel.clear();
    await mr.forward(net('net1', 1), '2001:db8:b:0::2');
    assert.deepEqual(kernel.lines(), [
      'ip -6 -force -batch -',
      '  route replace 2001:db8:101::/64 proto 241 encap seg6 mode encap.red segs 2001:db8:b::2 dev up0 table 101',
      '  rule add pref 101 to 2001:db8:101::/64 iif up0 lookup 101 protocol 241',
    ]);
    assert.ok(kernel.table(101).has('2001:db8:101::/64'));
    // Coming back (a failed migration): the egress rule and route only.
    kernel.clear();
    await mr.activate(net('net1', 1));
    assert.deepEqual(kernel.lines().slice(2), [
      '  rule del pref 101 to 2001:db8:101::/64 iif up0 lookup 101 protocol 241',
      '  route del 2001:db8:101::/64 proto 241 table 101',
      `  route replace default proto 241 encap seg6 mode encap.red segs ${HA} dev up0 table 101`,
    ]);
    assert.deepEqual([...kernel.table(101).keys()], ['default']);
    await mr.forward(net('net1', 1), '2001:db8:b::2');
    await mr.deactivate(net('net1', 1));
    assert.equal(kernel.table(101).size, 0);
    assert.ok(!kernel.rules.some((r) => r.table === '101'));
  });

  test('acceptTunnelFrom: the decapsulation rule from the peer; the next initHost removes it', async () => {
    const kernel = new FakeKernel();
    const mr = new Seg6MobileRouterDataplane({ runner: kernel });
    await mr.initHost(host);
    kernel.clear();
    await mr.acceptTunnelFrom({ coa: host.coa, table: 200 }, '2001:db8:b::2');
    assert.deepEqual(kernel.lines(), [
      'ip -6 -force -batch -',
      '  rule add pref 10 from 2001:db8:b::2/128 to 2001:db8:a::2/128 ipproto 41 lookup 200 protocol 241',
    ]);
    await mr.initHost(host);
    assert.deepEqual(
      kernel.rules.filter((r) => r.priority === 10).map((r) => r.src),
      [HA],
    );
  });

  test('initHost with a new CoA replaces the old CoA rule and route', async () => {
    const kernel = new FakeKernel();
    const mr = new Seg6MobileRouterDataplane({ runner: kernel });
    await mr.initHost(host);
    await mr.initHost({ ...host, coa: '2001:db8:b::2' });
    assert.deepEqual([...kernel.table(200).keys()], ['2001:db8:b::2/128']);
    const decap = kernel.rules.filter((r) => r.priority === 10);
    assert.deepEqual(
      decap.map((r) => r.dst),
      ['2001:db8:b::2'],
    );
    assert.equal(kernel.tunsrc, '2001:db8:b::2');
  });

  test('random activate/deactivate sequences converge; flushHost restores the host', async () => {
    const kernel = new FakeKernel();
    const pristine = structuredClone(kernel.rules);
    const mr = new Seg6MobileRouterDataplane({ runner: kernel });
    await mr.initHost(host);
    const nets = [
      net('n1', 1),
      net('n2', 2),
      { ...net('n3', 3), prefixes: ['2001:db8:103::/64', '2001:db8:1030::/60'] },
    ];
    const active = new Set<string>();
    let seed = 3;
    for (let i = 0; i < 60; i++) {
      seed = (seed * 48271) % 2147483647;
      const n = nets[seed % nets.length]!;
      if (seed % 2 === 0) {
        await mr.activate(n);
        active.add(n.network);
      } else {
        await mr.deactivate(n);
        active.delete(n.network);
      }
      for (const x of nets) {
        const rules = kernel.rules.filter((r) => r.table === String(x.table));
        const route = kernel.table(x.table).get('default');
        assert.equal(
          rules.length,
          active.has(x.network) ? x.prefixes.length : 0,
          `${x.network} rules at ${i}`,
        );
        assert.equal(route !== undefined, active.has(x.network), `${x.network} route at ${i}`);
      }
    }
    await mr.flushHost();
    assert.deepEqual(kernel.rules, pristine);
    assert.equal(kernel.routes.size, 0);
    assert.equal(kernel.nft.size, 0);
  });

  test('bad input is refused before any command', async () => {
    const kernel = new FakeKernel();
    const mr = new Seg6MobileRouterDataplane({ runner: kernel });
    await assert.rejects(mr.activate({ ...net('n1', 1), bridge: 'br0\nroute flush' }), {
      code: 'ERR_INVALID_INTERFACE',
    });
    await assert.rejects(mr.activate({ ...net('n1', 1), prefixes: ['2001:db8::/64 dev lo'] }), {
      code: 'ERR_INVALID_PREFIX',
    });
    await assert.rejects(mr.activate({ ...net('n1', 1), rulePref: 1000 }), { code: 'ERR_CONFIG' });
    assert.deepEqual(kernel.lines(), []);
  });
});
