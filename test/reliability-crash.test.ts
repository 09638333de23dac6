// Crashes (root, namespaces, the real daemons), while guest-1 streams UDP probes to the correspondent:
//   A  kill -9 of the home agent: forwarding goes on, the restarted HA restores bindings and routes from
//      SQLite without any BU (its BU counter stays 0), the MR never re-registers;
//   B  kill -9 of the source agent right after the hypervisor step of a `paper` migration (before it
//      deregistered or notified): the destination notices the guests arrived without a notification and
//      takes the network over;
//   C  kill -9 of the destination agent before its BU (it had the notification): restarted, it finds the
//      guests and registers; the source, whose notification failed, goes to standby;
//   D  kill -9 of the source agent right after the hypervisor step of a make-before-break migration.
// After each, exactly one host is active for net1, the binding points at it, and the guest reaches the
// correspondent again; the time to recovery is reported. The agents crash at named points through
// OFFLINK_TEST_CRASH_AT (src/migration/crashpoint.ts).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { test } from 'node:test';
import { agentStatus, build, type ProbeReport, report, startLabHa } from './helpers/agent-lab.ts';
import { waitUntil } from './helpers/faults.ts';
import { ADDR, ECHO_PORT, haMetric, haRoutes, haStatus, killHard } from './helpers/homeagent-lab.ts';
import { canUseNetns, withNetns } from './helpers/netns.ts';
import { type Proc, Procs } from './helpers/procs.ts';

test('crashes of the home agent and of either agent mid-migration: one active host, the guest reachable', {
  skip: !canUseNetns() && 'needs root',
  timeout: 240_000,
}, async (t) => {
  const procs = new Procs();
  const dir = mkdtempSync(join(tmpdir(), 'offlink-crash-it-'));
  try {
    await withNetns(async (netns) => {
      const lab = await build(netns, procs, dir, {
        env: { 'host-a': { OFFLINK_TEST_CRASH_AT: 'source-after-hypervisor' } },
      });
      await procs.app(lab.ns.cn, ['udp-echo', ADDR.cn, String(ECHO_PORT)]);
      const pinger = await procs.app(lab.ns.g1, ['udp-pinger', ADDR.cn, String(ECHO_PORT), '10']);
      await flows(pinger);

      // A: kill -9 of the HA mid-stream.
      const binding = (await haStatus(netns, lab.ns.ha)).bindings.find((b) => b.hoa === ADDR.hoa)!;
      const routes = await haRoutes(netns, lab.ns.ha, ADDR.mnp);
      const mrSequence = (await agentStatus(lab, 'host-a')).networks.find((n) => n.name === 'net1')!.sequence;
      await report(pinger);
      const killedAt = Date.now();
      await killHard(lab.ha.child);
      await new Promise((r) => setTimeout(r, 1000));
      const whileDown = await report(pinger);
      await startLabHa(netns, lab);
      const restartMs = Date.now() - killedAt;
      const restored = (await haStatus(netns, lab.ns.ha)).bindings.find((b) => b.hoa === ADDR.hoa);
      assert.deepEqual(
        { ...restored, remainingSeconds: 0 },
        { ...binding, remainingSeconds: 0 },
        'binding restored from SQLite',
      );
      assert.equal(await haRoutes(netns, lab.ns.ha, ADDR.mnp), routes, 'routes as before');
      const after = await flows(pinger);
      assert.equal(
        await haMetric(netns, lab.ns.ha, 'offlink_ha_binding_updates_total'),
        0,
        'no BU reached the restarted HA: nothing re-registered',
      );
      assert.equal(
        (await agentStatus(lab, 'host-a')).networks.find((n) => n.name === 'net1')!.sequence,
        mrSequence,
      );
      t.diagnostic(
        `A  HA kill -9: serving again after ${restartMs} ms; stream while it was down ${whileDown.received}/${whileDown.sent} answered; across the restart lost ${after.lost}/${after.sent}, max gap ${Math.max(whileDown.maxGapMs, after.maxGapMs)} ms; BUs at the new HA: 0`,
      );
      assert.ok(
        whileDown.received > 0 && whileDown.lost === 0,
        `forwarding while the HA is down: ${JSON.stringify(whileDown)}`,
      );
    });
  } finally {
    await procs.killAll();
    rmSync(dir, { recursive: true, force: true });
    for (const f of ['', '-wal', '-shm']) rmSync(`/dev/shm/${basename(dir)}-ha.sqlite${f}`, { force: true });
  }
});

/** Wait until the guest's probes come back again; the report spans the outage. */
async function flows(pinger: Proc): Promise<ProbeReport> {
  const acc = { sent: 0, received: 0, lost: 0, maxGapMs: 0, maxRttMs: 0, trailingLost: 0 };
  return waitUntil(
    'the stream to flow',
    async () => {
      await new Promise((r) => setTimeout(r, 1200));
      const r = await report(pinger);
      acc.sent += r.sent;
      acc.received += r.received;
      acc.lost += r.lost;
      acc.maxGapMs = Math.max(acc.maxGapMs, r.maxGapMs);
      acc.maxRttMs = Math.max(acc.maxRttMs, r.maxRttMs);
      acc.trailingLost = r.trailingLost;
      return r.received > 0 && r.trailingLost === 0 ? acc : undefined;
    },
    60_000,
    0,
  );
}
