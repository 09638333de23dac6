import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { pino } from 'pino';
import { FakeClock, systemClock } from '../clock.ts';
import {
  type AgentStatus,
  ControlError,
  type HandoverRequest,
  type MigrationEvent,
  type MigrationRecord,
  unknownNetwork,
} from '../migration/messages.ts';
import { type ControlHandlers, ControlServer } from './api.ts';
import { AUTH_HEADERS, RequestVerifier, signRequest } from './auth.ts';
import { ControlClient, MigrationFailed } from './client.ts';

const KEY = Buffer.alloc(32, 1);
const ID = 'mig-0001-test';

const RECORD: MigrationRecord = {
  id: ID,
  network: 'net1',
  from: 'host-a',
  to: 'host-b',
  procedure: 'make-before-break',
  startedAt: '2024-01-01T00:00:00.000Z',
  outcome: 'succeeded',
  timings: { prepareMs: 3, hypervisorMs: 25, totalMs: 40 },
};

/** Fake handlers that record every call and answer from a small table. */
class FakeHandlers implements ControlHandlers {
  calls: string[] = [];
  migrateOutcome: 'ok' | 'refuse' | 'fail-midway' | 'fail-record' = 'ok';

  /** The procedure of every prepare and handover, as the handler received it. */
  procedures: string[] = [];

  async prepare(req: { network: string; procedure: string; guests: string[] }) {
    this.calls.push(`prepare ${req.network}`);
    this.procedures.push(req.procedure);
    if (req.network !== 'net1') throw unknownNetwork('host-b', req.network);
    return {
      host: 'host-b',
      network: 'net1',
      coa: '2001:db8:b::2',
      incoming: { 'guest-1': { bridgeIndex: 7 } },
    };
  }
  async abort(req: { network: string }) {
    this.calls.push(`abort ${req.network}`);
  }
  async handover(req: HandoverRequest) {
    this.calls.push(`handover ${req.network} ${req.lastSequence}`);
    this.procedures.push(req.procedure);
    if (req.network === 'busy') throw new ControlError(409, 'ERR_NETWORK_STATE', 'net busy is migrating');
    return {
      host: 'host-b',
      network: req.network,
      state: 'active' as const,
      coa: '2001:db8:b::2',
      sequence: (req.lastSequence + 1) & 0xffff,
      buToBaMs: 2,
    };
  }
  async migrate(
    req: { network: string; to: string; procedure: string },
    onProgress: (e: MigrationEvent) => void,
  ): Promise<MigrationRecord> {
    this.calls.push(`migrate ${req.network} ${req.to} ${req.procedure}`);
    if (this.migrateOutcome === 'refuse')
      throw new ControlError(409, 'ERR_BUSY', 'net1 is already migrating');
    onProgress({ type: 'phase', migrationId: ID, phase: 'prepare', state: 'start', elapsedMs: 0 });
    onProgress({ type: 'phase', migrationId: ID, phase: 'prepare', state: 'done', elapsedMs: 3, ms: 3 });
    if (this.migrateOutcome === 'fail-midway') throw new Error('driver exploded');
    if (this.migrateOutcome === 'fail-record') {
      return {
        ...RECORD,
        outcome: 'failed',
        failedPhase: 'hypervisor',
        error: 'move failed',
        recovery: 'active on host-a',
      };
    }
    return RECORD;
  }
  async status(): Promise<AgentStatus> {
    this.calls.push('status');
    return { host: 'host-a', networks: [], migrations: [RECORD] };
  }
  async metrics() {
    return { contentType: 'text/plain; version=0.0.4', body: 'offlink_up 1\n' };
  }
}

describe('control API', () => {
  const handlers = new FakeHandlers();
  const logged: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => logged.push(JSON.parse(line)) });
  const server = new ControlServer({
    handlers,
    verifier: new RequestVerifier(KEY, { clock: systemClock }),
    log,
  });
  let base = '';
  /** This server's authority, which every signature covers. */
  let authority = '';
  let client: ControlClient;

  before(async () => {
    const addr = await server.listen('127.0.0.1', 0);
    base = `http://127.0.0.1:${addr.port}`;
    authority = `127.0.0.1:${addr.port}`;
    client = new ControlClient(base, { key: KEY });
  });
  after(() => server.close());
  beforeEach(() => {
    handlers.calls = [];
    handlers.procedures = [];
    handlers.migrateOutcome = 'ok';
    logged.length = 0;
  });

  /** A raw request with explicit headers, to send what the client never would. */
  async function raw(method: string, path: string, body: string, headers: Record<string, string>) {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { 'content-type': 'application/json', ...headers },
      ...(method === 'GET' ? {} : { body }),
    });
    return { status: res.status, json: (await res.json()) as { error?: { code: string; message: string } } };
  }

  it('answers signed requests', async () => {
    assert.deepEqual((await client.status()).migrations, [RECORD]);
    const prep = await client.prepare({
      migrationId: ID,
      network: 'net1',
      source: 'host-a',
      procedure: 'make-before-break',
      guests: ['guest-1'],
    });
    assert.deepEqual(prep.incoming, { 'guest-1': { bridgeIndex: 7 } });
    const ho = await client.handover({
      migrationId: ID,
      network: 'net1',
      source: 'host-a',
      procedure: 'break-before-make',
      hoa: '2001:db8:ffff::101',
      prefixes: ['2001:db8:100::/64'],
      lastSequence: 65535,
      lifetimeRemaining: 590,
    });
    assert.equal(ho.sequence, 0);
    await client.abort({ migrationId: ID, network: 'net1', source: 'host-a', reason: 'test' });
    assert.match(await client.metrics(), /offlink_up 1/);
    assert.deepEqual(handlers.calls, ['status', 'prepare net1', 'handover net1 65535', 'abort net1']);
  });

  it('refuses forged, stale, replayed and unsigned requests with 401, logs them, calls nothing', async () => {
    const body = JSON.stringify({ network: 'net1', to: 'host-b' });
    const req = { method: 'POST', path: '/v1/migrate', body, authority };
    const forged = signRequest(Buffer.alloc(32, 2), req, systemClock);
    const stale = signRequest(KEY, req, { now: () => Date.now() - 60_000 });
    const good = signRequest(KEY, req, systemClock);
    const tampered = signRequest(
      KEY,
      { ...req, body: JSON.stringify({ network: 'net2', to: 'host-b' }) },
      systemClock,
    );
    const cases: Array<[string, Record<string, string>, string]> = [
      ['forged', forged, 'bad-signature'],
      ['stale', stale, 'stale-timestamp'],
      ['tampered body', tampered, 'bad-signature'],
      ['unsigned', {}, 'missing-header'],
    ];
    for (const [what, headers, reason] of cases) {
      const r = await raw('POST', '/v1/migrate', body, headers);
      assert.equal(r.status, 401, what);
      assert.equal(r.json.error?.code, 'ERR_AUTH');
      assert.match(r.json.error!.message, new RegExp(reason));
    }
    // The genuine request goes through once; its replay is refused.
    assert.equal((await fetch(`${base}/v1/migrate`, { method: 'POST', headers: good, body })).status, 200);
    const replay = await raw('POST', '/v1/migrate', body, good);
    assert.equal(replay.status, 401);
    assert.match(replay.json.error!.message, /replayed-nonce/);
    assert.deepEqual(handlers.calls, ['migrate net1 host-b make-before-break']);
    assert.equal(logged.length, 5);
    assert.deepEqual(
      logged.map((l) => l['reason']),
      ['bad-signature', 'stale-timestamp', 'bad-signature', 'missing-header', 'replayed-nonce'],
    );
    assert.equal(logged[0]!['path'], '/v1/migrate');
    // /metrics and unknown paths are authenticated too.
    assert.equal((await fetch(`${base}/metrics`)).status, 401);
    assert.equal((await fetch(`${base}/nowhere`)).status, 401);
  });

  it('refuses a genuine request signed for another agent (a replay to another host)', async () => {
    const body = JSON.stringify({ network: 'net1', to: 'host-b' });
    for (const other of ['127.0.0.2:7400', authority.replace(/:\d+$/, ':1'), '']) {
      const headers = signRequest(
        KEY,
        { method: 'POST', path: '/v1/migrate', body, authority: other },
        systemClock,
      );
      const r = await raw('POST', '/v1/migrate', body, headers);
      assert.equal(r.status, 401, other);
      assert.match(r.json.error!.message, /bad-signature/);
    }
    assert.deepEqual(handlers.calls, []);
  });

  it('a bad body is refused with 400 naming the field, and reaches no handler', async () => {
    const send = (path: string, body: string) =>
      raw('POST', path, body, signRequest(KEY, { method: 'POST', path, body, authority }, systemClock));
    const cases: Array<[string, string, RegExp]> = [
      ['/v1/migrate', '{"network":"net1"}', /^to: /],
      ['/v1/migrate', '{"network":"net 1","to":"host-b"}', /^network: a name/],
      [
        '/v1/migrate',
        '{"network":"net1","to":"host-b","procedure":"teleport"}',
        /^procedure: unknown procedure "teleport": expected make-before-break or break-before-make/,
      ],
      ['/v1/migrate', '{"network":"net1","to":"host-b","extra":1}', /^extra: unknown field/],
      ['/v1/migrate', 'not json', /body is not JSON/],
      ['/v1/migrate', '', /^body: /],
      [
        '/v1/handover',
        JSON.stringify({
          migrationId: ID,
          network: 'net1',
          source: 'host-a',
          procedure: 'break-before-make',
          hoa: 'nope',
          prefixes: ['2001:db8:100::/64'],
          lastSequence: 1,
          lifetimeRemaining: 1,
        }),
        /^hoa: not an IPv6 address/,
      ],
      [
        '/v1/handover',
        JSON.stringify({
          migrationId: ID,
          network: 'net1',
          source: 'host-a',
          procedure: 'break-before-make',
          hoa: '2001:db8::1',
          prefixes: ['2001:db8:100::/64'],
          lastSequence: 65536,
          lifetimeRemaining: 1,
        }),
        /^lastSequence: /,
      ],
      [
        '/v1/prepare',
        JSON.stringify({
          migrationId: 'x',
          network: 'net1',
          source: 'host-a',
          procedure: 'break-before-make',
          guests: [],
        }),
        /^migrationId: /,
      ],
      [
        '/v1/abort',
        JSON.stringify({
          migrationId: ID,
          network: 'net1',
          source: 'host-a',
          reason: 'x',
          sendBack: { 'guest 1': {} },
        }),
        /^sendBack\.guest 1: Invalid key/,
      ],
      [
        '/v1/abort',
        JSON.stringify({
          migrationId: ID,
          network: 'net1',
          source: 'host-a',
          reason: 'x',
          sendBack: { 'guest-1': { uri: { nested: true } } },
        }),
        /^sendBack\.guest-1\.uri: /,
      ],
    ];
    for (const [path, body, message] of cases) {
      const r = await send(path, body);
      assert.equal(r.status, 400, `${path} ${body}`);
      assert.equal(r.json.error?.code, 'ERR_BAD_REQUEST');
      assert.match(r.json.error!.message, message);
    }
    assert.deepEqual(handlers.calls, []);
  });

  it('accepts "paper", the former name, from older agents and scripts; handlers see break-before-make', async () => {
    /** The HTTP status of a signed POST (the migrate stream is NDJSON, so no JSON parsing here). */
    const send = async (path: string, body: object) => {
      const text = JSON.stringify(body);
      const headers = signRequest(KEY, { method: 'POST', path, body: text, authority }, systemClock);
      const res = await fetch(`${base}${path}`, { method: 'POST', headers, body: text });
      await res.text();
      return res;
    };
    const from = { migrationId: ID, network: 'net1', source: 'host-a', procedure: 'paper' };
    assert.equal(
      (await send('/v1/migrate', { network: 'net1', to: 'host-b', procedure: 'paper' })).status,
      200,
    );
    assert.equal((await send('/v1/prepare', { ...from, guests: ['guest-1'] })).status, 200);
    const handover = {
      ...from,
      hoa: '2001:db8:ffff::101',
      prefixes: ['2001:db8:100::/64'],
      lastSequence: 1,
      lifetimeRemaining: 0,
    };
    assert.equal((await send('/v1/handover', handover)).status, 200);
    assert.deepEqual(handlers.calls, [
      'migrate net1 host-b break-before-make',
      'prepare net1',
      'handover net1 1',
    ]);
    assert.deepEqual(handlers.procedures, ['break-before-make', 'break-before-make']);
  });

  it('maps handler refusals to 404 / 409 with their message', async () => {
    await assert.rejects(
      client.prepare({
        migrationId: ID,
        network: 'net9',
        source: 'host-a',
        procedure: 'break-before-make',
        guests: [],
      }),
      (err: unknown) => {
        assert.ok(err instanceof ControlError);
        assert.equal(err.status, 404);
        assert.equal(err.code, 'ERR_UNKNOWN_NETWORK');
        assert.equal(err.message, 'host host-b holds no network named net9');
        return true;
      },
    );
    handlers.migrateOutcome = 'refuse';
    await assert.rejects(client.migrate({ network: 'net1', to: 'host-b' }), (err: unknown) => {
      assert.ok(err instanceof ControlError);
      assert.equal(err.status, 409);
      assert.equal(err.code, 'ERR_BUSY');
      return true;
    });
  });

  it('streams migration progress as NDJSON, ending with the result', async () => {
    const events: MigrationEvent[] = [];
    const record = await client.migrate(
      { network: 'net1', to: 'host-b', procedure: 'break-before-make' },
      (e) => events.push(e),
    );
    assert.deepEqual(record, RECORD);
    assert.deepEqual(
      events.map((e) => (e.type === 'phase' ? `${e.phase} ${e.state}` : e.type)),
      ['prepare start', 'prepare done', 'result'],
    );
    assert.deepEqual(handlers.calls, ['migrate net1 host-b break-before-make']);
  });

  it('a migration that fails after it started ends the stream with an error line', async () => {
    handlers.migrateOutcome = 'fail-record';
    await assert.rejects(client.migrate({ network: 'net1', to: 'host-b' }), (err: unknown) => {
      assert.ok(err instanceof MigrationFailed);
      assert.equal(err.message, 'move failed');
      assert.equal(err.migration?.recovery, 'active on host-a');
      return true;
    });
    handlers.migrateOutcome = 'fail-midway';
    await assert.rejects(client.migrate({ network: 'net1', to: 'host-b' }), /driver exploded/);
  });

  it('wrong method 405, unknown path 404, oversized body 413', async () => {
    const sign = (method: string, path: string, body = '') =>
      signRequest(KEY, { method, path, body, authority }, systemClock);
    assert.equal(
      (await fetch(`${base}/v1/status`, { method: 'POST', headers: sign('POST', '/v1/status') })).status,
      405,
    );
    assert.equal((await fetch(`${base}/v1/nothing`, { headers: sign('GET', '/v1/nothing') })).status, 404);
    const big = 'x'.repeat((1 << 20) + 1);
    const r = await fetch(`${base}/v1/migrate`, {
      method: 'POST',
      headers: sign('POST', '/v1/migrate', big),
      body: big,
    });
    assert.equal(r.status, 413);
    assert.equal(Object.keys(AUTH_HEADERS).length, 3);
  });
});

describe('control API: refusal log lines', () => {
  it('are rate-limited (20 a second per reason), every refusal still answered 401 and counted', async () => {
    const logged: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => logged.push(JSON.parse(line)) });
    const clock = new FakeClock(Date.now());
    const refused: string[] = [];
    const server = new ControlServer({
      handlers: new FakeHandlers(),
      verifier: new RequestVerifier(KEY, { clock: systemClock }),
      log,
      clock,
      onRefused: (reason) => refused.push(reason),
    });
    const { port } = await server.listen('127.0.0.1', 0);
    try {
      const get = () => fetch(`http://127.0.0.1:${port}/v1/status`).then((r) => r.status);
      for (let i = 0; i < 30; i++) assert.equal(await get(), 401);
      assert.equal(refused.length, 30);
      const lines = () => logged.filter((l) => l['msg'] === 'control API: request refused');
      assert.equal(lines().length, 20);
      clock.advance(1000);
      assert.equal(await get(), 401);
      assert.equal(lines().length, 21);
      assert.equal(lines()[20]!['suppressed'], 10);
    } finally {
      await server.close();
    }
  });
});
