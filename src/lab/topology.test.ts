import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ADDRESSING, labNetSpec, planTopology } from './topology.ts';

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
    const plan = planTopology('off-link', 2);
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
});
