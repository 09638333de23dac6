// A stock Prometheus (Debian's `prometheus`) scrapes the home agent and both host agents over their
// unsigned metrics endpoints (root, namespaces, the real daemons): Prometheus runs in the correspondent's
// namespace with a config of three static targets on other hosts' addresses, and the test reads its HTTP
// API: every target up, and queries return the daemons' own metrics (the HA's bindings, the agents'
// active networks). /healthz answers 200 on each, while the control API still refuses an unsigned GET.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { HOSTS, withAgentRig } from './helpers/agent-lab.ts';
import { ADDR } from './helpers/homeagent-lab.ts';
import type { NetnsLab } from './helpers/netns.ts';
import { dataplaneBackends, needsRoot, skipUnless } from './helpers/requirements.ts';

const HA_METRICS = `[${ADDR.ha}]:9100`;
const AGENT_METRICS = Object.values(HOSTS).map((a) => `[${a}]:9181`);
const PROMETHEUS = 'http://[::1]:9090';

function hasPrometheus(): boolean {
  try {
    execFileSync('prometheus', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function prometheusYaml(): string {
  return `global: { scrape_interval: 1s, scrape_timeout: 900ms, evaluation_interval: 1s }
scrape_configs:
  - job_name: offlink-ha
    static_configs: [{ targets: ["${HA_METRICS}"] }]
  - job_name: offlink-agent
    static_configs: [{ targets: [${AGENT_METRICS.map((t) => `"${t}"`).join(', ')}] }]
`;
}

interface Target {
  labels: { job: string; instance: string };
  health: string;
  lastError: string;
}

// biome-ignore lint/suspicious/noExplicitAny: Prometheus API JSON, checked field by field
async function api(netns: NetnsLab, ns: string, path: string): Promise<any> {
  const { stdout } = await netns.exec(ns, ['curl', '-sf', '--max-time', '5', `${PROMETHEUS}${path}`]);
  const body = JSON.parse(stdout);
  assert.equal(body.status, 'success', stdout);
  return body.data;
}

/** Polls `read` until it returns something other than undefined; the last value read on timeout. */
async function eventually<T>(what: string, read: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await read();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what}: timed out (${last ?? 'no value'})`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Status code of a GET from inside `ns` (curl prints it; 000 when nothing answered). */
async function statusOf(netns: NetnsLab, ns: string, url: string): Promise<number> {
  const { stdout } = await netns.exec(ns, ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', url]);
  return Number(stdout);
}

const backends = await dataplaneBackends();
// Scraping does not depend on the data plane: one backend is enough.
const backend = backends[0];

test('a stock Prometheus scrapes the home agent and both host agents', {
  skip: needsRoot() || skipUnless(hasPrometheus(), 'prometheus (apt-get install prometheus)'),
  timeout: 120_000,
}, async (t) => {
  assert.ok(backend, 'a data plane backend');
  await withAgentRig(
    backend,
    'prom-it',
    {
      homeAgent: `metrics: { listen: "${HA_METRICS}" }`,
      agent: 'metrics: { listen: "[{address}]:9181" }',
    },
    async ({ netns, procs, dir, lab }) => {
      const config = join(dir, 'prometheus.yml');
      writeFileSync(config, prometheusYaml());
      mkdirSync(join(dir, 'tsdb'));
      // Killed with the rig's other processes when it closes (also when the test fails).
      const prometheus = procs.start(lab.ns.cn, [
        'prometheus',
        `--config.file=${config}`,
        `--storage.tsdb.path=${join(dir, 'tsdb')}`,
        '--web.listen-address=[::1]:9090',
      ]);

      // Every target up, by job.
      const targets = await eventually('all three targets up', async () => {
        if (prometheus.child.exitCode !== null)
          throw new Error(`prometheus exited: ${prometheus.stderr.slice(-2000)}`);
        const data = await api(netns, lab.ns.cn, '/api/v1/targets?state=active');
        const active = data.activeTargets as Target[];
        return active.length === 3 && active.every((a) => a.health === 'up') ? active : undefined;
      });
      const seen = targets.map((a) => `${a.labels.job} ${a.labels.instance} ${a.health}`).sort();
      for (const line of seen) t.diagnostic(line);
      assert.deepEqual(seen, [
        ...AGENT_METRICS.map((i) => `offlink-agent ${i} up`),
        `offlink-ha ${HA_METRICS} up`,
      ]);

      // A query returns the daemons' metrics: two bindings at the HA, net1 and net2 active on host-a.
      const bindings = await eventually('offlink_ha_bindings', async () => {
        const data = await api(netns, lab.ns.cn, '/api/v1/query?query=offlink_ha_bindings');
        return data.result.length === 1 ? Number(data.result[0].value[1]) : undefined;
      });
      assert.equal(bindings, 2);
      const active = await api(
        netns,
        lab.ns.cn,
        `/api/v1/query?query=${encodeURIComponent('sum by (instance) (offlink_agent_network_active)')}`,
      );
      const byInstance = Object.fromEntries(
        (active.result as Array<{ metric: { instance: string }; value: [number, string] }>).map((r) => [
          r.metric.instance,
          Number(r.value[1]),
        ]),
      );
      assert.deepEqual(byInstance, { [AGENT_METRICS[0]!]: 2, [AGENT_METRICS[1]!]: 0 });

      // Health, unsigned; the control API is still signed.
      assert.equal(await statusOf(netns, lab.ns.cn, `http://${HA_METRICS}/healthz`), 200);
      for (const m of AGENT_METRICS)
        assert.equal(await statusOf(netns, lab.ns.cn, `http://${m}/healthz`), 200);
      assert.equal(await statusOf(netns, lab.ns.cn, `http://[${HOSTS['host-a']}]:7400/metrics`), 401);
    },
  );
});
