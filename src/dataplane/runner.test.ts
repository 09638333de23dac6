import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CommandError, ExecRunner, IpBatch, parseBatchErrors, RecordingRunner } from './runner.ts';

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

test('RecordingRunner records argv and input and answers from responders', async () => {
  const r = new RecordingRunner()
    .respond(['ip', '-j'], { stdout: '[]' })
    .respond((a) => a[0] === 'nft', { exitCode: 1, stderr: 'no' });
  assert.equal((await r.run(['ip', '-j', 'rule', 'show'])).stdout, '[]');
  assert.equal((await r.run(['ip', 'link'])).stdout, '');
  await assert.rejects(r.run(['nft', '-f', '-'], { input: 'flush ruleset\n' }), { code: 'ERR_COMMAND' });
  assert.deepEqual(r.lines(), ['ip -j rule show', 'ip link', 'nft -f -', '  flush ruleset']);
});

test('parseBatchErrors attributes each message to its line', () => {
  const stderr = [
    'RTNETLINK answers: No such process',
    'Command failed -:2',
    'Cannot find device "d0"',
    'Command failed -:5',
    '',
  ].join('\n');
  assert.deepEqual(parseBatchErrors(stderr, ['a', 'b', 'c', 'd', 'e']), [
    { line: 2, command: 'b', message: 'RTNETLINK answers: No such process' },
    { line: 5, command: 'e', message: 'Cannot find device "d0"' },
  ]);
});

test('IpBatch: one ip process; ignorable errors pass; ENOMEM lines are retried; others throw', async () => {
  const answers = [
    {
      exitCode: 1,
      stderr:
        'RTNETLINK answers: No such process\nCommand failed -:1\nRTNETLINK answers: Cannot allocate memory\nCommand failed -:2\n',
    },
    { exitCode: 0 },
  ];
  const r = new RecordingRunner(() => answers.shift());
  const slept: number[] = [];
  const batch = new IpBatch()
    .add(['route', 'del', '2001:db8::/64'], /No such process/)
    .add(['route', 'replace', '2001:db8:1::/64', 'dev', 'up0']);
  assert.deepEqual(await batch.run(r, { sleep: async (ms) => void slept.push(ms) }), { retried: 1 });
  assert.deepEqual(r.lines(), [
    'ip -6 -force -batch -',
    '  route del 2001:db8::/64',
    '  route replace 2001:db8:1::/64 dev up0',
    'ip -6 -force -batch -',
    '  route replace 2001:db8:1::/64 dev up0',
  ]);
  assert.deepEqual(slept, [5]);

  const bad = new RecordingRunner(() => ({
    exitCode: 1,
    stderr: 'RTNETLINK answers: Invalid argument\nCommand failed -:1\n',
  }));
  await assert.rejects(new IpBatch().add(['route', 'replace', '::/0', 'dev', 'x']).run(bad), {
    code: 'ERR_IP_BATCH',
  });
  const crashed = new RecordingRunner(() => ({ exitCode: 255, stderr: 'Command "bogus" is unknown' }));
  await assert.rejects(new IpBatch().add(['route', 'bogus']).run(crashed), { code: 'ERR_COMMAND' });
  assert.throws(() => new IpBatch().add(['route', 'del', '2001:db8::/64\nroute flush']), {
    code: 'ERR_COMMAND',
  });
  const empty = new RecordingRunner();
  await new IpBatch().run(empty);
  assert.equal(empty.calls.length, 0, 'an empty batch runs nothing');
});

test('IpBatch gives up on ENOMEM after the retries', async () => {
  const r = new RecordingRunner(() => ({
    exitCode: 1,
    stderr: 'RTNETLINK answers: Cannot allocate memory\nCommand failed -:1\n',
  }));
  await assert.rejects(
    new IpBatch().add(['route', 'replace', '::/0', 'dev', 'x']).run(r, { retries: 2, sleep: async () => {} }),
    {
      code: 'ERR_IP_BATCH',
    },
  );
  assert.equal(r.calls.length, 3);
});
