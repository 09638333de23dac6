import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CommandError, ExecRunner } from './runner.ts';

test('ExecRunner runs argv without a shell, feeds input, and reports failures as CommandError', async () => {
  const r = new ExecRunner();
  assert.deepEqual(await r.run(['cat'], { input: 'a b;$(x)\n' }), {
    stdout: 'a b;$(x)\n',
    stderr: '',
    exitCode: 0,
  });
  assert.equal((await r.run(['echo', '$HOME', '*'])).stdout, '$HOME *\n');
  const failing = ['node', '-e', 'process.stderr.write("boom"); process.exit(3)'];
  await assert.rejects(r.run(failing), (e: unknown) => {
    assert.ok(e instanceof CommandError);
    assert.equal(e.code, 'ERR_COMMAND');
    assert.equal(e.exitCode, 3);
    assert.equal(e.stderr, 'boom');
    assert.deepEqual(e.argv, failing);
    return true;
  });
  assert.equal((await r.run(failing, { allowFailure: true })).exitCode, 3);
  await assert.rejects(r.run(['/nonexistent/offlink-cmd']), {
    code: 'ERR_MISSING_COMMAND',
    message: /\/nonexistent\/offlink-cmd not found/,
  });
});

test('ExecRunner kills a command that outlives its timeout', async () => {
  const started = Date.now();
  const r = await new ExecRunner({ timeoutMs: 60_000 }).run(['sleep', '5'], {
    timeoutMs: 200,
    allowFailure: true,
  });
  assert.notEqual(r.exitCode, 0);
  assert.ok(Date.now() - started < 2000, `killed after ${Date.now() - started} ms`);
});

test('ExecRunner honours an AbortSignal', async () => {
  const ac = new AbortController();
  const run = new ExecRunner().run(['sleep', '5'], { signal: ac.signal });
  ac.abort();
  await assert.rejects(run);
});
