// Home agent end to end (root, namespaces): the real daemon process (`offlink ha`), the real seg6 data
// plane, a test MR that registers over real UDP from its namespace, and traffic through the tunnel.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ADDR,
  buildTopology,
  haFiles,
  haMetric,
  haRoutes,
  haStatus,
  killHard,
  mrTunnel,
  NsAgent,
  STATUS,
  specFor,
  startHa,
} from './helpers/homeagent-lab.ts';
import { type NetnsLab, withNetnsOn } from './helpers/netns.ts';
import { dataplaneBackends, needsRoot } from './helpers/requirements.ts';

const BIN = new URL('../bin/offlink.js', import.meta.url).pathname;

/** Whether every UDP probe of `size` bytes comes back from the echo server at `to`. */
async function reach(from: NsAgent, to: string, size = 64, count = 3): Promise<boolean> {
  const r = await from.probe(to, { count, size });
  return r.received === r.sent;
}

/** Whether nothing comes back. */
async function blocked(from: NsAgent, to: string): Promise<boolean> {
  return (await from.probe(to, { count: 2, waitMs: 300 })).received === 0;
}

interface IperfResult {
  end: {
    sum: { packets: number; lost_percent: number };
    sum_received: { bits_per_second: number };
  };
}

async function iperf(lab: NetnsLab, ns: string, args: string[]): Promise<IperfResult> {
  const { stdout } = await lab.exec(ns, [
    'timeout',
    '20',
    'iperf3',
    '-6',
    '--json',
    '-c',
    ADDR.guest,
    ...args,
  ]);
  return JSON.parse(stdout);
}

const backends = await dataplaneBackends();

for (const backend of backends) {
  test(`home agent: forwarding both ways, CoA change, kill -9 restart, deregistration and expiry [${backend}]`, {
    skip: needsRoot(),
    timeout: 120_000,
  }, async (t) => {
    const files = haFiles({ backend });
    try {
      await withNetnsOn(backend, async (lab) => {
        const ns = await buildTopology(lab);
        await mrTunnel(lab, ns.mra, ADDR.coaA);
        await mrTunnel(lab, ns.mrb, ADDR.coaB);
        let ha = await startHa(lab, ns.ha, files.config);
        const [mra, mrb, ga, gb, cn] = [ns.mra, ns.mrb, ns.ga, ns.gb, ns.cn].map((n) => new NsAgent(n)) as [
          NsAgent,
          NsAgent,
          NsAgent,
          NsAgent,
          NsAgent,
        ];
        try {
          await Promise.all([ga.echo(), gb.echo(), cn.echo()]);
          // Nothing is routed to the MNP before a registration.
          assert.equal(await haRoutes(lab, ns.ha, ADDR.mnp), '');
          assert.ok(await blocked(cn, ADDR.guest));

          // Register from CoA A.
          const reg = await mra.bu(specFor(ADDR.coaA, 1));
          assert.equal(reg.ba?.status, 0);
          assert.ok(reg.ba?.authentic, 'BA signed with the SA');
          assert.equal(reg.ba?.from, ADDR.ha, 'BA comes from the address the BU went to');
          t.diagnostic(`BU→BA (first registration, from the MR namespace): ${reg.ms?.toFixed(1)} ms`);
          assert.match(await haRoutes(lab, ns.ha, ADDR.mnp), /2001:db8:a::2/);
          const [binding] = (await haStatus(lab, ns.ha)).bindings;
          assert.equal(binding?.coa, ADDR.coaA);

          // Both directions, 1400-byte packets included.
          assert.ok(await reach(ga, ADDR.cn, 1400), 'guest → correspondent, 1400-byte UDP');
          assert.ok(await reach(cn, ADDR.guest, 1400), 'correspondent → guest, 1400-byte UDP');

          // 1400-byte UDP and bulk TCP both ways. The guests offer MSS 1440 (see buildTopology): with the
          // HA's clamp off (mss: 0) correspondent → guest TCP stalls at 0 bit/s; this checks the clamp works.
          lab.spawn(ns.ga, ['iperf3', '-s']);
          await new Promise((r) => setTimeout(r, 300));
          for (const reverse of [false, true]) {
            const dir = reverse ? 'guest → correspondent' : 'correspondent → guest';
            const udp = await iperf(lab, ns.cn, [
              '-u',
              '-b',
              '20M',
              '-l',
              '1400',
              '-t',
              '1',
              ...(reverse ? ['-R'] : []),
            ]);
            const u = udp.end.sum;
            assert.ok(u.packets > 100, `${dir} UDP packets ${u.packets}`);
            assert.ok(u.lost_percent < 5, `${dir} UDP loss ${u.lost_percent}%`);
            const tcp = await iperf(lab, ns.cn, ['-t', '2', ...(reverse ? ['-R'] : [])]);
            const mbps = tcp.end.sum_received.bits_per_second / 1e6;
            assert.ok(mbps > 10, `${dir} TCP ${mbps} Mbit/s`);
            t.diagnostic(
              `${dir}: UDP 1400 B ${u.packets} pkts ${u.lost_percent}% lost; TCP ${mbps.toFixed(0)} Mbit/s`,
            );
          }

          // CoA change: the same binding (same id) now points at B; A's traffic no longer passes the HA.
          const move = await mrb.bu(specFor(ADDR.coaB, 2));
          assert.equal(move.ba?.status, 0);
          t.diagnostic(`BU→BA (CoA change): ${move.ms?.toFixed(1)} ms`);
          const [moved] = (await haStatus(lab, ns.ha)).bindings;
          assert.equal(moved?.coa, ADDR.coaB);
          assert.equal(moved?.id, binding?.id);
          assert.match(await haRoutes(lab, ns.ha, ADDR.mnp), /2001:db8:b::2/);
          assert.ok(await reach(cn, ADDR.guest), 'correspondent reaches the guest behind B');
          assert.ok(await reach(gb, ADDR.cn), 'guest behind B reaches the correspondent');
          assert.ok(await blocked(ga, ADDR.cn), 'old CoA is no longer accepted');
          if (backend === 'bpf') {
            // the drops by reason are on /metrics (the old CoA's packets: a binding with another CoA)
            const wrong = await haMetric(
              lab,
              ns.ha,
              'offlink_ha_dataplane_packets_total',
              'counter="decapWrongSource"',
            );
            const tunnelled = await haMetric(
              lab,
              ns.ha,
              'offlink_ha_dataplane_packets_total',
              'counter="encapOk"',
            );
            assert.ok(wrong >= 1, `decapWrongSource ${wrong}`);
            assert.ok(tunnelled > 100, `encapOk ${tunnelled}`);
          }

          // kill -9: forwarding goes on without the daemon; after restart the binding is back, unasked.
          await killHard(ha.child);
          assert.ok(await reach(cn, ADDR.guest), 'forwarding while the HA is down');
          ha = await startHa(lab, ns.ha, files.config);
          const [restored] = (await haStatus(lab, ns.ha)).bindings;
          assert.equal(restored?.coa, ADDR.coaB);
          assert.equal(restored?.sequence, 2);
          assert.match(await haRoutes(lab, ns.ha, ADDR.mnp), /2001:db8:b::2/);
          assert.ok(await reach(cn, ADDR.guest), 'forwarding after the restart');
          assert.ok(await reach(gb, ADDR.cn), 'reverse tunnel after the restart');

          // Deregistration removes the routes.
          const dereg = await mrb.bu(specFor(ADDR.coaB, 3, { lifetime: 0 }));
          assert.equal(dereg.ba?.status, 0);
          assert.equal(dereg.ba?.lifetime, 0);
          assert.equal((await haStatus(lab, ns.ha)).bindings.length, 0);
          assert.equal(await haRoutes(lab, ns.ha, ADDR.mnp), '');
          assert.ok(await blocked(cn, ADDR.guest));

          // Expiry removes them too: 4 s lifetime.
          const short = await mra.bu(specFor(ADDR.coaA, 4, { lifetime: 1 }));
          assert.equal(short.ba?.status, 0);
          assert.equal(short.ba?.lifetime, 1);
          assert.ok(await reach(cn, ADDR.guest, 64, 1));
          await new Promise((r) => setTimeout(r, 4500));
          assert.equal((await haStatus(lab, ns.ha)).bindings.length, 0);
          assert.equal(await haRoutes(lab, ns.ha, ADDR.mnp), '');
          assert.ok(await blocked(cn, ADDR.guest));

          // `offlink status --ha` prints the binding cache as a table.
          assert.equal((await mra.bu(specFor(ADDR.coaA, 5))).ba?.status, 0);
          const table = await lab.exec(ns.ha, [process.execPath, BIN, 'status', '--ha', STATUS]);
          assert.match(table.stdout, /^HOME ADDRESS +CARE-OF ADDRESS/);
          assert.match(table.stdout, /2001:db8:ffff::101 +2001:db8:a::2 +2001:db8:100::\/64 +5 /);

          // SIGTERM: a clean exit that leaves forwarding in place; `offlink ha flush` then removes it all.
          const exited = new Promise((r) => ha.child.once('exit', (code) => r(code)));
          ha.child.kill('SIGTERM');
          assert.equal(await exited, 0);
          assert.ok(await reach(cn, ADDR.guest), 'forwarding after a clean stop');
          await lab.exec(ns.ha, [process.execPath, BIN, 'ha', 'flush', '--config', files.config]);
          assert.equal(await haRoutes(lab, ns.ha, ADDR.mnp), '');
          assert.equal((await lab.exec(ns.ha, ['nft', 'list', 'tables'])).stdout.trim(), '');
          const rules = (await lab.exec(ns.ha, ['ip', '-6', 'rule'])).stdout;
          assert.doesNotMatch(rules, /2001:db8:ffff::1/, rules);
          assert.ok(await blocked(cn, ADDR.guest));
        } finally {
          await Promise.all([mra, mrb, ga, gb, cn].map((a) => a.close()));
        }
      });
    } finally {
      files.dispose();
    }
  });
}
