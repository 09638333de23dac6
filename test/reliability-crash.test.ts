// Crashes (root, namespaces, the real daemons), while guest-1 streams UDP probes to the correspondent:
//   A  kill -9 of the home agent: forwarding goes on, the restarted HA restores bindings and routes from
//      SQLite without any BU (its BU counter stays 0), the MR never re-registers;
//   B  kill -9 of the source agent right after the hypervisor step of a `break-before-make` migration (before it
//      deregistered or notified): the destination notices the guests arrived without a notification and
//      takes the network over;
//   C  kill -9 of the destination agent before its BU (it had the notification): restarted, it finds the
//      guests and registers; the source, whose notification failed, goes to standby;
//   D  kill -9 of the source agent right after the hypervisor step of a make-before-break migration.
// After each, exactly one host is active for net1, the binding points at it, and the guest reaches the
// correspondent again; the time to recovery is reported. The agents crash at named points through
// OFFLINK_TEST_CRASH_AT (src/migration/crashpoint.ts).
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  type AgentRig,
  agentStatus,
  HOSTS,
  type Host,
  type Lab,
  migrateRecord,
  openAgentRig,
  type ProbeReport,
  report,
  startAgent,
  startLabHa,
} from './helpers/agent-lab.ts';
import { waitUntil } from './helpers/faults.ts';
import { ADDR, ECHO_PORT, haMetric, haRoutes, haStatus, killHard } from './helpers/homeagent-lab.ts';
import type { NetnsLab } from './helpers/netns.ts';
import type { Proc, Procs } from './helpers/procs.ts';
import { dataplaneBackends, needsRoot } from './helpers/requirements.ts';

const other = (h: Host): Host => (h === 'host-a' ? 'host-b' : 'host-a');

const backends = await dataplaneBackends();

for (const backend of backends) {
  describe(`crashes of the home agent and of either agent mid-migration [${backend}]`, {
    skip: needsRoot(),
    timeout: 300_000,
  }, () => {
    let rig: AgentRig | undefined;
    let procs: Procs;
    let netns: NetnsLab;
    let lab: Lab;
    let pinger: Proc;
    /** The crash point each agent was started with (OFFLINK_TEST_CRASH_AT). */
    const armed: Record<Host, string | undefined> = {
      'host-a': 'source-after-hypervisor',
      'host-b': undefined,
    };
    let haKilled = false;
    let whileDown: ProbeReport | undefined;
    let killedAt = 0;
    let beforeKill: { binding: unknown; routes: string; mrSequence: number | undefined } | undefined;

    before(async () => {
      const opened = await openAgentRig(backend, 'crash-it', {
        env: { 'host-a': { OFFLINK_TEST_CRASH_AT: armed['host-a'] } },
      });
      rig = opened;
      ({ procs, netns, lab } = opened);
      await procs.app(lab.ns.cn, ['udp-echo', ADDR.cn, String(ECHO_PORT)]);
      pinger = await procs.app(lab.ns.g1, ['udp-pinger', ADDR.cn, String(ECHO_PORT), '10']);
      await flows(pinger);
    });

    after(async () => {
      await rig?.close();
    });

    it('A  HA kill -9: forwarding goes on while it is down, none lost', async () => {
      assert.ok(netns);
      const binding = (await haStatus(netns, lab.ns.ha)).bindings.find((b) => b.hoa === ADDR.hoa);
      assert.ok(binding, 'precondition: net1 is registered');
      const routes = await haRoutes(netns, lab.ns.ha, ADDR.mnp);
      const mrSequence = (await agentStatus(lab, 'host-a')).networks.find((n) => n.name === 'net1')?.sequence;
      beforeKill = { binding, routes, mrSequence };
      await report(pinger);
      killedAt = Date.now();
      await killHard(lab.ha.child);
      haKilled = true;
      await new Promise((r) => setTimeout(r, 1000));
      whileDown = await report(pinger);
      assert.ok(
        whileDown.received > 0 && whileDown.lost === 0,
        `forwarding while the HA is down: ${JSON.stringify(whileDown)}`,
      );
    });

    it('A  the restarted HA restores binding and routes from SQLite; no BU reaches it, the MR does not re-register', async (t) => {
      assert.ok(netns);
      assert.ok(haKilled && beforeKill && whileDown, 'precondition: the HA was killed mid-stream');
      await startLabHa(netns, lab);
      const restartMs = Date.now() - killedAt;
      const restored = (await haStatus(netns, lab.ns.ha)).bindings.find((b) => b.hoa === ADDR.hoa);
      assert.deepEqual(
        { ...restored, remainingSeconds: 0 },
        { ...(beforeKill.binding as object), remainingSeconds: 0 },
        'binding restored from SQLite',
      );
      assert.equal(await haRoutes(netns, lab.ns.ha, ADDR.mnp), beforeKill.routes, 'routes as before');
      const after = await flows(pinger);
      assert.equal(
        await haMetric(netns, lab.ns.ha, 'offlink_ha_binding_updates_total'),
        0,
        'no BU reached the restarted HA: nothing re-registered',
      );
      assert.equal(
        (await agentStatus(lab, 'host-a')).networks.find((n) => n.name === 'net1')?.sequence,
        beforeKill.mrSequence,
      );
      t.diagnostic(
        `A  HA kill -9: serving again after ${restartMs} ms; stream while it was down ${whileDown.received}/${whileDown.sent} answered; across the restart lost ${after.lost}/${after.sent}, max gap ${Math.max(whileDown.maxGapMs, after.maxGapMs)} ms; BUs at the new HA: 0`,
      );
    });

    it('B  source kill -9 after the hypervisor step (break-before-make): the destination takes the network over', async (t) => {
      // a → b, the source dies right after moving the guest.
      await crashMigration(t, {
        name: 'B  source kill -9 after the hypervisor step (break-before-make)',
        from: 'host-a',
        procedure: 'break-before-make',
        crashed: 'host-a',
        crashAt: 'source-after-hypervisor',
        restartEnv: { OFFLINK_TEST_CRASH_AT: 'destination-before-bu' },
      });
    });

    it('C  destination kill -9 before its BU (make-before-break): restarted, it registers; the source stands by', async (t) => {
      // b → a, the destination (host-a) dies on the notification, before its BU.
      await crashMigration(t, {
        name: 'C  destination kill -9 before its BU (make-before-break)',
        from: 'host-b',
        procedure: 'make-before-break',
        crashed: 'host-a',
        crashAt: 'destination-before-bu',
        restartEnv: { OFFLINK_TEST_CRASH_AT: 'source-after-hypervisor' },
      });
    });

    it('D  source kill -9 after the hypervisor step (make-before-break): the destination takes the network over', async (t) => {
      // a → b, the source dies right after moving the guest.
      await crashMigration(t, {
        name: 'D  source kill -9 after the hypervisor step (make-before-break)',
        from: 'host-a',
        procedure: 'make-before-break',
        crashed: 'host-a',
        crashAt: 'source-after-hypervisor',
        restartEnv: {},
      });
    });

    /**
     * Migrate net1 `from` → the other host while `crashed`'s agent is set to die at `crashAt`; restart
     * it (with `restartEnv`) once it is gone; wait until exactly one host is active, the binding points
     * at it and the stream flows. Reports the times.
     */
    async function crashMigration(
      t: { diagnostic(s: string): void },
      o: {
        name: string;
        from: Host;
        procedure: string;
        crashed: Host;
        crashAt: string;
        restartEnv: NodeJS.ProcessEnv;
      },
    ): Promise<void> {
      assert.ok(netns && procs);
      assert.equal(
        armed[o.crashed],
        o.crashAt,
        `precondition: ${o.crashed}'s agent is set to crash at ${o.crashAt}`,
      );
      const from = (await agentStatus(lab, o.from)).networks.find((n) => n.name === 'net1')?.state;
      assert.equal(from, 'active', `precondition: net1 is active on ${o.from}`);
      await crashAndRecover(t, netns, lab, procs, pinger, {
        ...o,
        onRestarted: () => {
          armed[o.crashed] = o.restartEnv['OFFLINK_TEST_CRASH_AT'];
        },
      });
    }
  });

  /**
   * The crash itself: migrate, wait for the victim to die, restart it, wait until exactly one host is
   * active, the binding points at it and the stream flows.
   */
  async function crashAndRecover(
    t: { diagnostic(s: string): void },
    netns: NetnsLab,
    lab: Lab,
    procs: Procs,
    pinger: Proc,
    o: {
      name: string;
      from: Host;
      procedure: string;
      crashed: Host;
      restartEnv: NodeJS.ProcessEnv;
      onRestarted: () => void;
    },
  ): Promise<void> {
    const to = other(o.from);
    await report(pinger);
    const victim = lab.agents[o.crashed].child;
    const gone = new Promise<number>((resolve) => victim.once('exit', () => resolve(Date.now())));
    const t0 = Date.now();
    const migration = migrateRecord(lab, 'net1', o.from, to, o.procedure);
    const crashedAt = await gone;
    assert.equal(victim.signalCode, 'SIGKILL', `${o.name}: the agent died at its crash point`);
    // Nothing of the dead agent goes on advertising the prefix (its radvd dies with it).
    const leftover = await waitUntil(
      `${o.name}: the killed agent's radvd exits`,
      async () => (radvdOf(join(lab.dir, `run-${o.crashed}`)).length === 0 ? true : undefined),
      5_000,
      50,
    ).catch(() => radvdOf(join(lab.dir, `run-${o.crashed}`)));
    assert.equal(leftover, true, `${o.name}: radvd left running after the agent died: ${leftover}`);
    await startAgent(lab, procs, o.crashed, o.restartEnv);
    o.onRestarted();
    const restartedAt = Date.now();
    const res = await migration;
    let seen = '';
    const stable = await waitUntil(
      `${o.name}: exactly one active host`,
      async () => {
        const states = await Promise.all(
          (['host-a', 'host-b'] as const).map(async (h) => {
            const s = await agentStatus(lab, h).catch(() => undefined);
            return s?.networks.find((n) => n.name === 'net1')?.state;
          }),
        );
        const active = (['host-a', 'host-b'] as const).filter((_, i) => states[i] === 'active');
        const binding = (await haStatus(netns, lab.ns.ha)).bindings.find((b) => b.hoa === ADDR.hoa);
        seen = `host-a ${states[0]}, host-b ${states[1]}, binding → ${binding?.coa}`;
        const only = active.length === 1 ? active[0] : undefined;
        return only && states.every((s) => s === 'active' || s === 'standby') && binding?.coa === HOSTS[only]
          ? only
          : undefined;
      },
      60_000,
      100,
    ).catch((err: Error) => {
      throw new Error(`${err.message}; last seen: ${seen}`);
    });
    const stableAt = Date.now();
    const stream = await flows(pinger);
    t.diagnostic(
      `${o.name}: migrate exited ${res.code} (${res.record?.outcome ?? 'no record'}${res.record?.failedPhase ? ` in ${res.record.failedPhase}` : ''}); crashed ${crashedAt - t0} ms after the start, restarted in ${restartedAt - crashedAt} ms; ${stable} the only active host ${stableAt - crashedAt} ms after the crash; guest's longest gap ${stream.maxGapMs} ms, ${stream.lost} probes lost`,
    );
    assert.equal(stable, to, `${o.name}: the guest's host holds the network`);
  }

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

  /** Live (not zombie) radvd processes whose config lies under `dir`. */
  function radvdOf(dir: string): number[] {
    const pids: number[] = [];
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
        const state = /^State:\s+(\S)/m.exec(readFileSync(`/proc/${entry}/status`, 'utf8'))?.[1];
        if (state !== 'Z' && cmd[0]?.endsWith('radvd') && cmd.some((a) => a.startsWith(`${dir}/`)))
          pids.push(Number(entry));
      } catch {
        // the process ended while we looked
      }
    }
    return pids;
  }
}
