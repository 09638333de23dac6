import assert from 'node:assert/strict';
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
