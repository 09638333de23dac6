import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { FakeClock } from './clock.ts';
import { type Logger, LogLimiter } from './log.ts';

function capture(): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  return { logger, lines };
}

describe('LogLimiter', () => {
  test('at most N lines per interval per kind; the next line says how many were suppressed', () => {
    const clock = new FakeClock();
    const { logger, lines } = capture();
    const limiter = new LogLimiter(logger, clock, { lines: 3, intervalMs: 1000 });
    const written = Array.from({ length: 10 }, (_, i) => limiter.warn('auth', { i }, 'auth failed'));
    assert.deepEqual(written, [true, true, true, false, false, false, false, false, false, false]);
    assert.deepEqual(
      lines.map((l) => l['i']),
      [0, 1, 2],
    );
    assert.ok(lines.every((l) => l['suppressed'] === undefined && l['level'] === 40));
    clock.advance(1000);
    limiter.warn('auth', { i: 10 }, 'auth failed');
    limiter.warn('auth', { i: 11 }, 'auth failed');
    assert.equal(lines[3]!['suppressed'], 7, 'the 7 dropped lines are counted in the next one');
    assert.equal(lines[4]!['suppressed'], undefined, 'and only there');
  });

  test('kinds have budgets of their own', () => {
    const clock = new FakeClock();
    const { logger, lines } = capture();
    const limiter = new LogLimiter(logger, clock, { lines: 2, intervalMs: 1000 });
    for (let i = 0; i < 5; i++) limiter.warn('malformed', {}, 'malformed packet');
    assert.equal(limiter.warn('auth', {}, 'auth failed'), true, 'a flood of one kind does not mute another');
    assert.deepEqual(
      lines.map((l) => l['msg']),
      ['malformed packet', 'malformed packet', 'auth failed'],
    );
  });

  test('the budget refills at N per interval, not all at once', () => {
    const clock = new FakeClock();
    const { logger, lines } = capture();
    const limiter = new LogLimiter(logger, clock, { lines: 4, intervalMs: 1000 });
    for (let i = 0; i < 4; i++) limiter.warn('k', {}, 'x');
    clock.advance(500); // two tokens back
    const more = Array.from({ length: 4 }, () => limiter.warn('k', {}, 'x'));
    assert.deepEqual(more, [true, true, false, false]);
    assert.equal(lines.length, 6);
  });

  test('writes at the level asked for', () => {
    const { logger, lines } = capture();
    const limiter = new LogLimiter(logger, new FakeClock());
    limiter.write('error', 'k', { a: 1 }, 'e');
    limiter.write('debug', 'k', {}, 'd');
    assert.deepEqual(
      lines.map((l) => [l['level'], l['msg']]),
      [
        [50, 'e'],
        [20, 'd'],
      ],
    );
  });
});

const LOG = new URL('./log.ts', import.meta.url).pathname;
const LINES = 4000; // ~600 KB: far more than a pipe holds (64 KiB)

/**
 * Runs `body` in a child with createLogger('t') as `log`, its stderr a pipe that the parent reads only
 * once the child printed "ran" on stdout. Returns the log lines, stdout and how the child ended.
 */
async function child(
  body: string,
): Promise<{ lines: string[]; stdout: string; code: number | null; signal: string | null }> {
  const code = `import { createLogger, flushLogger } from ${JSON.stringify(LOG)};
const log = createLogger('t');
const pad = 'x'.repeat(120);
for (let i = 0; i < ${LINES}; i++) log.info({ i, pad }, 'line');
${body}`;
  const c = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, OFFLINK_LOG_LEVEL: 'info' },
  });
  c.stderr.pause();
  let stdout = '';
  c.stdout.on('data', (d) => (stdout += d));
  const deadline = Date.now() + 10_000;
  while (!stdout.includes('ran') && c.exitCode === null && c.signalCode === null) {
    if (Date.now() > deadline) {
      c.kill('SIGKILL');
      throw new Error('the child never ran its event loop while its log pipe was full: logging blocked');
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  let err = '';
  c.stderr.on('data', (d) => (err += d));
  c.stderr.resume();
  const [exitCode, signal] = (await once(c, 'close')) as [number | null, string | null];
  return { lines: err.split('\n').filter((l) => l.includes('"msg":"line"')), stdout, code: exitCode, signal };
}

describe('createLogger: asynchronous destination', () => {
  test('logging into a full pipe does not block the event loop; process.exit writes every queued line', async () => {
    const r = await child(`setTimeout(() => { process.stdout.write('ran\\n'); process.exit(0); }, 0);`);
    assert.equal(r.code, 0);
    assert.equal(r.lines.length, LINES, 'no line lost at exit');
    assert.equal(JSON.parse(r.lines.at(-1)!).i, LINES - 1, 'in order');
  });

  test('an uncaught exception (fatal) still writes every queued line', async () => {
    const r = await child(
      `setTimeout(() => { process.stdout.write('ran\\n'); throw new Error('boom'); }, 0);`,
    );
    assert.equal(r.code, 1);
    assert.equal(r.lines.length, LINES);
  });

  test('flushLogger resolves only once the lines are written (even a SIGKILL after it loses none)', async () => {
    const r = await child(`process.stdout.write('ran\\n');
await flushLogger(log, 60_000);
process.kill(process.pid, 'SIGKILL');`);
    assert.equal(r.signal, 'SIGKILL');
    assert.equal(r.lines.length, LINES);
  });
});
