// Expiry (root, namespaces, the real daemons): net2's mobile router (the real agent on host-a, 8 s
// lifetime) stops getting its BUs through — an nftables rule in host-a's namespace drops every one of
// them — so it cannot refresh. At the end of the granted lifetime the HA removes the binding: /status
// no longer lists it, its routes are gone, guest-2's traffic stops, `offlink_ha_expired_bindings_total`
// says so and the log has the expiry; net1 on the same host is untouched. The MR goes back to
// registering; once its BUs pass again it registers within its retransmission schedule.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type AgentRig, agentStatus, type Lab, openAgentRig, report } from './helpers/agent-lab.ts';
import { DropFirst, hexAddress, waitUntil } from './helpers/faults.ts';
import { ADDR, type BindingView, ECHO_PORT, haMetric, haRoutes, haStatus } from './helpers/homeagent-lab.ts';
import type { NetnsLab } from './helpers/netns.ts';
import type { Proc, Procs } from './helpers/procs.ts';
import { dataplaneBackends, needsRoot } from './helpers/requirements.ts';

const LIFETIME_S = 8;
// How late after its expiresAt the binding may still be listed: what this test sees is the HA's expiry
// timer plus one poll (50 ms sleep + a curl in the namespace, 20–100 ms on this busy machine); measured
// 54 ms. 500 ms catches an expiry that waits for the next refresh tick or second, not poll jitter.
const EXPIRY_LATE_BOUND_MS = 500;
const NET2_BU = `udp dport 4191 @th,128,128 0x${hexAddress(ADDR.hoa2)}`;

const backends = await dataplaneBackends();

for (const backend of backends) {
  describe(`a mobile router that stops refreshing loses its binding at lifetime end [${backend}]`, {
    skip: needsRoot(),
    timeout: 120_000,
  }, () => {
    let rig: AgentRig | undefined;
    let procs: Procs;
    let netns: NetnsLab;
    let lab: Lab;
    let pinger: Proc;
    let block: DropFirst | undefined;
    let expired: { goneAt: number; expiredBefore: number } | undefined;
    let net1Before: { binding: BindingView; routes: string } | undefined;

    before(async () => {
      const opened = await openAgentRig(backend, 'expiry-it', {
        net2: `lifetimeSeconds: ${LIFETIME_S}, retransmit: { maxMs: 4000 }`,
      });
      rig = opened;
      ({ procs, netns, lab } = opened);
      await procs.app(lab.ns.cn, ['udp-echo', ADDR.cn, String(ECHO_PORT)]);
      pinger = await procs.app(lab.ns.g2, ['udp-pinger', ADDR.cn, String(ECHO_PORT), '10']);
    });

    after(async () => {
      await rig?.close();
    });

    it('before the fault: guest-2 reaches the correspondent, net2 is tunnelled', async () => {
      await new Promise((r) => setTimeout(r, 1200));
      await report(pinger);
      await new Promise((r) => setTimeout(r, 1200));
      assert.ok((await report(pinger)).received > 0, 'guest-2 reaches the correspondent');
      assert.notEqual(await haRoutes(netns, lab.ns.ha, ADDR.mnp2), '');
    });

    it(`with its BUs dropped, net2's binding is removed within ${EXPIRY_LATE_BOUND_MS} ms of its expiry time`, async (t) => {
      const binding = (await haStatus(netns, lab.ns.ha)).bindings.find((b) => b.hoa === ADDR.hoa);
      assert.ok(binding, 'precondition: net1 is registered');
      net1Before = { binding, routes: await haRoutes(netns, lab.ns.ha, ADDR.mnp) };
      const expiredBefore = await haMetric(netns, lab.ns.ha, 'offlink_ha_expired_bindings_total');
      assert.ok(
        (await haStatus(netns, lab.ns.ha)).bindings.some((b) => b.hoa === ADDR.hoa2),
        'precondition: net2 is registered',
      );

      // From now on no BU of net2 leaves host-a.
      block = await DropFirst.install(netns, lab.ns['host-a'], {
        hook: 'output',
        match: NET2_BU,
        count: 100_000,
      });
      // The last binding seen before it disappears: a refresh in flight may still have been accepted.
      let last: { lifetimeSeconds: number; expiresAt: string } | undefined;
      const goneAt = await waitUntil(
        'the binding of net2 to expire',
        async () => {
          const b = (await haStatus(netns, lab.ns.ha)).bindings.find((x) => x.hoa === ADDR.hoa2);
          if (b) last = b as unknown as typeof last;
          return b ? undefined : Date.now();
        },
        LIFETIME_S * 1000 + 5000,
        50,
      );
      expired = { goneAt, expiredBefore };
      assert.equal(last?.lifetimeSeconds, LIFETIME_S);
      const late = goneAt - Date.parse(last?.expiresAt ?? '');
      t.diagnostic(
        `net2 binding (lifetime ${LIFETIME_S} s) removed ${late} ms after its expiresAt; ${await block.dropped()} BUs dropped meanwhile`,
      );
      assert.ok(late >= 0 && late <= EXPIRY_LATE_BOUND_MS, `removed ${late} ms after its expiry time`);
      assert.ok((await block.dropped()) >= 1, 'the MR tried to refresh and its BUs were dropped');
    });

    it('the expiry removes its routes, is counted and logged; net1 on the same host is untouched', async () => {
      assert.ok(expired && net1Before, 'precondition: net2 expired');
      assert.equal(await haRoutes(netns, lab.ns.ha, ADDR.mnp2), '', 'routes of the expired binding gone');
      assert.equal(
        (await haMetric(netns, lab.ns.ha, 'offlink_ha_expired_bindings_total')) - expired.expiredBefore,
        1,
      );
      assert.equal(await haMetric(netns, lab.ns.ha, 'offlink_ha_bindings'), 1);
      const logged = lab.ha.log.filter((l) => l.includes('"msg":"binding expired"'));
      assert.equal(logged.length, 1);
      assert.match(logged[0] ?? '', new RegExp(`"hoa":"${ADDR.hoa2}"`));
      const net1 = (await haStatus(netns, lab.ns.ha)).bindings.find((b) => b.hoa === ADDR.hoa);
      assert.deepEqual({ ...net1, remainingSeconds: 0 }, { ...net1Before.binding, remainingSeconds: 0 });
      assert.equal(await haRoutes(netns, lab.ns.ha, ADDR.mnp), net1Before.routes);
    });

    it("guest-2's traffic stops", async () => {
      assert.ok(expired, 'precondition: net2 expired');
      // The pinger leaves out the last second: flush what was sent before.
      await new Promise((r) => setTimeout(r, 1100));
      await report(pinger);
      await new Promise((r) => setTimeout(r, 2200));
      const cut = await report(pinger);
      assert.ok(cut.sent > 0 && cut.received === 0, `guest-2 is cut off: ${JSON.stringify(cut)}`);
    });

    it('the MR knows its lifetime ran out: net2 is registering again', async () => {
      assert.ok(expired, 'precondition: net2 expired');
      const state = await waitUntil('net2 registering on host-a', async () => {
        const n = (await agentStatus(lab, 'host-a')).networks.find((x) => x.name === 'net2');
        return n?.state === 'registering' ? n.state : undefined;
      });
      assert.equal(state, 'registering');
    });

    it('once its BUs pass again it registers within retransmit.maxMs (4 s) and traffic comes back', async (t) => {
      assert.ok(block, 'precondition: net2 BUs were blocked');
      await block.remove();
      const unblocked = Date.now();
      await waitUntil(
        'net2 registered again',
        async () => (await haStatus(netns, lab.ns.ha)).bindings.some((b) => b.hoa === ADDR.hoa2),
        10_000,
        50,
      );
      const back = Date.now() - unblocked;
      t.diagnostic(`net2 registered again ${back} ms after its BUs could pass (retransmit maxMs 4000)`);
      assert.ok(back < 4000 + 1500, `${back} ms`);
      await report(pinger);
      await waitUntil('guest-2 reaches the correspondent again', async () => {
        await new Promise((r) => setTimeout(r, 1200));
        const r = await report(pinger);
        return r.received > 0 && r.trailingLost === 0;
      });
    });
  });
}
