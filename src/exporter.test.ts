import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { type Health, MetricsExporter } from './exporter.ts';

describe('MetricsExporter', () => {
  let health: Health = { ok: false, state: 'starting' };
  const exporter = new MetricsExporter({
    metrics: async () => ({ contentType: 'text/plain; version=0.0.4', body: 'offlink_x 1\n' }),
    health: () => health,
  });
  let url = '';
  before(async () => {
    const bound = await exporter.listen({ host: '::1', port: 0 });
    assert.equal(bound.host, '::1');
    url = exporter.url;
    assert.equal(url, `http://[::1]:${bound.port}`);
  });
  after(() => exporter.close());

  test('GET /metrics: the registry text, unsigned', async () => {
    const res = await fetch(`${url}/metrics`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4');
    assert.equal(await res.text(), 'offlink_x 1\n');
  });

  test('GET /healthz: 503 with the details until the daemon serves, then 200', async () => {
    let res = await fetch(`${url}/healthz`);
    assert.equal(res.status, 503);
    assert.deepEqual(await res.json(), { status: 'unavailable', state: 'starting' });
    health = { ok: true, state: 'running', bindings: 3 };
    res = await fetch(`${url}/healthz`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: 'ok', state: 'running', bindings: 3 });
  });

  test('anything else: 404, and only GET/HEAD', async () => {
    assert.equal((await fetch(`${url}/status`)).status, 404, 'no binding details on this socket');
    assert.equal((await fetch(`${url}/metrics`, { method: 'POST', body: 'x' })).status, 405);
    assert.equal((await fetch(`${url}/metrics`, { method: 'HEAD' })).status, 200);
  });
});

describe('examples/grafana-offlink.json', () => {
  test('queries only metrics the daemons export', () => {
    const root = new URL('../', import.meta.url);
    const dashboard = readFileSync(new URL('examples/grafana-offlink.json', root), 'utf8');
    JSON.parse(dashboard);
    // Every metric name in src/ (prom-client's `name: '…'`; the data plane's counter is made per daemon prefix).
    const exported = new Set<string>();
    for (const file of readdirSync(new URL('src/', root), { recursive: true, encoding: 'utf8' })) {
      if (!file.endsWith('.ts') || file.endsWith('.test.ts')) continue;
      const text = readFileSync(new URL(`src/${file}`, root), 'utf8');
      for (const m of text.matchAll(/name: '(offlink_[a-z_]+)'/g)) exported.add(m[1]!);
      if (text.includes('_dataplane_packets_total`'))
        for (const p of ['offlink_ha', 'offlink_agent']) exported.add(`${p}_dataplane_packets_total`);
    }
    assert.ok(exported.has('offlink_ha_bindings') && exported.has('offlink_agent_migration_phase_seconds'));
    const used = new Set(
      [...dashboard.matchAll(/offlink_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, '')),
    );
    const unknown = [...used].filter((n) => !exported.has(n));
    assert.deepEqual(unknown, [], 'metric names the daemons do not export');
    assert.ok(used.size >= 10, `${used.size} metrics charted`);
  });
});
