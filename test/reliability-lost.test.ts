// Lost messages (root, namespaces, the real daemons): nftables rules in the hosts' namespaces lose the
// first Binding Updates of a first registration, the destination's first BU of a handover, the first
// BA, and the handover notification itself; every procedure still completes by retransmission, within
// the back-off schedule (docs/architecture.md, signaling: 1.5 s for a first registration, 1 s otherwise, doubling), and the
// test reports how long each took.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  agentStatus,
  HOSTS,
  type Host,
  type Lab,
  logLines,
  logTime,
  migrateRecord,
  type ProbeReport,
  report,
  withAgentRig,
} from './helpers/agent-lab.ts';
import { DropFirst, hexAddress, waitUntil } from './helpers/faults.ts';
import { ADDR, ECHO_PORT, haStatus } from './helpers/homeagent-lab.ts';
import type { NetnsLab } from './helpers/netns.ts';
import type { Proc } from './helpers/procs.ts';
import { dataplaneBackends, needsRoot } from './helpers/requirements.ts';

// UDP payload = inner IPv6 header + MH: the inner source (a BU's HoA) starts 8 bytes into it, the inner
// destination (a BA's HoA) 24 bytes; the transport header (@th) is the 8-byte UDP header before that.
const NET1_BU = `udp dport 4191 @th,128,128 0x${hexAddress(ADDR.hoa)}`;
const NET1_BA = `udp sport 4191 @th,256,128 0x${hexAddress(ADDR.hoa)}`;
const HANDOVER_REQUEST = 'tcp dport 7400 @ih,0,128 0x504f5354202f76312f68616e646f7665'; // "POST /v1/handove" (128 bits at most)

const backends = await dataplaneBackends();

for (const backend of backends) {
  test(`lost BUs, BAs and handover notifications are recovered by retransmission [${backend}]`, {
    skip: needsRoot(),
    timeout: 180_000,
  }, async (t) => {
    // 1. The first two BUs of net1's first registration are lost: registered at the third, 1.5 + 3 s later.
    let firstBus: DropFirst | undefined;
    await withAgentRig(
      backend,
      'lost-it',
      (netns) => ({
        beforeAgents: async (ns) => {
          firstBus = await DropFirst.install(netns, ns['host-a'], {
            hook: 'output',
            match: NET1_BU,
            count: 2,
          });
        },
      }),
      async ({ netns, procs, lab }) => {
        const a = lab.agents['host-a'];
        const net1 = [/"network":"net1"/];
        // from the first BU (setting the host up before it — the data plane's programs — is not the schedule)
        const started = logTime(logLines(a, ...net1, /"msg":"BU sent"/)[0]!);
        const registered = logTime(logLines(a, ...net1, /"msg":"registered"/)[0]!);
        const retransmits = logLines(a, ...net1, /no BA: retransmitting the BU/);
        const firstMs = registered - started;
        t.diagnostic(
          `first registration through 2 lost BUs: ${firstMs} ms (schedule 1500 + 3000 ms), ${retransmits.length} retransmissions`,
        );
        assert.equal(await firstBus!.dropped(), 2);
        assert.equal(retransmits.length, 2);
        assert.ok(firstMs >= 4500 - 50 && firstMs < 4500 + 2000, `${firstMs} ms`);
        await firstBus!.remove();

        await procs.app(lab.ns.cn, ['udp-echo', ADDR.cn, String(ECHO_PORT)]);
        const pinger = await procs.app(lab.ns.g1, ['udp-pinger', ADDR.cn, String(ECHO_PORT), '10']);
        await flows(pinger);

        // 2. The destination's first BU of a make-before-break handover is lost: the BU is sent again 1 s later.
        const drop2 = await DropFirst.install(netns, lab.ns['host-b'], {
          hook: 'output',
          match: NET1_BU,
          count: 1,
        });
        const m2 = await move(t, netns, lab, pinger, 'host-a', 'host-b', 'first BU of the handover lost');
        assert.equal(await drop2.dropped(), 1);
        assert.ok(m2 >= 1000 && m2 < 1000 + 2000, `notification answered after ${m2} ms`);
        await drop2.remove();

        // 3. The first BA to the destination is lost (the HA did accept the BU): the BU is sent again 1 s later.
        const drop3 = await DropFirst.install(netns, lab.ns['host-a'], {
          hook: 'input',
          match: NET1_BA,
          count: 1,
        });
        const m3 = await move(t, netns, lab, pinger, 'host-b', 'host-a', 'first BA of the handover lost');
        assert.equal(await drop3.dropped(), 1);
        assert.ok(m3 >= 1000 && m3 < 1000 + 2000, `notification answered after ${m3} ms`);
        await drop3.remove();

        // 4. The handover notification's first two requests are lost on the wire: TCP sends them again.
        const drop4 = await DropFirst.install(netns, lab.ns['host-a'], {
          hook: 'output',
          match: HANDOVER_REQUEST,
          count: 2,
        });
        await move(
          t,
          netns,
          lab,
          pinger,
          'host-a',
          'host-b',
          'first 2 handover requests lost (TCP retransmits)',
        );
        assert.equal(await drop4.dropped(), 2);
        await drop4.remove();

        // 5. The handover notification is refused three times (connection reset, as from a destination
        //    whose agent is restarting): the source tries again with back-off.
        const reset = await resetFirst(netns, lab.ns['host-a'], 3);
        const m5 = await move(t, netns, lab, pinger, 'host-b', 'host-a', 'first 3 handover requests reset');
        assert.equal(await reset.dropped(), 3);
        assert.ok(m5 >= 250 + 500 + 1000 && m5 < 1750 + 2000, `notification answered after ${m5} ms`);
        await reset.remove();
      },
    );
  });

  /** Answer the first `count` handover requests arriving in `ns` with a TCP reset. */
  function resetFirst(netns: NetnsLab, ns: string, count: number): Promise<DropFirst> {
    return DropFirst.install(netns, ns, {
      hook: 'input',
      match: HANDOVER_REQUEST,
      count,
      verdict: 'reject with tcp reset',
    });
  }

  /** Wait until the guest's probes come back again. */
  async function flows(pinger: Proc): Promise<ProbeReport> {
    await report(pinger);
    return waitUntil('the stream to flow', async () => {
      await new Promise((r) => setTimeout(r, 1200));
      const r = await report(pinger);
      return r.received > 0 && r.trailingLost === 0 ? r : undefined;
    });
  }

  /** Migrate net1 `from` → `to`; checks it succeeded and exactly `to` is active; returns notificationMs. */
  async function move(
    t: { diagnostic(s: string): void },
    netns: NetnsLab,
    lab: Lab,
    pinger: Proc,
    from: Host,
    to: Host,
    what: string,
  ): Promise<number> {
    const res = await migrateRecord(lab, 'net1', from, to);
    const r = res.record;
    assert.equal(res.code, 0, `${what}: ${res.stdout}\n${res.stderr}`);
    assert.equal(r?.outcome, 'succeeded');
    const ms = r!.timings.notificationMs!;
    t.diagnostic(
      `${what}: migration ${from} → ${to} succeeded; notification answered after ${ms} ms (BU→BA ${r!.timings.buToBaMs} ms), total ${r!.timings.totalMs} ms`,
    );
    const states = await Promise.all(
      (['host-a', 'host-b'] as const).map(
        async (h) => (await agentStatus(lab, h)).networks.find((n) => n.name === 'net1')!.state,
      ),
    );
    assert.deepEqual(states, [
      to === 'host-a' ? 'active' : 'standby',
      to === 'host-b' ? 'active' : 'standby',
    ]);
    const binding = (await haStatus(netns, lab.ns.ha)).bindings.find((b) => b.hoa === ADDR.hoa);
    assert.equal(binding?.coa, HOSTS[to]);
    await flows(pinger);
    return ms;
  }
}
