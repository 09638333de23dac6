import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ADDRESSING, ADDRESSING_V4, guestIpv4, labNetSpec, planTopology } from './topology.ts';

describe('lab topology plan', () => {
  it('uses documentation prefixes and valid interface names', () => {
    for (const kind of ['off-link', 'on-link'] as const) {
      const plan = planTopology(kind, 3);
      const addresses = [
        ...Object.values(ADDRESSING).map((row) => row.prefix),
        plan.ha.address,
        plan.cn.address,
        ...plan.guests.flatMap((g) => [g.prefix, g.address, g.homeAddress]),
      ];
      for (const a of addresses) assert.match(a, /^2001:db8:/, a);
      const names = [
        ...plan.hosts.flatMap((h) => [h.uplink, h.inetDev, h.trafficDev]),
        ...plan.guests.flatMap((g) => [g.bridge, g.port, g.dev]),
      ];
      for (const n of names) assert.ok(n.length >= 1 && n.length <= 15, n);
      assert.ok(plan.namespaces.every((n) => n.startsWith('ofl-')));
      assert.equal(new Set(plan.namespaces).size, plan.namespaces.length);
    }
  });

  it('gives each off-link guest its own network, and the on-link guests one segment', () => {
    const off = planTopology('off-link', 2);
    assert.deepEqual(
      off.guests.map((g) => [g.network, g.prefix, g.address, g.bridge, g.port]),
      [
        ['net1', '2001:db8:100::/64', '2001:db8:100::10', 'ofl-net1', 'vg-guest-1'],
        ['net2', '2001:db8:101::/64', '2001:db8:101::10', 'ofl-net2', 'vg-guest-2'],
      ],
    );
    assert.equal(off.lan, undefined);
    assert.deepEqual(
      off.hosts.map((h) => h.trafficDev),
      ['up0', 'up0'],
    );
    const on = planTopology('on-link', 2);
    assert.deepEqual(
      on.guests.map((g) => [g.prefix, g.address, g.bridge]),
      [
        ['2001:db8:100::/64', '2001:db8:100::10', 'br-lan'],
        ['2001:db8:100::/64', '2001:db8:100::11', 'br-lan'],
      ],
    );
    assert.ok(on.namespaces.includes('ofl-lan'));
    assert.deepEqual(
      on.hosts.map((h) => h.trafficDev),
      ['lan0', 'lan0'],
    );
  });

  it('describes the lab as one network spec: every link end in a namespace of the plan, uplinks down for radvd', () => {
    for (const kind of ['off-link', 'on-link'] as const) {
      const plan = planTopology(kind, 2);
      const spec = labNetSpec(plan, 'lab');
      const namespaces = new Set(spec.namespaces?.map((n) => n.name));
      assert.deepEqual([...namespaces], [...plan.namespaces]);
      for (const v of spec.veths ?? []) {
        for (const end of [v.a, v.b]) {
          assert.ok(namespaces.has(end.ns), `${end.dev} in ${end.ns}`);
          assert.ok(end.dev.length <= 15, end.dev);
        }
      }
      for (const h of plan.hosts) {
        const uplink = spec.veths?.find((v) => v.b.ns === h.ns && v.b.dev === h.uplink);
        assert.equal(uplink?.b.up, false, `${h.name}'s uplink waits for radvd`);
        assert.equal(uplink?.b.mac, h.uplinkMac);
        assert.equal(uplink?.b.addresses, undefined, 'the care-of address comes by SLAAC');
      }
      const forwarding = spec.namespaces?.filter((n) => n.forwarding).map((n) => n.name);
      assert.deepEqual(forwarding, ['ofl-inet', 'ofl-ha', 'ofl-host-a', 'ofl-host-b']);
    }
  });

  it('off-link: one guest bridge per network on each host when the lab makes them, none when the agents do', () => {
    const plan = planTopology('off-link', 2, 'netns', 'ipv6');
    assert.deepEqual(
      labNetSpec(plan, 'lab').bridges?.map((b) => [b.ns, b.name, b.mtu, b.addresses]),
      [
        ['ofl-host-a', 'ofl-net1', 1460, ['2001:db8:100::1/64', 'fe80::1/64']],
        ['ofl-host-a', 'ofl-net2', 1460, ['2001:db8:101::1/64', 'fe80::1/64']],
        ['ofl-host-b', 'ofl-net1', 1460, ['2001:db8:100::1/64', 'fe80::1/64']],
        ['ofl-host-b', 'ofl-net2', 1460, ['2001:db8:101::1/64', 'fe80::1/64']],
      ],
    );
    const byAgents = labNetSpec(plan, 'agent');
    assert.deepEqual(byAgents.bridges, []);
    // ofl-inet routes each MNP to the HA
    assert.deepEqual(
      byAgents.routes?.filter((r) => r.ns === 'ofl-inet').map((r) => r.to),
      ['2001:db8:f::/64', '2001:db8:100::/64', '2001:db8:101::/64'],
    );
  });

  it('ipv6: no IPv4 anywhere in the plan or the spec', () => {
    for (const kind of ['off-link', 'on-link'] as const) {
      const plan = planTopology(kind, 2, 'netns', 'ipv6');
      assert.equal(plan.family, 'ipv6');
      assert.ok(plan.guests.every((g) => g.ipv4 === undefined));
      assert.equal(plan.cn.address4, undefined);
      assert.equal(plan.ha.linkAddress4, undefined);
      const text = JSON.stringify(labNetSpec(plan, 'lab'));
      assert.doesNotMatch(text, /\d+\.\d+\.\d+\.\d+|ipv4/);
    }
  });

  it('dual (the default): each off-link network gets an IPv4 prefix, the guest a static address and the prefix’s .1 as gateway', () => {
    const plan = planTopology('off-link', 2);
    assert.equal(plan.family, 'dual');
    assert.deepEqual(
      plan.guests.map((g) => g.ipv4),
      [
        { prefix: '10.1.0.0/24', address: '10.1.0.10', gateway: '10.1.0.1' },
        { prefix: '10.1.1.0/24', address: '10.1.1.10', gateway: '10.1.1.1' },
      ],
    );
    assert.equal(plan.cn.address4, '172.16.3.2');
    assert.equal(plan.ha.linkAddress4, '172.16.1.2');
    assert.deepEqual(
      planTopology('on-link', 2).guests.map((g) => g.ipv4),
      [
        { prefix: '10.1.0.0/24', address: '10.1.0.10', gateway: '10.1.0.1' },
        { prefix: '10.1.0.0/24', address: '10.1.0.11', gateway: '10.1.0.1' },
      ],
    );
    // QEMU guests too: the same IPv4 plan, which their kernel command line carries (guestIpv4)
    const qemu = planTopology('off-link', 1, 'qemu', 'dual').guests[0]!;
    assert.deepEqual(qemu.ipv4, { prefix: '10.1.0.0/24', address: '10.1.0.10', gateway: '10.1.0.1' });
    assert.deepEqual(guestIpv4(qemu.ipv4), { address: '10.1.0.10/24', gateway: '10.1.0.1' });
    assert.equal(planTopology('off-link', 1, 'qemu', 'ipv6').guests[0]!.ipv4, undefined);
  });

  it('dual off-link spec: IPv4 on the HA and correspondent links, the IPv4 prefix routed to the HA only, IPv4 forwarding on the routers', () => {
    const plan = planTopology('off-link', 1);
    const spec = labNetSpec(plan, 'lab');
    const end = (ns: string, dev: string) =>
      spec.veths?.flatMap((v) => [v.a, v.b]).find((e) => e.ns === ns && e.dev === dev);
    assert.deepEqual(end('ofl-inet', 'to-ha')?.addresses, ['2001:db8:1::1/64', '172.16.1.1/24']);
    assert.deepEqual(end('ofl-ha', 'up0')?.addresses, ['2001:db8:1::2/64', '172.16.1.2/24']);
    assert.deepEqual(end('ofl-inet', 'to-cn')?.addresses, ['2001:db8:c::1/64', '172.16.3.1/24']);
    assert.deepEqual(end('ofl-cn', 'up0')?.addresses, ['2001:db8:c::2/64', '172.16.3.2/24']);
    // the hosts carry no IPv4: the guests' IPv4 travels in the IPv6 tunnel
    for (const h of plan.hosts) assert.equal(end(h.ns, h.uplink)?.addresses, undefined);
    const g = end('ofl-guest-1', 'eth0');
    assert.deepEqual(g?.addresses, ['2001:db8:100::10/64', '10.1.0.10/24']);
    assert.deepEqual(g?.ipv4, { arp_evict_nocarrier: 0 });
    const v4routes = spec.routes
      ?.filter((r) => r.to.includes('.') || r.via?.includes('.'))
      .map((r) => [r.ns, r.to, r.via]);
    assert.deepEqual(v4routes, [
      ['ofl-ha', 'default', ADDRESSING_V4.haLink.inet],
      ['ofl-cn', 'default', ADDRESSING_V4.cn.inet],
      ['ofl-inet', '10.1.0.0/24', ADDRESSING_V4.haLink.ha],
      ['ofl-guest-1', 'default', '10.1.0.1'],
    ]);
    assert.deepEqual(
      spec.namespaces?.filter((n) => n.sysctls?.includes('net.ipv4.ip_forward=1')).map((n) => n.name),
      ['ofl-inet', 'ofl-ha', 'ofl-host-a', 'ofl-host-b'],
    );
    // the lab's own guest bridges carry the IPv4 gateway as the agents' guest links do
    assert.deepEqual(
      spec.bridges?.map((b) => b.addresses),
      [
        ['2001:db8:100::1/64', 'fe80::1/64', '10.1.0.1/24'],
        ['2001:db8:100::1/64', 'fe80::1/64', '10.1.0.1/24'],
      ],
    );
  });

  it('dual on-link spec: plain IPv4 routing, ofl-inet is the segment’s IPv4 gateway and nothing goes to the HA', () => {
    const plan = planTopology('on-link', 1);
    const spec = labNetSpec(plan, 'lab');
    const lan = spec.veths?.find((v) => v.a.ns === 'ofl-inet' && v.a.dev === 'to-lan');
    assert.deepEqual(lan?.a.addresses, ['2001:db8:100::1/64', 'fe80::1/64', '10.1.0.1/24']);
    assert.deepEqual(
      spec.routes?.filter((r) => r.ns === 'ofl-inet').map((r) => r.to),
      [ADDRESSING.home.prefix],
      'no route of the guest segment to the HA',
    );
    assert.deepEqual(
      spec.routes?.filter((r) => r.ns === 'ofl-guest-1').map((r) => [r.to, r.via]),
      [
        ['default', 'fe80::1'],
        ['default', '10.1.0.1'],
      ],
    );
  });
});

describe('lab topology with two home agents', () => {
  it('adds ofl-ha2, etcd on ofl-inet, and leaves the home prefixes to BGP (no static route, no HA address on lo)', () => {
    const plan = planTopology('off-link', 1, 'netns', 'dual', 2);
    assert.deepEqual(
      plan.cluster?.members.map((m) => [m.name, m.ns, m.linkAddress, m.linkAddress4, m.file]),
      [
        ['ha1', 'ofl-ha', '2001:db8:1::2', '172.16.1.2', 'ha'],
        ['ha2', 'ofl-ha2', '2001:db8:2::2', '172.16.2.2', 'ha2'],
      ],
    );
    assert.ok(plan.namespaces.includes('ofl-ha2'));
    const spec = labNetSpec(plan, 'agent');
    assert.deepEqual(
      spec.addresses?.map((a) => [a.ns, a.dev, a.address]),
      [
        ['ofl-inet', 'lo', '2001:db8:e::1/128'],
        ['ofl-inet', 'lo', '2001:db8:e::2/128'],
        ['ofl-inet', 'lo', '2001:db8:e::3/128'],
      ],
    );
    const inetRoutes = spec.routes?.filter((r) => r.ns === 'ofl-inet') ?? [];
    assert.deepEqual(inetRoutes, [], 'BGP routes the home prefix, the MNP and the IPv4 prefix');
    assert.ok(spec.routes?.some((r) => r.ns === 'ofl-ha2' && r.to === 'default' && r.via === '172.16.2.1'));
    assert.ok(spec.namespaces?.find((n) => n.name === 'ofl-ha2')?.forwarding);
    assert.equal(planTopology('off-link').cluster, undefined, 'one HA by default');
    assert.throws(() => planTopology('on-link', 1, 'netns', 'dual', 2), /off-link topology/);
  });
});
