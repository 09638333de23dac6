// The guest link and CoA tracking of a mobile router in namespaces (root), without a home agent: the
// bridge exists on every host with the same MAC and gateway, radvd runs only while active and gives a guest
// its address by SLAAC, and a changed uplink address is noticed and registered from.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { A, BRIDGE, buildTopology, MrLabProcesses, sleep, waitForSlaac } from './helpers/mr-lab.ts';
import { type NetnsLab, withNetns } from './helpers/netns.ts';
import { needsRoot } from './helpers/requirements.ts';

const skip = needsRoot();

async function linkInfo(lab: NetnsLab, ns: string, dev: string) {
  const { stdout } = await lab.exec(ns, ['ip', '-j', '-d', 'addr', 'show', 'dev', dev]);
  return (
    JSON.parse(stdout) as Array<{
      address: string;
      mtu: number;
      operstate: string;
      linkinfo?: { info_kind?: string; info_data?: { stp_state?: number; forward_delay?: number } };
      addr_info: Array<{ local: string; prefixlen: number; scope: string }>;
    }>
  )[0]!;
}

describe('mobile router guest link and CoA tracking (namespaces)', { skip }, () => {
  it('bridge on every host, radvd only while active, SLAAC for the guest, CoA changes followed', async () => {
    await withNetns(async (lab) => {
      const p = new MrLabProcesses();
      try {
        const t = await buildTopology(lab);
        const a = await p.startMr(t.hostA, 'a', {}, { dataplane: 'none' });
        const b = await p.startMr(t.hostB, 'b', {}, { dataplane: 'none' });

        // The same bridge on both hosts, standby included.
        const brA = await linkInfo(lab, t.hostA, BRIDGE);
        const brB = await linkInfo(lab, t.hostB, BRIDGE);
        assert.equal(brA.address, brB.address, 'same MAC on every host');
        assert.equal(brA.mtu, 1460);
        assert.equal(brA.linkinfo?.info_kind, 'bridge');
        assert.equal(brA.linkinfo?.info_data?.stp_state, 0);
        assert.equal(brA.linkinfo?.info_data?.forward_delay, 0);
        const addrs = brA.addr_info.map((x) => `${x.local}/${x.prefixlen}`).sort();
        assert.deepEqual(
          addrs,
          ['2001:db8:100::1/64', 'fe80::1/64'],
          'gateway + fe80::1 only, no EUI-64 link-local',
        );
        assert.equal(existsSync(join(p.dir, 'run-a', `radvd-${BRIDGE}.pid`)), false, 'no radvd on standby');

        // Plug the guest into host A's bridge and activate (no HA here: the registration keeps retrying).
        await lab.exec(t.hostA, ['ip', 'link', 'set', 'vg1', 'master', BRIDGE, 'up']);
        const t0 = Date.now();
        await a.call('activate', { wait: false });
        const guestAddr = await waitForSlaac(lab, t.guest);
        const slaacMs = Date.now() - t0;
        console.log(`# SLAAC: guest has ${guestAddr} ${slaacMs} ms after activate`);
        const { stdout: routes } = await lab.exec(t.guest, ['ip', '-6', 'route', 'show', 'default']);
        assert.match(routes, /default via fe80::1 dev g0/);
        const { stdout: mtu } = await lab.exec(t.guest, ['sysctl', '-n', 'net.ipv6.conf.g0.mtu']);
        assert.equal(mtu.trim(), '1460');
        assert.ok(existsSync(join(p.dir, 'run-a', `radvd-${BRIDGE}.pid`)), 'radvd running while active');
        const st = await a.status();
        assert.equal(st.state, 'registering');
        assert.ok(st.counters['buSent']! >= 1);

        // Renumber host A's uplink: the MR follows the new CoA and registers from it.
        const tc = Date.now();
        await lab.addr(t.hostA, 'up0', '2001:db8:a::3/64');
        await lab.exec(t.hostA, ['ip', '-6', 'addr', 'del', `${A.hostA.coa}/64`, 'dev', 'up0']);
        const ev = await a.event((e) => e['event'] === 'coaChanged' && e['coa'] === '2001:db8:a::3', 5000);
        console.log(`# CoA change noticed ${Number(ev['at']) - tc} ms after the renumbering began`);
        assert.equal((await a.status()).coa, '2001:db8:a::3');

        // Standby: radvd stops; B stays untouched.
        await a.call('standby');
        assert.equal(existsSync(join(p.dir, 'run-a', `radvd-${BRIDGE}.pid`)), false);
        assert.equal((await a.status()).state, 'standby');
        assert.equal((await b.status()).state, 'standby');
        // An uplink without any address: activation waits instead of failing.
        await lab.exec(t.hostB, ['ip', '-6', 'addr', 'flush', 'dev', 'up0', 'scope', 'global']);
        await sleep(1500);
        await b.call('activate', { wait: false });
        await b.event((e) => e['event'] === 'state' && e['to'] === 'waitingForCoa', 5000);
        await lab.addr(t.hostB, 'up0', `${A.hostB.coa}/64`);
        await b.event((e) => e['event'] === 'state' && e['to'] === 'registering', 5000);
      } finally {
        await p.cleanup();
      }
    });
  });
});
