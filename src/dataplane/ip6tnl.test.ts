// The ip6tnl backend can only be checked by the commands it emits here (the kernel has no ip6_tunnel):
// a table of desired states and the exact lines each must produce, then random-order convergence.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FakeKernel } from './fake-kernel.ts';
import { Ip6tnlHomeAgentDataplane, Ip6tnlMobileRouterDataplane, TUNNEL_DEVICE } from './ip6tnl.ts';
import type { TunnelBinding } from './types.ts';

const HA = '2001:db8:ffff::1';
const b = (n: number, coa: string): TunnelBinding => ({
  hoa: `2001:db8:ffff::${100 + n}`,
  coa,
  prefixes: [`2001:db8:${100 + n}::/64`],
  id: n,
});
const route = (dst: string, coa: string) =>
  `  route replace ${dst} proto 241 encap ip6 dst ${coa} src ${HA} dev ${TUNNEL_DEVICE}`;

describe('Ip6tnlHomeAgentDataplane', () => {
  test('init creates the external tunnel device once and filters tunnels to other addresses', async () => {
    const kernel = new FakeKernel();
    const ha = new Ip6tnlHomeAgentDataplane(
      { runner: kernel },
      { haAddress: HA, uplink: 'up0', table: 200, mss: 0 },
    );
    await ha.init();
    const lines = kernel.lines();
    assert.deepEqual(lines.slice(0, 5), [
      'ip -j -6 rule show',
      `ip -j link show dev ${TUNNEL_DEVICE}`,
      'ip -6 -force -batch -',
      `  link add name ${TUNNEL_DEVICE} type ip6tnl mode ip6ip6 external`,
      `  link set ${TUNNEL_DEVICE} up`,
    ]);
    assert.ok(
      lines.includes(
        `  add rule ip6 offlink pre meta l4proto ipv6 ip6 daddr != ${HA} fib daddr type local counter drop comment "tunnel-to-other-address"`,
      ),
    );
    assert.ok(!lines.some((l) => l.includes('maxseg')), 'mss 0: no clamping');
    assert.ok(
      !lines.some((l) => l.includes('rule add') || l.includes('tunsrc')),
      'no rules, no seg6 tunnel source',
    );
    kernel.clear();
    await ha.init();
    assert.deepEqual(kernel.lines().slice(0, 4), [
      'ip -j -6 rule show',
      `ip -j link show dev ${TUNNEL_DEVICE}`,
      'ip -6 -force -batch -',
      `  link set ${TUNNEL_DEVICE} up`,
    ]);
  });

  // desired bindings → the route lines the step must emit (after the previous step)
  const steps: { bindings: TunnelBinding[]; routes: string[] }[] = [
    {
      bindings: [b(1, '2001:db8:a::2')],
      routes: [route('2001:db8:101::/64', '2001:db8:a::2'), route('2001:db8:ffff::101/128', '2001:db8:a::2')],
    },
    {
      bindings: [b(1, '2001:db8:b::2'), b(2, '2001:db8:b::2')],
      routes: [
        route('2001:db8:101::/64', '2001:db8:b::2'),
        route('2001:db8:ffff::101/128', '2001:db8:b::2'),
        route('2001:db8:102::/64', '2001:db8:b::2'),
        route('2001:db8:ffff::102/128', '2001:db8:b::2'),
      ],
    },
    {
      bindings: [b(2, '2001:db8:b::2')],
      routes: ['  route del 2001:db8:101::/64 proto 241', '  route del 2001:db8:ffff::101/128 proto 241'],
    },
    { bindings: [b(2, '2001:db8:b::2')], routes: [] },
  ];

  for (const via of ['update', 'reconcile'] as const) {
    test(`desired state → route lines (${via})`, async () => {
      const kernel = new FakeKernel();
      const ha = new Ip6tnlHomeAgentDataplane(
        { runner: kernel },
        { haAddress: HA, uplink: 'up0', table: 200, mss: 1400 },
      );
      await ha.init();
      await ha.reconcile([]);
      let current: TunnelBinding[] = [];
      for (const [i, step] of steps.entries()) {
        kernel.clear();
        if (via === 'reconcile') await ha.reconcile(step.bindings);
        else {
          await ha.update([
            ...current
              .filter((c) => !step.bindings.some((n) => n.hoa === c.hoa))
              .map((binding) => ({ op: 'delete' as const, binding })),
            ...step.bindings.map((binding) => ({ op: 'set' as const, binding })),
          ]);
        }
        const routeLines = kernel.lines().filter((l) => l.startsWith('  route '));
        assert.deepEqual(routeLines, step.routes, `step ${i}`);
        current = step.bindings;
      }
      // the routes read back from the kernel's text form are recognised as ours
      kernel.clear();
      await ha.reconcile(current);
      assert.deepEqual(
        kernel.lines().filter((l) => l.startsWith('  route ')),
        [],
      );
    });
  }

  test('flush removes the routes, the table and the device', async () => {
    const kernel = new FakeKernel();
    const ha = new Ip6tnlHomeAgentDataplane(
      { runner: kernel },
      { haAddress: HA, uplink: 'up0', table: 200, mss: 1400 },
    );
    await ha.init();
    await ha.reconcile([b(1, '2001:db8:a::2')]);
    await ha.flush();
    assert.equal(kernel.routes.size, 0);
    assert.equal(kernel.nft.size, 0);
    assert.ok(!kernel.links.has(TUNNEL_DEVICE));
  });
});

describe('Ip6tnlMobileRouterDataplane', () => {
  test('initHost, activate, flushHost: expected lines', async () => {
    const kernel = new FakeKernel();
    const mr = new Ip6tnlMobileRouterDataplane({ runner: kernel });
    await mr.initHost({ coa: '2001:db8:a::2', haAddress: HA, uplink: 'up0', table: 200 });
    const lines = kernel.lines();
    assert.ok(lines.includes(`  link add name ${TUNNEL_DEVICE} type ip6tnl mode ip6ip6 external`));
    assert.ok(
      lines.includes(
        `  add rule ip6 offlink-mr pre meta l4proto ipv6 ip6 saddr != ${HA} fib daddr type local counter drop comment "not-from-ha"`,
      ),
    );
    assert.ok(!lines.some((l) => l.includes('tunsrc') || l.includes('End.DX6')));
    kernel.clear();
    await mr.activate({
      network: 'net1',
      haAddress: HA,
      coa: '2001:db8:a::2',
      uplink: 'up0',
      bridge: 'ofl-net1',
      prefixes: ['2001:db8:100::/64'],
      table: 100,
      rulePref: 100,
    });
    assert.deepEqual(kernel.lines(), [
      'ip -j -6 rule show',
      'ip -6 -force -batch -',
      '  rule add pref 100 from 2001:db8:100::/64 iif ofl-net1 lookup 100 protocol 241',
      `  route replace default proto 241 encap ip6 dst ${HA} src 2001:db8:a::2 dev ${TUNNEL_DEVICE} table 100`,
    ]);
    await mr.flushHost();
    assert.equal(kernel.routes.size, 0);
    assert.ok(!kernel.links.has(TUNNEL_DEVICE));
    assert.ok(!kernel.rules.some((r) => r.protocol === '241'));
  });
});
