import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ADDRESSING, planTopology } from './topology.ts';

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
});
