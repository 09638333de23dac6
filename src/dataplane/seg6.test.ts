// seg6 backend against the typed fake kernel (STYLE: tailscale's router test): desired state → expected
// operations, and every sequence of desired states, applied in random order, leaves exactly that state.
// (The operations' translation into iproute2 and nft commands: test/kernel.test.ts, on the real kernel.)
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseDestination } from '../protocol/address.ts';
import { BindingConflictError } from './bindings.ts';
import { FakeKernel } from './fake-kernel.ts';
import type { NetOp, NftOp, Route } from './kernel.ts';
import { ruleText } from './nftables.ts';
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

const tunnel = (dst: string, segment: string, table: Route['table'] = 'main'): NetOp => ({
  op: 'replace-route',
  route: { dst, table, dev: 'up0', encap: { type: 'seg6', segment } },
});
const decap = (addr: string, table = 200): NetOp => ({
  op: 'replace-route',
  route: { dst: `${addr}/128`, table, dev: 'up0', encap: { type: 'seg6local', action: 'End.DX6' } },
});
const elements = (
  verb: 'add-elements' | 'delete-elements',
  set: string,
  address: string,
  mark: number,
): NftOp => ({
  op: verb,
  table: 'offlink',
  set,
  kind: set === 'coa2id' ? 'map' : 'set',
  elements: [{ address, mark }],
});

function setup() {
  const kernel = new FakeKernel();
  const ha = new Seg6HomeAgentDataplane({ kernel }, options);
  return { kernel, ha };
}

/** What the kernel must hold for `bindings`, checked independently of the implementation. */
function assertHolds(kernel: FakeKernel, bindings: readonly TunnelBinding[], label: string): void {
  const routes = new Map<string, unknown>();
  for (const x of bindings) {
    for (const p of [...x.prefixes, `${x.hoa}/128`]) {
      const dst = parseDestination(p).text;
      routes.set(dst, { dst, table: 'main', dev: 'up0', encap: { type: 'seg6', segment: x.coa } });
    }
  }
  assert.deepEqual(
    new Map([...kernel.table('main')].sort()),
    new Map([...routes].sort()),
    `${label}: routes`,
  );
  const t = kernel.nftTables.get('offlink');
  assert.ok(t, `${label}: table`);
  const coa2id = new Map([...(kernel.elements('offlink', 'coa2id') ?? [])].map(([k, e]) => [k, e.mark]));
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
  for (const [name, set] of t.sets) {
    if (name === 'coa2id') continue;
    assert.deepEqual(new Set(set.elements.keys()), want.get(name) ?? new Set(), `${label}: ${name}`);
  }
}

/** Every rule of the nftables ops' table definitions as `<chain> <rule text>`. */
function definedRules(ops: readonly NftOp[]): string[] {
  return ops.flatMap((op) =>
    op.op === 'define-table'
      ? op.table.chains.flatMap((chain) => chain.rules.map((r) => `${chain.name} ${ruleText(r)}`))
      : [],
  );
}

describe('Seg6HomeAgentDataplane', () => {
  test('init on a fresh host: rule order, tunnel source, decapsulation, nftables table', async () => {
    const { kernel, ha } = setup();
    await ha.init();
    assert.deepEqual(kernel.calls.slice(0, 3), [
      { call: 'rules' },
      { call: 'routes', table: 200 },
      {
        call: 'apply',
        ops: [
          { op: 'add-rule', rule: { priority: 1000, table: 'local' } },
          { op: 'delete-rule', rule: { priority: 0, table: 'local' }, owner: 'kernel' },
          { op: 'set-tunnel-source', address: HA },
          { op: 'add-rule', rule: { priority: 10, to: `${HA}/128`, tunnelled: true, table: 200 } },
          decap(HA),
        ],
      },
    ]);
    const rules = definedRules(kernel.nftOps());
    for (const rule of [
      `pre ip6 daddr ${HA} meta l4proto ipv6 meta mark set ip6 saddr map @coa2id`,
      `pre ip6 daddr ${HA} meta l4proto ipv6 meta mark 0 counter drop comment "unregistered-coa"`,
      'forward_check ip6 saddr & ffff:ffff:ffff:ffff:: . meta mark @allowed_64 accept',
      'forward_check ip6 saddr . meta mark @allowed_128 accept',
      'forward_check counter drop comment "inner-source"',
      'pre tcp flags syn ip6 daddr & ffff:ffff:ffff:ffff:: @mnp_64 tcp option maxseg size set 1400',
      'clamp_out meta mark != 0 tcp flags syn tcp option maxseg size set 1400',
    ]) {
      assert.ok(rules.includes(rule), rule);
    }
    kernel.clear();
    await ha.init();
    assert.deepEqual(
      kernel.netOps(),
      [{ op: 'set-tunnel-source', address: HA }, decap(HA)],
      'a second init adds no rule',
    );
  });

  test('reconcile installs routes and elements; a CoA change replaces in place, never deletes', async () => {
    const { kernel, ha } = setup();
    await ha.init();
    kernel.clear();
    await ha.reconcile([b(1, '2001:db8:a::2')]);
    assert.deepEqual(kernel.calls.slice(0, 2), [
      { call: 'routes', table: 'main' },
      { call: 'nftTable', name: 'offlink' },
    ]);
    assert.deepEqual(kernel.nftOps().slice(1), [
      elements('add-elements', 'coa2id', '2001:db8:a::2', 1),
      { ...elements('add-elements', 'allowed_64', '2001:db8:101::', 1) },
      elements('add-elements', 'allowed_128', '2001:db8:ffff::101', 1),
      {
        op: 'add-elements',
        table: 'offlink',
        set: 'mnp_64',
        kind: 'set',
        elements: [{ address: '2001:db8:101::' }],
      },
      {
        op: 'add-elements',
        table: 'offlink',
        set: 'mnp_128',
        kind: 'set',
        elements: [{ address: '2001:db8:ffff::101' }],
      },
    ]);
    assert.deepEqual(kernel.netOps(), [
      tunnel('2001:db8:101::/64', '2001:db8:a::2'),
      tunnel('2001:db8:ffff::101/128', '2001:db8:a::2'),
    ]);
    kernel.clear();
    await ha.update([{ op: 'set', binding: b(1, '2001:db8:b::2') }]);
    // What the BA waits for: the new CoA's elements and the routes, no deletes (each deleting
    // transaction waits for an RCU grace period in the kernel).
    assert.deepEqual(kernel.writes(), [
      {
        call: 'nft',
        ops: [
          elements('add-elements', 'coa2id', '2001:db8:b::2', 2),
          elements('add-elements', 'allowed_64', '2001:db8:101::', 2),
          elements('add-elements', 'allowed_128', '2001:db8:ffff::101', 2),
        ],
      },
      {
        call: 'apply',
        ops: [
          tunnel('2001:db8:101::/64', '2001:db8:b::2'),
          tunnel('2001:db8:ffff::101/128', '2001:db8:b::2'),
        ],
      },
    ]);
    kernel.clear();
    await ha.settled();
    assert.deepEqual(kernel.writes(), [
      {
        call: 'nft',
        ops: [
          elements('delete-elements', 'allowed_64', '2001:db8:101::', 1),
          elements('delete-elements', 'allowed_128', '2001:db8:ffff::101', 1),
          elements('delete-elements', 'coa2id', '2001:db8:a::2', 1),
        ],
      },
    ]);
    assertHolds(kernel, [b(1, '2001:db8:b::2')], 'after move');
    kernel.clear();
    await ha.update([{ op: 'set', binding: b(1, '2001:db8:b::2') }]);
    assert.deepEqual(kernel.calls, [], 'the same binding again changes nothing');
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
        kernel.clear();
        if (random() < 0.3) await ha.reconcile(next);
        else {
          const changes: BindingChange[] = [
            ...current
              .filter((binding) => !next.some((n) => n.hoa === binding.hoa))
              .map((binding) => ({ op: 'delete' as const, binding })),
            ...next.map((binding) => ({ op: 'set' as const, binding })),
          ];
          await ha.update(changes.sort(() => random() - 0.5));
        }
        await ha.settled();
        assertHolds(kernel, next, `round ${round} step ${step}`);
        // a route that stays wanted is replaced in place, never deleted (no gap in forwarding)
        const wanted = new Set(
          next.flatMap((x) => [...x.prefixes, `${x.hoa}/128`].map((p) => parseDestination(p).text)),
        );
        const deleted = kernel.netOps().flatMap((op) => (op.op === 'delete-route' ? [op.dst] : []));
        assert.deepEqual(
          deleted.filter((d) => wanted.has(d)),
          [],
          `round ${round} step ${step}: deletes`,
        );
        kernel.clear();
        await ha.reconcile(next);
        assert.deepEqual(kernel.netOps(), [], 're-applying changes no route');
        assert.deepEqual(
          kernel.nftOps().filter((op) => op.op === 'add-elements' || op.op === 'delete-elements'),
          [],
          're-applying changes no element (sets of lengths no longer used may go)',
        );
        current = next;
      }
    }
  });

  test('a prefix claimed by two bindings is refused before any kernel call', async () => {
    const { kernel, ha } = setup();
    await ha.init();
    await ha.update([{ op: 'set', binding: b(1, '2001:db8:a::2') }]);
    kernel.clear();
    const thief = b(2, '2001:db8:b::2', ['2001:db8:101::/64']);
    await assert.rejects(ha.update([{ op: 'set', binding: thief }]), BindingConflictError);
    await assert.rejects(ha.reconcile([b(1, '2001:db8:a::2'), thief]), BindingConflictError);
    assert.deepEqual(kernel.calls, []);
    // but a prefix may move from one binding to another in one batch
    await ha.update([
      { op: 'delete', binding: b(1, '2001:db8:a::2') },
      { op: 'set', binding: thief },
    ]);
    await ha.settled();
    assertHolds(kernel, [thief], 'moved');
  });

  test('after a failed apply the next update reads the kernel and repairs it', async () => {
    const { kernel, ha } = setup();
    await ha.init();
    await ha.update([{ op: 'set', binding: b(1, '2001:db8:a::2') }]);
    kernel.failApply = { at: 1 };
    await assert.rejects(ha.update([{ op: 'set', binding: b(2, '2001:db8:a::3') }]), {
      code: 'ERR_KERNEL_OPS',
    });
    kernel.clear();
    await ha.update([{ op: 'set', binding: b(3, '2001:db8:a::4') }]);
    assert.ok(
      kernel.calls.some((call) => call.call === 'nftTable'),
      'full reconcile',
    );
    await ha.settled();
    assertHolds(kernel, [b(1, '2001:db8:a::2'), b(3, '2001:db8:a::4')], 'repaired');
  });

  test('flush removes what it installed and restores the rule order', async () => {
    const { kernel, ha } = setup();
    const pristine = structuredClone(kernel.ruleList);
    await ha.init();
    await ha.reconcile([b(1, '2001:db8:a::2'), b(2, '2001:db8:a::3')]);
    await ha.flush();
    await ha.flush();
    assert.deepEqual(kernel.ruleList, pristine);
    assert.equal(kernel.routeTable.size, 0);
    assert.equal(kernel.nftTables.size, 0);
    assert.equal(kernel.tunnelSource, '::');
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
  const egressRule = { priority: 101, from: '2001:db8:101::/64', iif: 'ofl-net1', table: 101 };
  const forwardRule = { priority: 101, to: '2001:db8:101::/64', iif: 'up0', table: 101 };

  function setup() {
    const kernel = new FakeKernel();
    return { kernel, mr: new Seg6MobileRouterDataplane({ kernel }) };
  }

  test('initHost, activate, deactivate: the expected operations', async () => {
    const { kernel, mr } = setup();
    await mr.initHost(host);
    assert.deepEqual(kernel.netOps(), [
      { op: 'add-rule', rule: { priority: 1000, table: 'local' } },
      { op: 'delete-rule', rule: { priority: 0, table: 'local' }, owner: 'kernel' },
      { op: 'set-tunnel-source', address: '2001:db8:a::2' },
      {
        op: 'add-rule',
        rule: { priority: 10, from: `${HA}/128`, to: '2001:db8:a::2/128', tunnelled: true, table: 200 },
      },
      decap('2001:db8:a::2'),
    ]);
    assert.ok(
      definedRules(kernel.nftOps()).includes(
        'pre iifname != "up0" tcp flags syn tcp option maxseg size set 1400',
      ),
    );
    kernel.clear();
    await mr.activate(net('net1', 1));
    assert.deepEqual(kernel.calls, [
      { call: 'rules' },
      { call: 'apply', ops: [{ op: 'add-rule', rule: egressRule }, tunnel('::/0', HA, 101)] },
    ]);
    kernel.clear();
    await mr.deactivate(net('net1', 1));
    assert.deepEqual(kernel.calls, [
      { call: 'rules' },
      {
        call: 'apply',
        ops: [
          { op: 'delete-rule', rule: egressRule },
          { op: 'delete-route', dst: '::/0', table: 101 },
          { op: 'delete-route', dst: '2001:db8:101::/64', table: 101 },
        ],
      },
    ]);
  });

  test('forward: the prefixes arriving on the uplink go on to the peer; activate and deactivate end it', async () => {
    const { kernel, mr } = setup();
    await mr.initHost(host);
    await mr.activate(net('net1', 1));
    kernel.clear();
    await mr.forward(net('net1', 1), '2001:db8:b:0::2');
    assert.deepEqual(kernel.writes(), [
      {
        call: 'apply',
        ops: [tunnel('2001:db8:101::/64', '2001:db8:b::2', 101), { op: 'add-rule', rule: forwardRule }],
      },
    ]);
    assert.ok(kernel.table(101).has('2001:db8:101::/64'));
    // Coming back (a failed migration): the egress rule and route only.
    kernel.clear();
    await mr.activate(net('net1', 1));
    assert.deepEqual(kernel.netOps(), [
      { op: 'delete-rule', rule: forwardRule },
      { op: 'delete-route', dst: '2001:db8:101::/64', table: 101 },
      tunnel('::/0', HA, 101),
    ]);
    assert.deepEqual([...kernel.table(101).keys()], ['::/0']);
    await mr.forward(net('net1', 1), '2001:db8:b::2');
    await mr.deactivate(net('net1', 1));
    assert.equal(kernel.table(101).size, 0);
    assert.ok(!kernel.ruleList.some((r) => r.table === 101));
  });

  test('acceptTunnelFrom: the decapsulation rule from the peer; the next initHost removes it', async () => {
    const { kernel, mr } = setup();
    await mr.initHost(host);
    kernel.clear();
    await mr.acceptTunnelFrom({ coa: host.coa, table: 200 }, '2001:db8:b::2');
    assert.deepEqual(kernel.netOps(), [
      {
        op: 'add-rule',
        rule: {
          priority: 10,
          from: '2001:db8:b::2/128',
          to: '2001:db8:a::2/128',
          tunnelled: true,
          table: 200,
        },
      },
    ]);
    await mr.initHost(host);
    assert.deepEqual(
      kernel.ruleList.filter((r) => r.priority === 10).map((r) => r.from),
      [`${HA}/128`],
    );
  });

  test('initHost with a new CoA replaces the old CoA rule and route', async () => {
    const { kernel, mr } = setup();
    await mr.initHost(host);
    await mr.initHost({ ...host, coa: '2001:db8:b::2' });
    assert.deepEqual([...kernel.table(200).keys()], ['2001:db8:b::2/128']);
    assert.deepEqual(
      kernel.ruleList.filter((r) => r.priority === 10).map((r) => r.to),
      ['2001:db8:b::2/128'],
    );
    assert.equal(kernel.tunnelSource, '2001:db8:b::2');
  });

  test('random activate/deactivate sequences converge; flushHost restores the host', async () => {
    const { kernel, mr } = setup();
    const pristine = structuredClone(kernel.ruleList);
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
        const rules = kernel.ruleList.filter((r) => r.table === x.table);
        const route = kernel.table(x.table).get('::/0');
        assert.equal(
          rules.length,
          active.has(x.network) ? x.prefixes.length : 0,
          `${x.network} rules at ${i}`,
        );
        assert.equal(route !== undefined, active.has(x.network), `${x.network} route at ${i}`);
      }
    }
    await mr.flushHost();
    assert.deepEqual(kernel.ruleList, pristine);
    assert.equal(kernel.routeTable.size, 0);
    assert.equal(kernel.nftTables.size, 0);
  });

  test('bad input is refused before any kernel call', async () => {
    const { kernel, mr } = setup();
    await assert.rejects(mr.activate({ ...net('n1', 1), bridge: 'br0\nroute flush' }), {
      code: 'ERR_INVALID_INTERFACE',
    });
    await assert.rejects(mr.activate({ ...net('n1', 1), prefixes: ['2001:db8::/64 dev lo'] }), {
      code: 'ERR_INVALID_PREFIX',
    });
    await assert.rejects(mr.activate({ ...net('n1', 1), rulePref: 1000 }), { code: 'ERR_CONFIG' });
    assert.deepEqual(kernel.calls, []);
  });
});
