// Attacks on the agents' control API (root, namespaces, the real daemons): forged signatures, a genuine
// signature over another body, stale and future timestamps, missing headers, a genuine migrate request
// recorded and replayed later, handovers for a network the agent does not hold or for a migration it
// never prepared (on the active and on the standby host), a prepare on the active host, migrate requests
// naming an unknown peer or network or the host itself, bad and oversized bodies. Each is refused with
// the documented status (401/404/409/400/413), logged and counted where docs/agent.md says so, and
// nothing changes: both agents' status and the HA's binding cache are the same before and after, and
// guest-1 keeps reaching the correspondent.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { test } from 'node:test';
import {
  agentMetric,
  agentStatus,
  controlRequest,
  type Host,
  type Lab,
  report,
  signFor,
  withAgentRig,
} from './helpers/agent-lab.ts';
import { ADDR, ECHO_PORT, haStatus } from './helpers/homeagent-lab.ts';
import type { NetnsLab } from './helpers/netns.ts';
import { dataplaneBackends, needsRoot } from './helpers/requirements.ts';

const at = (ms: number) => ({ now: () => Date.now() + ms });

/** What must not change: both agents' networks (without the ticking lifetime) and the binding cache. */
async function snapshot(netns: NetnsLab, lab: Lab): Promise<string> {
  const hosts = await Promise.all(
    (['host-a', 'host-b'] as const).map(async (h) => {
      const s = await agentStatus(lab, h);
      return {
        host: h,
        networks: s.networks.map(({ lifetimeRemaining: _, ...n }) => n),
        migrations: s.migrations.map((m) => m.id),
      };
    }),
  );
  const { bindings } = await haStatus(netns, lab.ns.ha);
  return JSON.stringify({ hosts, bindings: bindings.map(({ remainingSeconds: _, ...b }) => b) });
}

const backends = await dataplaneBackends();

for (const backend of backends) {
  test(`control API attacks are refused and change nothing [${backend}]`, {
    skip: needsRoot(),
    timeout: 120_000,
  }, async (t) => {
    await withAgentRig(backend, 'sec-ctl', {}, async ({ netns, procs, lab }) => {
      await procs.app(lab.ns.cn, ['udp-echo', ADDR.cn, String(ECHO_PORT)]);
      const pinger = await procs.app(lab.ns.g1, ['udp-pinger', ADDR.cn, String(ECHO_PORT), '10']);

      // A genuine migrate request, recorded: it moves net1 to host-b; a genuine one brings it back.
      const migrateBody = JSON.stringify({ network: 'net1', to: 'host-b' });
      const recorded = signFor('host-a', { method: 'POST', path: '/v1/migrate', body: migrateBody });
      const there = await controlRequest(
        lab,
        'host-b',
        'host-a',
        { method: 'POST', path: '/v1/migrate', body: migrateBody },
        recorded,
      );
      assert.equal(there.status, 200);
      assert.match(there.body, /"type":"result"/, there.body);
      const back = await controlRequest(lab, 'host-a', 'host-b', {
        method: 'POST',
        path: '/v1/migrate',
        body: JSON.stringify({ network: 'net1', to: 'host-a' }),
      });
      assert.match(back.body, /"type":"result"/, back.body);
      await new Promise((r) => setTimeout(r, 1000));
      await report(pinger);

      const handover = (over: Record<string, unknown> = {}) =>
        JSON.stringify({
          migrationId: randomUUID(),
          network: 'net1',
          source: 'host-b',
          procedure: 'make-before-break',
          hoa: ADDR.hoa,
          prefixes: [ADDR.mnp],
          lastSequence: 7,
          lifetimeRemaining: 100,
          ...over,
        });
      type Case = {
        name: string;
        to: Host;
        from?: keyof Lab['ns'];
        method?: 'GET' | 'POST';
        path: string;
        body?: string;
        /** Signature headers: default genuine. */
        headers?: Record<string, string>;
        status: number;
        /** 401s: the reason counted in offlink_agent_control_refused_total. */
        reason?: string;
        code?: string;
      };
      const sign = (path: string, body: string, clock = at(0)) =>
        signFor('host-a', { method: 'POST', path, body }, clock);
      const cases: Case[] = [
        {
          name: 'forged signature (another key)',
          to: 'host-a',
          from: 'cn',
          path: '/v1/migrate',
          body: migrateBody,
          headers: signFor(
            'host-a',
            { method: 'POST', path: '/v1/migrate', body: migrateBody },
            at(0),
            randomBytes(32),
          ),
          status: 401,
          reason: 'bad-signature',
        },
        {
          name: 'genuine signature over another body',
          to: 'host-a',
          path: '/v1/migrate',
          body: JSON.stringify({ network: 'net2', to: 'host-b' }),
          headers: sign('/v1/migrate', migrateBody),
          status: 401,
          reason: 'bad-signature',
        },
        {
          name: 'stale timestamp (2 min old)',
          to: 'host-a',
          path: '/v1/migrate',
          body: migrateBody,
          headers: sign('/v1/migrate', migrateBody, at(-120_000)),
          status: 401,
          reason: 'stale-timestamp',
        },
        {
          name: 'timestamp 2 min ahead',
          to: 'host-a',
          path: '/v1/migrate',
          body: migrateBody,
          headers: sign('/v1/migrate', migrateBody, at(120_000)),
          status: 401,
          reason: 'stale-timestamp',
        },
        {
          name: 'no signature headers',
          to: 'host-a',
          from: 'cn',
          path: '/v1/migrate',
          body: migrateBody,
          headers: {},
          status: 401,
          reason: 'missing-header',
        },
        {
          name: 'the recorded migrate request replayed (same nonce)',
          to: 'host-a',
          path: '/v1/migrate',
          body: migrateBody,
          headers: recorded,
          status: 401,
          reason: 'replayed-nonce',
        },
        {
          name: 'the recorded migrate request (for host-a) replayed to host-b',
          to: 'host-b',
          from: 'cn',
          path: '/v1/migrate',
          body: migrateBody,
          headers: recorded,
          status: 401,
          reason: 'bad-signature',
        },
        {
          name: 'a genuine status request for host-a, sent to host-b',
          to: 'host-b',
          from: 'cn',
          method: 'GET',
          path: '/v1/status',
          headers: signFor('host-a', { method: 'GET', path: '/v1/status' }),
          status: 401,
          reason: 'bad-signature',
        },
        {
          name: 'handover for a network host-b does not hold',
          to: 'host-b',
          from: 'host-a',
          path: '/v1/handover',
          body: handover({ network: 'net9' }),
          status: 404,
          code: 'ERR_UNKNOWN_NETWORK',
        },
        {
          name: 'handover host-b was never prepared for',
          to: 'host-b',
          from: 'host-a',
          path: '/v1/handover',
          body: handover({ source: 'host-a' }),
          status: 409,
          code: 'ERR_UNKNOWN_MIGRATION',
        },
        {
          name: 'handover to the active host',
          to: 'host-a',
          path: '/v1/handover',
          body: handover(),
          status: 409,
          code: 'ERR_UNKNOWN_MIGRATION',
        },
        {
          name: 'prepare on the active host',
          to: 'host-a',
          path: '/v1/prepare',
          body: JSON.stringify({
            migrationId: randomUUID(),
            network: 'net1',
            source: 'host-b',
            procedure: 'make-before-break',
            guests: ['guest-1'],
          }),
          status: 409,
          code: 'ERR_NETWORK_STATE',
        },
        {
          name: 'migrate to an unknown peer',
          to: 'host-a',
          path: '/v1/migrate',
          body: JSON.stringify({ network: 'net1', to: 'host-z' }),
          status: 404,
          code: 'ERR_UNKNOWN_PEER',
        },
        {
          name: 'migrate an unknown network',
          to: 'host-a',
          path: '/v1/migrate',
          body: JSON.stringify({ network: 'net9', to: 'host-b' }),
          status: 404,
          code: 'ERR_UNKNOWN_NETWORK',
        },
        {
          name: 'migrate to the host itself',
          to: 'host-a',
          path: '/v1/migrate',
          body: JSON.stringify({ network: 'net1', to: 'host-a' }),
          status: 409,
          code: 'ERR_NETWORK_STATE',
        },
        {
          name: 'a body with an unknown field',
          to: 'host-a',
          path: '/v1/migrate',
          body: JSON.stringify({ network: 'net1', to: 'host-b', force: true }),
          status: 400,
          code: 'ERR_BAD_REQUEST',
        },
        {
          name: 'a body over 1 MiB',
          to: 'host-a',
          path: '/v1/migrate',
          body: JSON.stringify({ network: 'x'.repeat(1 << 20), to: 'host-b' }),
          status: 413,
          code: 'ERR_TOO_LARGE',
        },
      ];

      const before = await snapshot(netns, lab);
      for (const c of cases) {
        const refused0 = c.reason
          ? await agentMetric(lab, c.to, 'offlink_agent_control_refused_total', `reason="${c.reason}"`)
          : 0;
        const logs0 = lab.agents[c.to].stderr.length;
        const body = c.body ?? '';
        const res = await controlRequest(
          lab,
          c.from ?? 'host-b',
          c.to,
          { method: c.method ?? 'POST', path: c.path, ...(c.method === 'GET' ? {} : { body }) },
          c.headers ?? signFor(c.to, { method: c.method ?? 'POST', path: c.path, body }),
        );
        t.diagnostic(`${c.name} → ${c.to}: HTTP ${res.status} ${res.body.slice(0, 160)}`);
        assert.equal(res.status, c.status, `${c.name}: ${res.body}`);
        if (c.code) assert.equal(JSON.parse(res.body).error.code, c.code, c.name);
        if (c.reason) {
          const refused = await agentMetric(
            lab,
            c.to,
            'offlink_agent_control_refused_total',
            `reason="${c.reason}"`,
          );
          assert.equal(refused - refused0, 1, `${c.name}: counted as ${c.reason}`);
          const logged = lab.agents[c.to].stderr
            .slice(logs0)
            .split('\n')
            .filter((l) => l.includes('control API: request refused'));
          assert.equal(logged.length, 1, `${c.name}: logged`);
          assert.equal(JSON.parse(logged[0]!).reason, c.reason);
        }
        assert.equal(await snapshot(netns, lab), before, `${c.name} changed something`);
      }

      // Nothing moved: net1 is active on host-a only, and guest-1 still reaches the correspondent.
      const states = await Promise.all(
        (['host-a', 'host-b'] as const).map(
          async (h) => (await agentStatus(lab, h)).networks.find((n) => n.name === 'net1')!.state,
        ),
      );
      assert.deepEqual(states, ['active', 'standby']);
      const stream = await report(pinger);
      t.diagnostic(
        `stream during the attacks: ${stream.lost}/${stream.sent} lost, max gap ${stream.maxGapMs} ms`,
      );
      assert.ok(stream.received > 0 && stream.lost === 0, JSON.stringify(stream));
    });
  });
}
