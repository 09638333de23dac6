// Expiry (root, namespaces, the real daemons): net2's mobile router (the real agent on host-a, 8 s
// lifetime) stops getting its BUs through — an nftables rule in host-a's namespace drops every one of
// them — so it cannot refresh. At the end of the granted lifetime the HA removes the binding: /status
// no longer lists it, its routes are gone, guest-2's traffic stops, `offlink_ha_expired_bindings_total`
// says so and the log has the expiry; net1 on the same host is untouched. The MR goes back to
// registering; once its BUs pass again it registers within its retransmission schedule.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { test } from 'node:test';
import { agentStatus, build, report } from './helpers/agent-lab.ts';
import { DropFirst, hexAddress, waitUntil } from './helpers/faults.ts';
import { ADDR, ECHO_PORT, haMetric, haRoutes, haStatus } from './helpers/homeagent-lab.ts';
import { withNetnsOn } from './helpers/netns.ts';
import { Procs } from './helpers/procs.ts';
import { dataplaneBackends, needsRoot } from './helpers/requirements.ts';

const LIFETIME_S = 8;
const NET2_BU = `udp dport 4191 @th,128,128 0x${hexAddress(ADDR.hoa2)}`;

const backends = await dataplaneBackends();

for (const backend of backends) {
  test(`a mobile router that stops refreshing loses its binding at lifetime end [${backend}]`, {
    skip: needsRoot(),
    timeout: 120_000,
  }, async (t) => {
    const procs = new Procs();
    const dir = mkdtempSync(join(tmpdir(), 'offlink-expiry-it-'));
    try {
      await withNetnsOn(backend, async (netns) => {
        const lab = await build(netns, procs, dir, {
          net2: `lifetimeSeconds: ${LIFETIME_S}, retransmit: { maxMs: 4000 }`,
        });
        await procs.app(lab.ns.cn, ['udp-echo', ADDR.cn, String(ECHO_PORT)]);
        const pinger = await procs.app(lab.ns.g2, ['udp-pinger', ADDR.cn, String(ECHO_PORT), '10']);
        await new Promise((r) => setTimeout(r, 1200));
        await report(pinger);
        await new Promise((r) => setTimeout(r, 1200));
        assert.ok((await report(pinger)).received > 0, 'guest-2 reaches the correspondent');
        const net1Before = (await haStatus(netns, lab.ns.ha)).bindings.find((b) => b.hoa === ADDR.hoa)!;
        const net1Routes = await haRoutes(netns, lab.ns.ha, ADDR.mnp);
        assert.notEqual(await haRoutes(netns, lab.ns.ha, ADDR.mnp2), '');
        const expired0 = await haMetric(netns, lab.ns.ha, 'offlink_ha_expired_bindings_total');

        // From now on no BU of net2 leaves host-a.
        const block = await DropFirst.install(netns, lab.ns['host-a'], {
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
        assert.equal(last?.lifetimeSeconds, LIFETIME_S);
        const expiresAt = Date.parse(last!.expiresAt);
        const late = goneAt - expiresAt;
        t.diagnostic(
          `net2 binding (lifetime ${LIFETIME_S} s) removed ${late} ms after its expiresAt; ${await block.dropped()} BUs dropped meanwhile`,
        );
        assert.ok(late >= 0 && late < 1000, `removed ${late} ms after its expiry time`);
        assert.ok((await block.dropped()) >= 1, 'the MR tried to refresh and its BUs were dropped');
        assert.equal(await haRoutes(netns, lab.ns.ha, ADDR.mnp2), '', 'routes of the expired binding gone');
        assert.equal((await haMetric(netns, lab.ns.ha, 'offlink_ha_expired_bindings_total')) - expired0, 1);
        assert.equal(await haMetric(netns, lab.ns.ha, 'offlink_ha_bindings'), 1);
        const logged = lab.ha.log.filter((l) => l.includes('"msg":"binding expired"'));
        assert.equal(logged.length, 1);
        assert.match(logged[0]!, new RegExp(`"hoa":"${ADDR.hoa2}"`));
        // net1, on the same host, untouched.
        const net1 = (await haStatus(netns, lab.ns.ha)).bindings.find((b) => b.hoa === ADDR.hoa)!;
        assert.deepEqual({ ...net1, remainingSeconds: 0 }, { ...net1Before, remainingSeconds: 0 });
        assert.equal(await haRoutes(netns, lab.ns.ha, ADDR.mnp), net1Routes);
        // guest-2's traffic stops (the pinger leaves out the last second: flush what was sent before).
        await new Promise((r) => setTimeout(r, 1100));
        await report(pinger);
        await new Promise((r) => setTimeout(r, 2200));
        const cut = await report(pinger);
        assert.ok(cut.sent > 0 && cut.received === 0, `guest-2 is cut off: ${JSON.stringify(cut)}`);
        // The MR knows: its lifetime ran out, it is registering again.
        const state = await waitUntil('net2 registering on host-a', async () => {
          const n = (await agentStatus(lab, 'host-a')).networks.find((x) => x.name === 'net2')!;
          return n.state === 'registering' ? n.state : undefined;
        });
        assert.equal(state, 'registering');

        // Let its BUs through again: registered within the schedule (≤ retransmit.maxMs 4 s), traffic back.
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
    } finally {
      await procs.killAll();
      rmSync(dir, { recursive: true, force: true });
      for (const f of ['', '-wal', '-shm'])
        rmSync(`/dev/shm/${basename(dir)}-ha.sqlite${f}`, { force: true });
    }
  });
}
