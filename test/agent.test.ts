// Host agents end to end (root, namespaces): the real home agent (`offlink ha`), two agents
// (`offlink agent --config`, each inside its host namespace, on two different /64s), guests that are
// namespaces on host-a's guest bridges, and a correspondent. `offlink migrate` moves a network back and
// forth with both procedures while the guest probes the correspondent at 1 kHz; a second network on the
// same host must not notice. Forged, stale and replayed control requests are refused. One fixture per
// backend; each case says what it checks and asserts where net1 is before it starts.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { authorityOf, signRequest } from '../src/agent/auth.ts';
import {
  type AgentRig,
  agentStatus,
  CLUSTER_KEY,
  controlRequest,
  HOSTS,
  type Host,
  type Lab,
  migrate,
  OFFLINK,
  openAgentRig,
  report,
  signFor,
  url,
  waitForLog,
} from './helpers/agent-lab.ts';
import { ADDR, ECHO_PORT } from './helpers/homeagent-lab.ts';
import { sh } from './helpers/netns.ts';
import type { Proc, Procs } from './helpers/procs.ts';
import { dataplaneBackends, needsRoot } from './helpers/requirements.ts';

// The stream is back within this (measured here: ≤ 60 ms make-before-break, ≤ 140 ms break-before-make; docs/lab.md
// p95 267 ms make-before-break and 247 ms break-before-make under load 4–10): about 3× the loaded p95. A neighbour or
// retransmission stall would be ≥ 1 s; the report saw ~6 s.
const GAP_BOUND_MS = 750;
// A second of 1 kHz probes once the tunnel is up (measured: ~1000 answered a second); half leaves room for
// a pinger starved on a busy 2-core machine and still says the tunnel carries the whole stream.
const STEADY_MIN_RECEIVED = 500;

const backends = await dataplaneBackends();

for (const backend of backends) {
  describe(`host agents (namespaces, real HA) [${backend}]`, { skip: needsRoot(), timeout: 300_000 }, () => {
    let rig: AgentRig | undefined;
    let procs: Procs;
    let lab: Lab;
    let p1: Proc;
    let p2: Proc;

    before(async () => {
      const opened = await openAgentRig(backend, 'agent-it');
      rig = opened;
      ({ procs, lab } = opened);
      await procs.app(lab.ns.cn, ['udp-echo', ADDR.cn, String(ECHO_PORT)]);
      p1 = await procs.app(lab.ns.g1, ['udp-pinger', ADDR.cn, String(ECHO_PORT), '1']);
      p2 = await procs.app(lab.ns.g2, ['udp-pinger', ADDR.cn, String(ECHO_PORT), '1']);
    });

    after(async () => {
      await rig?.close();
    });

    /** Where net1 is active (asked of both agents). */
    async function net1Host(): Promise<Host | undefined> {
      for (const host of ['host-a', 'host-b'] as const) {
        const st = await agentStatus(lab, host);
        if (st.networks.find((n) => n.name === 'net1')?.state === 'active') return host;
      }
      return undefined;
    }

    it('guest-1 reaches the correspondent through the tunnel, then 1 kHz probes flow with none lost', async (t) => {
      await new Promise((r) => setTimeout(r, 1000));
      // The tunnel comes up during this first second, so how many are answered depends on when (103 seen).
      const warm = await report(p1);
      assert.ok(
        warm.received > 0,
        `guest-1 reaches the correspondent through the tunnel: ${JSON.stringify(warm)}`,
      );
      await report(p2);
      await new Promise((r) => setTimeout(r, 1000));
      const steady = await report(p1);
      t.diagnostic(`first second: ${JSON.stringify(warm)}; the next: ${JSON.stringify(steady)}`);
      assert.ok(steady.received >= STEADY_MIN_RECEIVED && steady.lost === 0, JSON.stringify(steady));
    });

    for (const procedure of ['make-before-break', 'break-before-make']) {
      it(`${procedure}: migrates net1 10 times back and forth, each gap ≤ ${GAP_BOUND_MS} ms, net2 untouched`, async (t) => {
        const start = await net1Host();
        assert.ok(start, 'precondition: net1 is active on a host');
        let at: Host = start;
        const rows: string[] = [];
        try {
          for (let i = 1; i <= 10; i++) {
            const to: Host = at === 'host-a' ? 'host-b' : 'host-a';
            await report(p1);
            await report(p2);
            const out = await migrate(lab, 'net1', at, to, procedure);
            assert.match(out, /migration \S+ succeeded: net1/, out);
            await new Promise((r) => setTimeout(r, 1500));
            const r1 = await report(p1);
            const r2 = await report(p2);
            const summary = out
              .split('\n')
              .find((l) => l.includes('prepare ') && l.includes('BU→BA'))
              ?.trim();
            rows.push(
              `${procedure} #${i} ${at}->${to}: gap ${r1.maxGapMs} ms, lost ${r1.lost}/${r1.sent} (${r1.trailingLost} at the end); other network: gap ${r2.maxGapMs} ms, lost ${r2.lost}; ${summary}`,
            );
            at = to;
            assert.ok(r1.received > 0 && r1.trailingLost === 0 && r1.maxGapMs <= GAP_BOUND_MS, rows.at(-1));
            // The other network stays untouched (measured: 0 lost, gaps ≤ 25 ms, i.e. CPU jitter only); a
            // few probes of slack for a loaded machine, far below what a touched network loses.
            assert.ok(
              r2.lost <= 3 && r2.maxGapMs < 250,
              `guest-2 (net2, stays on host-a) during migration ${i}: ${JSON.stringify(r2)}`,
            );
          }
        } finally {
          for (const row of rows) t.diagnostic(row);
        }
        // Ten moves bring it home: the agents agree.
        assert.equal(await net1Host(), start);
      });
    }

    it('`offlink status` shows both networks active and the recent migrations', async () => {
      const { stdout: status } = await sh([
        'ip',
        'netns',
        'exec',
        lab.ns['host-a'],
        process.execPath,
        OFFLINK,
        'status',
        '--agent',
        url('host-a'),
        '--key-file',
        lab.keyFile,
      ]);
      assert.match(status, /^net1\s+active/m);
      assert.match(status, /^net2\s+active/m);
      assert.match(status, /recent migrations/);
    });

    // A destination that cannot take the guest (a link with the port's name is in the way) refuses
    // prepare: `offlink migrate` fails with the reason, net1 stays on host-a and its traffic flows.
    it('a destination that cannot take the guest refuses prepare; net1 stays on host-a, traffic flows', async () => {
      assert.equal(await net1Host(), 'host-a', 'precondition: net1 is active on host-a');
      await sh(['ip', '-n', lab.ns['host-b'], 'link', 'add', 'vg-guest-1', 'type', 'bridge']);
      try {
        await report(p1);
        await assert.rejects(migrate(lab, 'net1', 'host-a', 'host-b', 'make-before-break'), (err: Error) => {
          assert.match(
            err.message,
            /failed in prepare: host-b cannot take the guests: host host-b already has a link named vg-guest-1/,
          );
          return true;
        });
      } finally {
        await sh(['ip', '-n', lab.ns['host-b'], 'link', 'del', 'vg-guest-1']);
      }
      await new Promise((r) => setTimeout(r, 1500));
      const refusedMove = await report(p1);
      assert.ok(refusedMove.received > 0 && refusedMove.lost === 0, JSON.stringify(refusedMove));
      assert.equal(await net1Host(), 'host-a');
    });

    it('forged, stale and replayed control requests get 401 and are logged with their reasons; nothing moves', async () => {
      const where = await net1Host();
      assert.ok(where, 'precondition: net1 is active on a host');
      const refusedBefore = lab.agents['host-a'].stderr
        .split('\n')
        .filter((l) => l.includes('request refused')).length;
      // Sent from host-b's namespace to host-a's agent.
      const key = Buffer.from(CLUSTER_KEY, 'hex');
      const body = JSON.stringify({ network: 'net1', to: 'host-b' });
      // The signature covers the agent it is for: host-a's control address.
      const authority = authorityOf(HOSTS['host-a'], 7400);
      const req = { method: 'POST', path: '/v1/migrate', body, authority };
      const cases = [
        ['forged', signRequest(Buffer.alloc(32, 7), req, { now: () => Date.now() })],
        ['stale', signRequest(key, req, { now: () => Date.now() - 120_000 })],
        [
          'genuine status',
          signRequest(
            key,
            { method: 'GET', path: '/v1/status', body: '', authority },
            { now: () => Date.now() },
          ),
        ],
      ] as const;
      const codes: string[] = [];
      for (const [what, headers] of cases) {
        const get = what === 'genuine status';
        const argv = [
          'curl',
          '-s',
          '-o',
          '/dev/null',
          '-w',
          '%{http_code}',
          ...(get ? [] : ['-X', 'POST', '--data-binary', body]),
        ];
        for (const [k, v] of Object.entries(headers)) argv.push('-H', `${k}: ${v}`);
        argv.push(`${url('host-a')}${get ? '/v1/status' : '/v1/migrate'}`);
        const { stdout } = await sh(['ip', 'netns', 'exec', lab.ns['host-b'], ...argv]);
        codes.push(`${what} ${stdout}`);
        if (get) {
          const again = await sh(['ip', 'netns', 'exec', lab.ns['host-b'], ...argv]);
          codes.push(`replayed ${again.stdout}`);
        }
      }
      assert.deepEqual(codes, ['forged 401', 'stale 401', 'genuine status 200', 'replayed 401']);
      const refused = lab.agents['host-a'].stderr
        .split('\n')
        .filter((l) => l.includes('request refused'))
        .slice(refusedBefore);
      assert.deepEqual(
        refused.map((l) => (JSON.parse(l) as { reason: string }).reason),
        ['bad-signature', 'stale-timestamp', 'replayed-nonce'],
      );
      // Nothing changed: net1 is where it was and guest-1 still reaches the correspondent.
      await report(p1);
      await new Promise((r) => setTimeout(r, 1500));
      const after = await report(p1);
      assert.ok(after.received > 0 && after.lost === 0, JSON.stringify(after));
      assert.equal(await net1Host(), where);
    });

    it('SIGHUP: a new cluster key applies at once on both agents; the old one is refused; migration works', async () => {
      const start = await net1Host();
      assert.ok(start, 'precondition: net1 is active on a host');
      const NEW_KEY = 'c1'.repeat(32);
      const originals = { 'host-a': '', 'host-b': '' };
      const hangup = async (host: Host) => {
        const seen = lab.agents[host].stderr.length;
        lab.agents[host].child.kill('SIGHUP');
        await waitForLog(
          lab.agents[host],
          (l) => l.includes('"msg":"config reloaded"') && lab.agents[host].stderr.indexOf(l) >= seen,
          `${host} reload`,
        );
      };
      try {
        for (const host of ['host-a', 'host-b'] as const) {
          originals[host] = readFileSync(lab.agentConfigs[host], 'utf8');
          assert.ok(originals[host].includes(`key: ${CLUSTER_KEY}`));
          writeFileSync(
            lab.agentConfigs[host],
            originals[host].replace(`key: ${CLUSTER_KEY}`, `key: ${NEW_KEY}`),
          );
          await hangup(host);
        }
        const req = { method: 'GET', path: '/v1/status' } as const;
        assert.equal((await controlRequest(lab, 'host-b', 'host-a', req)).status, 401, 'old key refused');
        const signed = signFor('host-a', req, undefined, Buffer.from(NEW_KEY, 'hex'));
        assert.equal(
          (await controlRequest(lab, 'host-b', 'host-a', req, signed)).status,
          200,
          'new key accepted',
        );
        writeFileSync(lab.keyFile, `${NEW_KEY}\n`);
        const to: Host = start === 'host-a' ? 'host-b' : 'host-a';
        const out = await migrate(lab, 'net1', start, to, 'make-before-break');
        assert.match(out, /migration \S+ succeeded: net1/, out);
      } finally {
        writeFileSync(lab.keyFile, `${CLUSTER_KEY}\n`);
        for (const host of ['host-a', 'host-b'] as const) {
          if (!originals[host]) continue;
          writeFileSync(lab.agentConfigs[host], originals[host]);
          await hangup(host);
        }
      }
      assert.notEqual(await net1Host(), start, 'net1 moved (asked with the first key, reloaded back)');
    });
  });
}
