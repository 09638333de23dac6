// Home agent cluster end to end (issue 16; root, namespaces, real etcd): two `offlink ha` processes with
// store: etcd and the same HA address, the real data plane in each. What one HA accepts, the other
// programs into its kernel from the etcd watch, so when the Internet's route to the HA address moves to it,
// it forwards at once without a new BU; CoA changes and deregistrations reach both.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { hasEtcd } from './helpers/etcd.ts';
import {
  bgpRoutes,
  type ClusterRig,
  carrier,
  HA_NAMES,
  hasBird,
  homeRoute,
  killCarrier,
  openHaClusterRig,
  until,
  untilBothTunnel,
} from './helpers/ha-cluster-lab.ts';
import { ADDR, haRoutes, haStatus, killHard, STATUS, specFor } from './helpers/homeagent-lab.ts';
import { dataplaneBackends, needsRoot, skipUnless } from './helpers/requirements.ts';

const backends = await dataplaneBackends();
const BIN = new URL('../bin/offlink.js', import.meta.url).pathname;

for (const backend of backends) {
  describe(`home agent cluster [${backend}]`, {
    skip: needsRoot() || skipUnless(hasEtcd(), 'etcd (apt-get install etcd-server)'),
    timeout: 180_000,
  }, () => {
    let rig: ClusterRig | undefined;
    let sequence = 0;

    before(async () => {
      rig = await openHaClusterRig(backend);
    });
    after(async () => {
      await rig?.close();
    });

    async function reaches(from: 'cn' | 'ga' | 'gb', to: string): Promise<boolean> {
      const r = await rig!.agents[from].probe(to, { count: 3, size: 1400 });
      return r.received === r.sent;
    }

    it('a BU accepted by HA1 is programmed in both kernels; HA2 then forwards without any BU', async () => {
      const r = rig!;
      await r.routeHomeTo('ha1');
      const reg = await r.agents.mra.bu(specFor(ADDR.coaA, ++sequence));
      assert.equal(reg.ba?.status, 0);
      await untilBothTunnel(r, ADDR.coaA);
      assert.ok(await reaches('cn', ADDR.guest), 'through HA1');
      await r.routeHomeTo('ha2');
      assert.ok(await reaches('cn', ADDR.guest), 'correspondent → guest through HA2');
      assert.ok(await reaches('ga', ADDR.cn), 'guest → correspondent through HA2');
      const [b2] = (await haStatus(r.lab, r.ns.ha2)).bindings;
      assert.equal(b2?.sequence, sequence, 'HA2 holds the binding HA1 accepted, no BU sent to HA2');
    });

    it('offlink status --ha on HA2 lists both members, serving, and that HA1 served the binding', async () => {
      const r = rig!;
      const status = async () =>
        (await r.lab.exec(r.ns.ha2, [process.execPath, BIN, 'status', '--ha', STATUS])).stdout;
      await until('both members serving', async () => (await status()).match(/ serving /g)?.length === 2);
      const text = await status();
      assert.match(text, /^cluster \(2 members; this HA: ha2, etcd reachable/m);
      assert.match(text, /^ha1 +serving +(yes|-) /m);
      assert.match(text, /^ha2 +serving +(yes|-) /m);
      assert.equal(text.match(/ yes /g)?.length, 1, 'one expiry owner');
      assert.match(text, new RegExp(`^${ADDR.hoa} +${ADDR.coaA} .* ha1$`, 'm'), 'served by HA1');
    });

    it('a CoA change accepted by HA2 moves the tunnel in HA1 too', async () => {
      const r = rig!;
      await r.routeHomeTo('ha2');
      const move = await r.agents.mrb.bu(specFor(ADDR.coaB, ++sequence));
      assert.equal(move.ba?.status, 0);
      await untilBothTunnel(r, ADDR.coaB);
      await r.routeHomeTo('ha1');
      assert.ok(await reaches('cn', ADDR.guest), 'through HA1 to the guest behind B');
    });

    it('a deregistration accepted by HA1 removes the binding from both', async () => {
      const r = rig!;
      await r.routeHomeTo('ha1');
      const dereg = await r.agents.mrb.bu(specFor(ADDR.coaB, ++sequence, { lifetime: 0 }));
      assert.equal(dereg.ba?.status, 0);
      await untilBothTunnel(r, undefined);
      for (const name of HA_NAMES)
        assert.deepEqual((await haStatus(r.lab, r.ns[name])).bindings, [], `${name} holds no binding`);
    });
  });
}

for (const backend of backends) {
  describe(`home agent cluster, HA address by BGP anycast [${backend}]`, {
    skip:
      needsRoot() ||
      skipUnless(hasEtcd(), 'etcd (apt-get install etcd-server)') ||
      skipUnless(hasBird(), 'BIRD (apt-get install bird2)'),
    timeout: 240_000,
  }, () => {
    let rig: ClusterRig | undefined;
    let sequence = 0;

    before(async () => {
      rig = await openHaClusterRig(backend, { bgp: true });
    });
    after(async () => {
      await rig?.close();
    });

    /** Both HAs running (a case before may have killed one). */
    async function bothRunning(): Promise<void> {
      const r = rig!;
      for (const name of HA_NAMES) {
        const child = r.has[name]?.child;
        if (!child || child.exitCode !== null || child.signalCode !== null) await r.start(name);
      }
    }

    it('kill -9 of the HA carrying a stream: the other HA carries it on, no BU, no binding lost', async (t) => {
      const r = rig!;
      const reg = await r.agents.mra.bu(specFor(ADDR.coaA, ++sequence));
      assert.equal(reg.ba?.status, 0);
      await untilBothTunnel(r, ADDR.coaA);
      // 100 probes a second for 4 s each way; the kill 1.5 s in. The announcement goes with the process:
      // how long until the router moved to the survivor.
      const { victim, survivor, rerouteMs, toGuest, fromGuest } = await killCarrier(r, 4, 1500);
      t.diagnostic(
        `killed ${victim}: route moved in ${rerouteMs} ms; correspondent → guest gap ${toGuest.gapMs} ms ` +
          `(${toGuest.sent - toGuest.received} lost), guest → correspondent gap ${fromGuest.gapMs} ms ` +
          `(${fromGuest.sent - fromGuest.received} lost)`,
      );
      // The dead HA's kernel forwards (its bpf maps stay) until the route moves, so probes may not even
      // notice; the reroute itself must happen well within the target (1 s), not after a BGP hold time.
      assert.ok(rerouteMs < 2000, `route moved ${rerouteMs} ms after the kill`);
      // The target is ≤ 1 s (p50, bench); 2 s here leaves room for a loaded machine and still fails where
      // the announcement outlives the process (a BGP hold time: 9 s).
      for (const [dir, p] of [
        ['correspondent → guest', toGuest],
        ['guest → correspondent', fromGuest],
      ] as const) {
        assert.ok(p.received > p.sent / 2, `${dir}: the stream went on (${p.received}/${p.sent})`);
        assert.ok(p.gapMs < 2000, `${dir}: gap ${p.gapMs} ms`);
      }
      const [b] = (await haStatus(r.lab, r.ns[survivor])).bindings;
      assert.equal(b?.sequence, sequence, 'the binding survived, and no BU was sent');
    });

    it('an HA cut off from etcd withdraws the HA address and stops answering BUs; the other serves', async () => {
      const r = rig!;
      await bothRunning();
      await bgpRoutes(r.lab, r.ns, 'an HA carries the home prefixes', (via) => via !== '');
      const victim = carrier(await homeRoute(r.lab, r.ns))!;
      const survivor = HA_NAMES.find((n) => n !== victim)!;
      // Drop everything between the victim and etcd (inet's loopback addresses), both ways, in the victim.
      await r.lab.exec(
        r.ns[victim],
        ['nft', '-f', '-'],
        'table inet partition {\n chain out {\n  type filter hook output priority 0;\n  ip6 daddr 2001:db8:e::/64 drop\n }\n}\n',
      );
      try {
        await bgpRoutes(r.lab, r.ns, `${victim} withdraws`, (via) => carrier(via) === survivor);
        const reg = await r.agents.mra.bu(specFor(ADDR.coaA, ++sequence), 5000);
        assert.equal(reg.ba?.status, 0, 'the BU reaches the other HA, which accepts it');
        const [b] = (await haStatus(r.lab, r.ns[survivor])).bindings;
        assert.equal(b?.sequence, sequence);
      } finally {
        await r.lab.exec(r.ns[victim], ['nft', 'delete', 'table', 'inet', 'partition']);
      }
      // Back with etcd: it catches up (the watch resumes from its last revision) and announces again.
      await until(
        `${victim} catches up`,
        async () => {
          const [b] = (await haStatus(r.lab, r.ns[victim])).bindings;
          return b?.sequence === sequence;
        },
        30_000,
      );
    });
    it('an HA restarted after missing a CoA change catches up from etcd before it serves', async () => {
      const r = rig!;
      await bothRunning();
      const victim = carrier(await homeRoute(r.lab, r.ns))!;
      const other = HA_NAMES.find((n) => n !== victim)!;
      await killHard(r.has[other]!.child);
      const move = await r.agents.mrb.bu(specFor(ADDR.coaB, ++sequence));
      assert.equal(move.ba?.status, 0, `accepted by ${victim} while ${other} is down`);
      await r.start(other); // resolves once it serves
      assert.equal(await haRoutes(r.lab, r.ns[other], ADDR.mnp), `tunnel ${ADDR.ha} -> ${ADDR.coaB}`);
      const [b] = (await haStatus(r.lab, r.ns[other])).bindings;
      assert.equal(b?.sequence, sequence);
    });

    it('losing the etcd leader (1 of 3 members) changes nothing: BUs commit, both HAs program them', async () => {
      const r = rig!;
      await bothRunning();
      const leader = await r.etcd.leader();
      await r.etcd.killMember(leader);
      try {
        const back = await r.agents.mra.bu(specFor(ADDR.coaA, ++sequence), 8000);
        assert.equal(back.ba?.status, 0, 'accepted across the election');
        await untilBothTunnel(r, ADDR.coaA);
        // Still announced: the route to the home prefixes is there, both members reach etcd.
        assert.ok(carrier(await homeRoute(r.lab, r.ns)));
        for (const name of HA_NAMES) {
          const res = await r.lab.exec(r.ns[name], ['curl', '-s', `${STATUS}/status`]);
          const status = JSON.parse(res.stdout) as { cluster: { etcd: string } };
          assert.equal(status.cluster.etcd, 'reachable', `${name} reaches etcd`);
        }
      } finally {
        r.etcd.startMember(leader);
        await r.etcd.healthy();
      }
    });
  });
}
