import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { QmpClient, QmpDisconnectedError, QmpError, QmpProtocolError, QmpStateError } from './qmp.ts';

const dir = mkdtempSync(join(tmpdir(), 'qmp-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

const GREETING = {
  QMP: { version: { qemu: { major: 7, minor: 2, micro: 22 }, package: 'fake' }, capabilities: ['oob'] },
};

interface Received {
  execute: string;
  arguments?: Record<string, unknown>;
  id: string;
}

/** A fake QEMU: greets, then hands each command to `onCommand` with a way to write raw lines. */
class FakeQmp {
  readonly path = join(dir, `qmp-${++n}.sock`);
  readonly received: Received[] = [];
  private server: Server;
  socket: Socket | undefined;
  onCommand: (cmd: Received, fake: FakeQmp) => void = (cmd, f) => f.reply(cmd.id, {});

  constructor(opts: { greeting?: string | null } = {}) {
    this.server = createServer((socket) => {
      this.socket = socket;
      let rest = '';
      socket.on('error', () => {});
      if (opts.greeting !== null) socket.write(`${opts.greeting ?? JSON.stringify(GREETING)}\r\n`);
      socket.on('data', (d) => {
        const lines = (rest + String(d)).split('\n');
        rest = lines.pop() ?? '';
        for (const l of lines) {
          const cmd = JSON.parse(l) as Received;
          this.received.push(cmd);
          if (cmd.execute === 'qmp_capabilities') this.reply(cmd.id, {});
          else this.onCommand(cmd, this);
        }
      });
    });
  }

  listen(): Promise<this> {
    return new Promise((r) => this.server.listen(this.path, () => r(this)));
  }

  line(s: string): void {
    this.socket?.write(`${s}\r\n`);
  }

  reply(id: string, ret: unknown): void {
    this.line(JSON.stringify({ return: ret, id }));
  }

  event(event: string, data: Record<string, unknown> = {}, seconds = 1700000000, microseconds = 250): void {
    this.line(JSON.stringify({ event, data, timestamp: { seconds, microseconds } }));
  }

  async close(): Promise<void> {
    this.socket?.destroy();
    await new Promise((r) => this.server.close(r));
  }
}

async function connected(fake: FakeQmp): Promise<QmpClient> {
  await fake.listen();
  const qmp = new QmpClient('t');
  await qmp.connect(fake.path);
  return qmp;
}

describe('QmpClient', () => {
  test('greeting, then qmp_capabilities before any other command', async () => {
    const fake = await new FakeQmp().listen();
    const qmp = new QmpClient('t');
    assert.equal(qmp.state, 'idle');
    const greeting = await qmp.connect(fake.path);
    assert.equal(qmp.state, 'running');
    assert.equal(greeting.version.qemu.major, 7);
    assert.deepEqual(greeting.capabilities, ['oob']);
    fake.onCommand = (cmd, f) => f.reply(cmd.id, { status: 'running', running: true });
    assert.deepEqual(await qmp.execute('query-status'), { status: 'running', running: true });
    assert.deepEqual(
      fake.received.map((r) => r.execute),
      ['qmp_capabilities', 'query-status'],
    );
    await qmp.close();
    assert.equal(qmp.state, 'idle');
    await fake.close();
  });

  test('execute before connect is a state error; connect twice too', async () => {
    const qmp = new QmpClient();
    await assert.rejects(qmp.execute('query-status'), QmpStateError);
    const fake = new FakeQmp();
    const connectedQmp = await connected(fake);
    await assert.rejects(connectedQmp.connect(fake.path), QmpStateError);
    await connectedQmp.close();
    await fake.close();
  });

  test('replies out of order reach the right callers; arguments are sent', async () => {
    const fake = new FakeQmp();
    const held: Received[] = [];
    fake.onCommand = (cmd, f) => {
      held.push(cmd);
      if (held.length === 3)
        for (const command of held.reverse()) f.reply(command.id, { echo: command.arguments?.['x'] });
    };
    const qmp = await connected(fake);
    const results = await Promise.all([1, 2, 3].map((x) => qmp.execute('echo', { x })));
    assert.deepEqual(results, [{ echo: 1 }, { echo: 2 }, { echo: 3 }]);
    await qmp.close();
    await fake.close();
  });

  test("QEMU's error becomes QmpError with class and desc", async () => {
    const fake = new FakeQmp();
    fake.onCommand = (cmd, f) =>
      f.line(
        JSON.stringify({
          error: { class: 'CommandNotFound', desc: 'The command nope has not been found' },
          id: cmd.id,
        }),
      );
    const qmp = await connected(fake);
    const err = await qmp.execute('nope').catch((e: unknown) => e);
    assert.ok(err instanceof QmpError);
    assert.equal(err.errorClass, 'CommandNotFound');
    assert.equal(err.desc, 'The command nope has not been found');
    assert.equal(err.command, 'nope');
    assert.equal(err.code, 'ERR_QMP_COMMAND');
    // The connection is still usable.
    fake.onCommand = (cmd, f) => f.reply(cmd.id, 42);
    assert.equal(await qmp.execute('x'), 42);
    await qmp.close();
    await fake.close();
  });

  test('events interleaved with replies reach listeners registered before the command', async () => {
    const fake = new FakeQmp();
    fake.onCommand = (cmd, f) => {
      f.event('MIGRATION', { status: 'setup' }, 1700000000, 1000);
      f.event('STOP');
      f.reply(cmd.id, {});
      f.event('MIGRATION', { status: 'active' });
      f.event('MIGRATION', { status: 'completed' });
    };
    const qmp = await connected(fake);
    const seen: string[] = [];
    const off = qmp.onEvent((e) => seen.push(e.event));
    const migration = qmp.listen(['MIGRATION']);
    await qmp.execute('migrate', { uri: 'tcp:[::1]:4444' });
    const first = await migration.next();
    assert.equal(first.data['status'], 'setup');
    assert.equal(first.timestamp, 1700000000001);
    const done = await migration.next((e) => e.data['status'] === 'completed');
    assert.equal(done.data['status'], 'completed');
    migration.close();
    off();
    assert.deepEqual(seen, ['MIGRATION', 'STOP', 'MIGRATION', 'MIGRATION']);
    await qmp.close();
    await fake.close();
  });

  test('waitForEvent resolves on a later event and honours its AbortSignal', async () => {
    const fake = new FakeQmp();
    const qmp = await connected(fake);
    const resume = qmp.waitForEvent('RESUME');
    fake.event('STOP');
    fake.event('RESUME');
    assert.equal((await resume).event, 'RESUME');
    const ac = new AbortController();
    const never = qmp.waitForEvent('SHUTDOWN', undefined, ac.signal);
    ac.abort(new Error('gave up'));
    await assert.rejects(never, /gave up/);
    await qmp.close();
    await fake.close();
  });

  test('disconnect mid-call rejects every waiting call and listener with QmpDisconnectedError', async () => {
    const fake = new FakeQmp();
    fake.onCommand = () => {};
    const qmp = await connected(fake);
    const listener = qmp.listen(['RESUME']);
    const calls = [qmp.execute('migrate'), qmp.execute('query-migrate')];
    const waiting = listener.next();
    await new Promise((r) => setTimeout(r, 20));
    fake.socket?.destroy();
    for (const call of calls) await assert.rejects(call, QmpDisconnectedError);
    await assert.rejects(waiting, QmpDisconnectedError);
    assert.equal(qmp.state, 'idle');
    assert.ok(qmp.lastError instanceof QmpDisconnectedError);
    const later = await qmp.execute('x').catch((e: unknown) => e);
    assert.ok(later instanceof QmpDisconnectedError);
    await fake.close();
  });

  test('a malformed JSON line drops the connection and rejects the waiting call', async () => {
    const fake = new FakeQmp();
    fake.onCommand = (_cmd, f) => f.line('{"return": {}, "id": ');
    const qmp = await connected(fake);
    const err = await qmp.execute('query-status').catch((e: unknown) => e);
    assert.ok(err instanceof QmpDisconnectedError, String(err));
    assert.ok(err.cause instanceof QmpProtocolError);
    assert.equal(qmp.state, 'idle');
    await fake.close();
  });

  test('an aborted call is removed; its late reply is ignored', async () => {
    const fake = new FakeQmp();
    let first: Received | undefined;
    fake.onCommand = (cmd, f) => {
      if (!first) first = cmd;
      else {
        f.reply(first.id, 'late');
        f.reply(cmd.id, 'second');
      }
    };
    const qmp = await connected(fake);
    const ac = new AbortController();
    const p = qmp.execute('slow', undefined, { signal: ac.signal });
    await new Promise((r) => setTimeout(r, 10));
    ac.abort(new Error('cancelled'));
    await assert.rejects(p, /cancelled/);
    assert.equal(await qmp.execute('fast'), 'second');
    assert.equal(qmp.state, 'running');
    await qmp.close();
    await fake.close();
  });

  test('connect fails clearly: no socket, no greeting (timeout), garbage greeting, peer closes', async () => {
    const missing = new QmpClient();
    await assert.rejects(missing.connect(join(dir, 'nothing.sock')), (e: unknown) => {
      assert.ok(e instanceof QmpDisconnectedError);
      assert.match(e.message, /ENOENT/);
      return true;
    });
    assert.equal(missing.state, 'idle');

    const silent = await new FakeQmp({ greeting: null }).listen();
    await assert.rejects(
      new QmpClient().connect(silent.path, { timeoutMs: 100 }),
      /no handshake within 100 ms/,
    );
    await silent.close();

    const garbage = await new FakeQmp({ greeting: '{"hello": 1}' }).listen();
    await assert.rejects(new QmpClient().connect(garbage.path), QmpProtocolError);
    await garbage.close();

    const slam = new FakeQmp({ greeting: null });
    await slam.listen();
    const qmp = new QmpClient();
    const p = qmp.connect(slam.path);
    await new Promise((r) => setTimeout(r, 20));
    slam.socket?.destroy();
    await assert.rejects(p, QmpDisconnectedError);
    await slam.close();
  });

  test('connect honours its AbortSignal', async () => {
    const silent = await new FakeQmp({ greeting: null }).listen();
    const ac = new AbortController();
    const qmp = new QmpClient();
    const p = qmp.connect(silent.path, { signal: ac.signal });
    setTimeout(() => ac.abort(new Error('stop connecting')), 20);
    await assert.rejects(p, /stop connecting/);
    assert.equal(qmp.state, 'idle');
    await silent.close();
  });

  test('an event sent together with the capabilities reply is not lost', async () => {
    const fake = new FakeQmp();
    await fake.listen();
    const qmp = new QmpClient('t');
    const origReply = fake.reply.bind(fake);
    fake.reply = (id, ret) => {
      // Reply and event in one write: the event must reach the reader loop after the handshake.
      fake.socket?.write(
        `${JSON.stringify({ return: ret, id })}\r\n${JSON.stringify({ event: 'RESUME', data: {}, timestamp: { seconds: 1, microseconds: 0 } })}\r\n`,
      );
      fake.reply = origReply;
    };
    const seen: string[] = [];
    qmp.onEvent((e) => seen.push(e.event));
    await qmp.connect(fake.path);
    await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(seen, ['RESUME']);
    await qmp.close();
    await fake.close();
  });
});
