// The libvirt driver against fakes of its two seams: a runner that records each virsh argv and answers
// what virsh 9.0 prints (stdout, stderr, exit code), and a spawner whose `virsh event` processes emit
// the lines virsh prints. Nothing here imitates more of virsh than those outputs.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ProcessExit, ProcessSpawner, SpawnOptions } from '../../system/process.ts';
import type { CommandRunner, RunOptions, RunResult } from '../../system/runner.ts';
import type { DriverProgress, GuestNetwork } from '../driver.ts';
import { LibvirtDriver } from './driver.ts';

const A = 'qemu+tcp://[2001:db8:a::2]/system';
const B = 'qemu+tcp://[2001:db8:b::2]/system';
const network: GuestNetwork = { name: 'net1', bridge: 'ofl-net1', guests: ['guest-1'] };
const ok = (stdout = ''): RunResult => ({ stdout, stderr: '', exitCode: 0 });
const fail = (stderr: string): RunResult => ({ stdout: '', stderr, exitCode: 1 });
const NO_DOMAIN = fail("error: failed to get domain 'vm1'\n");

/** Answers by the virsh subcommand and URI; `migrate` is answered when the test says so. */
class FakeRunner implements CommandRunner {
  readonly calls: string[][] = [];
  states: Record<string, RunResult[]> = {};
  migrateResult: Promise<RunResult> = Promise.resolve(ok());
  other: Record<string, RunResult> = {};

  async run(argv: readonly string[], _options?: RunOptions): Promise<RunResult> {
    this.calls.push([...argv]);
    const uri = argv[3]!;
    const sub = argv[4]!;
    if (sub === 'domstate') {
      const queue = this.states[uri] ?? [];
      return (queue.length > 1 ? queue.shift() : queue[0]) ?? NO_DOMAIN;
    }
    if (sub === 'migrate') return this.migrateResult;
    return this.other[sub] ?? ok();
  }

  subcommands(): string[] {
    return this.calls.map((c) => `${c[4]} ${c[3] === A ? 'A' : 'B'}`);
  }
}

class FakeEventProcess {
  private exit: (e: ProcessExit) => void = () => {};
  readonly exited = new Promise<ProcessExit>((r) => {
    this.exit = r;
  });
  readonly pid = 4242;
  constructor(
    readonly argv: readonly string[],
    private readonly options: SpawnOptions,
  ) {}
  print(...lines: string[]) {
    for (const l of lines) this.options.onStdoutLine?.(l);
  }
  kill() {
    this.exit({ code: null, signal: 'SIGTERM' });
  }
}

class FakeSpawner implements ProcessSpawner {
  readonly procs: FakeEventProcess[] = [];
  spawn(argv: readonly string[], options: SpawnOptions = {}) {
    const p = new FakeEventProcess(argv, options);
    this.procs.push(p);
    return p;
  }
  on(uri: string): FakeEventProcess {
    const p = this.procs.find((x) => x.argv.includes(uri));
    assert.ok(p, `a virsh event process for ${uri}`);
    return p;
  }
}

function rig(migration = {}) {
  const runner = new FakeRunner();
  const spawner = new FakeSpawner();
  const driver = new LibvirtDriver({
    host: 'host-a',
    uri: A,
    peers: { 'host-b': B },
    guests: { 'guest-1': { domain: 'vm1' } },
    runner,
    spawner,
    migration,
    eventGraceMs: 200,
  });
  driver.start();
  return { runner, spawner, driver };
}

/** A migration whose virsh exits when `finish` is called. */
function pendingMigrate(runner: FakeRunner) {
  let finish: (r: RunResult) => void = () => {};
  runner.migrateResult = new Promise((r) => {
    finish = r;
  });
  return (r: RunResult) => finish(r);
}

const line = (time: string, type: string, detail: string) =>
  `2026-12-07 13:00:${time}+0000: event '${type}' for domain 'vm1':${detail ? ` ${detail}` : ''}`;
const tick = () => new Promise((r) => setImmediate(r));

describe('libvirt driver', () => {
  test('start() runs one line-buffered `virsh event --loop` per libvirtd: this host and each peer', async () => {
    const { spawner, driver } = rig();
    assert.deepEqual(
      spawner.procs.map((p) => p.argv),
      [A, B].map((uri) => [
        'stdbuf',
        '-oL',
        'virsh',
        '-q',
        '-c',
        uri,
        'event',
        '--all',
        '--loop',
        '--timestamp',
      ]),
    );
    await driver.close();
  });

  test('listGuests: libvirt’s domain state decides; a domain that is not here, or shut off, is not listed', async () => {
    const { runner, driver } = rig();
    const cases: [RunResult, string | undefined][] = [
      [ok('running (booted)\n'), 'running'],
      [ok('running (migrated)\n'), 'running'],
      [ok('paused (migrating)\n'), 'paused'],
      [ok('shut off (migrated)\n'), undefined],
      [NO_DOMAIN, undefined],
    ];
    for (const [answer, state] of cases) {
      runner.states[A] = [answer];
      const [g] = await driver.listGuests(network);
      assert.equal(g?.state, state, answer.stdout || answer.stderr);
    }
    assert.deepEqual(runner.calls.at(-1), ['virsh', '-q', '-c', A, 'domstate', '--reason', 'vm1']);
    runner.states[A] = [ok('paused (migrating)\n')];
    assert.equal((await driver.listGuests(network))[0]?.detail, 'libvirt domain vm1: paused (migrating)');
    runner.states[A] = [fail('error: failed to connect to the hypervisor\n')];
    await assert.rejects(driver.listGuests(network), /domstate vm1: failed to connect to the hypervisor/);
    await driver.close();
  });

  test('prepareIncoming returns this host’s URI, and refuses a domain already running here', async () => {
    const { runner, driver } = rig();
    assert.deepEqual(await driver.prepareIncoming('guest-1', { network, source: 'host-b' }), {
      uri: A,
      domain: 'vm1',
    });
    runner.states[A] = [ok('running (booted)\n')];
    await assert.rejects(
      driver.prepareIncoming('guest-1', { network, source: 'host-b' }),
      /host host-a already runs libvirt domain vm1 \(running\)/,
    );
    await driver.close();
  });

  test('migrate: virsh migrate --live (--p2p, --tls as configured) to the peer’s URI; the hook at the source’s Suspended event; figures from job-completed', async () => {
    const { runner, spawner, driver } = rig({ p2p: true, tls: true });
    runner.states[A] = [ok('running (booted)\n')];
    const finish = pendingMigrate(runner);
    const order: string[] = [];
    const progress: DriverProgress['phase'][] = [];
    const migration = driver.migrate(
      'guest-1',
      { host: 'host-b', incoming: { uri: B, domain: 'vm1' } },
      {
        network,
        onSwitchover: async () => {
          order.push('hook');
        },
        onProgress: (p) => progress.push(p.phase),
      },
    );
    await tick();
    await tick();
    assert.deepEqual(runner.calls.at(-1), [
      'virsh',
      '-q',
      '-c',
      A,
      'migrate',
      '--live',
      '--p2p',
      '--tls',
      'vm1',
      B,
    ]);
    const a = spawner.on(A);
    const b = spawner.on(B);
    b.print(line('08.511', 'lifecycle', 'Started Migrated'));
    a.print(line('09.067', 'migration-iteration', "iteration: '2'"));
    await tick();
    assert.deepEqual(order, [], 'no hook before the guest stops');
    a.print(line('09.074', 'lifecycle', 'Suspended Migrated'));
    await tick();
    assert.deepEqual(order, ['hook'], 'the hook runs at Suspended Migrated, before virsh returns');
    b.print(line('09.163', 'lifecycle', 'Resumed Migrated'));
    a.print(line('11.316', 'lifecycle', 'Stopped Migrated'));
    a.print(
      line('11.318', 'job-completed', ''),
      '\ttime_elapsed: 1159',
      '\tdowntime: 90',
      '\tsetup_time: 13',
    );
    a.print('\tdata_processed: 62922258', '\tdata_total: 134873088', '\tmemory_iteration: 3');
    finish(ok());
    const result = await migration;
    assert.equal(result.downtimeMs, 90, "libvirt's own downtime");
    assert.equal(result.pausedMs, 89, 'destination Resumed minus source Suspended');
    assert.equal(result.transferredBytes, 62922258);
    assert.deepEqual(result.figures, {
      totalTimeMs: 1159,
      downtimeMs: 90,
      setupTimeMs: 13,
      transferredBytes: 62922258,
      totalBytes: 134873088,
      iterations: 3,
      pausedMs: 89,
    });
    assert.deepEqual(progress, ['start', 'switchover', 'resumed']);
    assert.deepEqual(order, ['hook'], 'the hook ran once');
    await driver.close();
  });

  test('migration.overlap false: the hook waits for virsh to return, after the Suspended event', async () => {
    const { runner, spawner, driver } = rig({ overlap: false });
    runner.states[A] = [ok('running (booted)\n')];
    const finish = pendingMigrate(runner);
    const order: string[] = [];
    const migration = driver.migrate(
      'guest-1',
      { host: 'host-b', incoming: { uri: B, domain: 'vm1' } },
      {
        network,
        onSwitchover: async () => {
          order.push('hook');
        },
      },
    );
    await tick();
    await tick();
    const a = spawner.on(A);
    const b = spawner.on(B);
    a.print(line('09.074', 'lifecycle', 'Suspended Migrated'));
    b.print(line('09.163', 'lifecycle', 'Resumed Migrated'));
    await tick();
    assert.equal(order.length, 0, 'not at the Suspended event');
    a.print(line('11.318', 'job-completed', ''), '\tdowntime: 90');
    order.push('virsh returned');
    finish(ok());
    await migration;
    assert.deepEqual(order, ['virsh returned', 'hook']);
    await driver.close();
  });

  test('migrate fails: libvirt left the guest paused on the source, the driver resumes it and says so', async () => {
    const { runner, driver } = rig();
    runner.states[A] = [ok('running (booted)\n'), ok('paused (migrating)\n'), ok('running (unpaused)\n')];
    runner.migrateResult = Promise.resolve(
      fail('error: operation failed: migration out job: unexpectedly failed\n'),
    );
    const progress: DriverProgress['phase'][] = [];
    await assert.rejects(
      driver.migrate(
        'guest-1',
        { host: 'host-b', incoming: { uri: B } },
        { network, onProgress: (p) => progress.push(p.phase) },
      ),
      (e: Error & { code?: string }) => {
        assert.equal(e.code, 'ERR_HYPERVISOR');
        assert.match(
          e.message,
          /virsh migrate to host-b failed: operation failed: migration out job: unexpectedly failed; the guest keeps running on the source \(host-a\)/,
        );
        return true;
      },
    );
    assert.deepEqual(runner.subcommands(), [
      'domstate A',
      'migrate A',
      'domstate A',
      'resume A',
      'domstate A',
    ]);
    assert.deepEqual(progress, ['start', 'rollback']);
    await driver.close();
  });

  test('a failure that leaves the guest on the destination is reported as such (ERR_HYPERVISOR_ROLLBACK)', async () => {
    const { runner, driver } = rig();
    runner.states[A] = [ok('running (booted)\n'), NO_DOMAIN];
    runner.states[B] = [ok('running (migrated)\n')];
    runner.migrateResult = Promise.resolve(fail('error: internal error: connection closed\n'));
    await assert.rejects(
      driver.migrate('guest-1', { host: 'host-b', incoming: {} }, { network }),
      (e: Error & { code?: string }) =>
        e.code === 'ERR_HYPERVISOR_ROLLBACK' && /the guest is running on the destination/.test(e.message),
    );
    await driver.close();
  });

  test('abort: the signal cancels libvirt’s job (domjobabort), and the guest stays on the source', async () => {
    const { runner, driver } = rig();
    runner.states[A] = [ok('running (booted)\n')];
    const finish = pendingMigrate(runner);
    const ac = new AbortController();
    const migration = driver.migrate(
      'guest-1',
      { host: 'host-b', incoming: {} },
      { network, signal: ac.signal },
    );
    await tick();
    ac.abort(new Error('operator cancelled'));
    await tick();
    assert.deepEqual(runner.calls.at(-1), ['virsh', '-q', '-c', A, 'domjobabort', 'vm1']);
    finish(fail('error: operation aborted: migration out job: canceled by client\n'));
    await assert.rejects(migration, /canceled by client; the guest keeps running on the source/);
    await driver.close();
  });

  test('a switchover hook that throws while libvirt still copies aborts the job', async () => {
    const { runner, spawner, driver } = rig();
    runner.states[A] = [ok('running (booted)\n')];
    const finish = pendingMigrate(runner);
    const migration = driver.migrate(
      'guest-1',
      { host: 'host-b', incoming: {} },
      {
        network,
        onSwitchover: async () => {
          throw new Error('destination refused');
        },
      },
    );
    await tick();
    spawner.on(A).print(line('09.074', 'lifecycle', 'Suspended Migrated'));
    await tick();
    await tick();
    assert.ok(
      runner.calls.some((c) => c[4] === 'domjobabort'),
      'domjobabort sent',
    );
    finish(fail('error: operation aborted: migration out job: canceled by client\n'));
    await assert.rejects(
      migration,
      (e: Error) => /keeps running on the source/.test(e.message) && e.cause instanceof Error,
    );
    await driver.close();
  });

  test('refuses a guest not running here, an unknown guest, and a destination with no URI', async () => {
    const { runner, driver } = rig();
    await assert.rejects(
      driver.migrate('guest-1', { host: 'host-b', incoming: {} }, { network }),
      /guest guest-1 is not running on host host-a \(libvirt domain vm1: none\)/,
    );
    await assert.rejects(driver.migrate('guest-9', { host: 'host-b', incoming: {} }, { network }), {
      code: 'ERR_HYPERVISOR_CONFIG',
    });
    await assert.rejects(driver.migrate('guest-1', { host: 'host-c', incoming: {} }, { network }), {
      code: 'ERR_HYPERVISOR_CONFIG',
      message: /hypervisor.peers.host-c/,
    });
    assert.ok(!runner.calls.some((c) => c[4] === 'migrate'), 'virsh migrate never ran');
    await driver.close();
  });

  test('close() stops the event watchers and nothing restarts them', async () => {
    const { spawner, driver } = rig();
    await driver.close();
    for (const p of spawner.procs) assert.deepEqual(await p.exited, { code: null, signal: 'SIGTERM' });
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(spawner.procs.length, 2);
  });
});
