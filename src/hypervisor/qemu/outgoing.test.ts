import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { DriverProgress } from '../driver.ts';
import { type MigratingVm, OutgoingMigration, type OutgoingOptions } from './outgoing.ts';
import { QmpClient } from './qmp.ts';
import { TLS_CREDS_ID } from './tls.ts';

const dir = mkdtempSync(join(tmpdir(), 'outgoing-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

interface Cmd {
  execute: string;
  arguments?: Record<string, unknown>;
  id: string;
}

/**
 * A fake source QEMU speaking QMP: a migration walks setup → active → (STOP) → pre-switchover (when the
 * capability is on) → device → completed, or to cancelled on migrate_cancel / failed when told.
 */
class FakeQemu {
  readonly path = join(dir, `q${++n}.sock`);
  readonly log: string[] = [];
  running = true;
  status = 'none';
  pauseBeforeSwitchover = false;
  /** query-migrate answers total-time 0 this many times after completion (QEMU's race). */
  zeroFiguresFor = 1;
  failAt: string | undefined;
  /** Arguments of migrate-set-parameters and object-add, in order. */
  readonly args: Record<string, unknown>[] = [];
  objects = new Set<string>();
  /** object-add fails with this (QEMU checking the certificates it loads). */
  objectAddError: string | undefined;
  private server: Server;
  private socket: Socket | undefined;

  constructor() {
    this.server = createServer((s) => {
      this.socket = s;
      s.on('error', () => {});
      this.send({ QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 } }, capabilities: [] } });
      let rest = '';
      s.on('data', (d) => {
        const lines = (rest + String(d)).split('\n');
        rest = lines.pop() ?? '';
        for (const l of lines) this.handle(JSON.parse(l) as Cmd);
      });
    });
  }

  listen(): Promise<this> {
    return new Promise((r) => this.server.listen(this.path, () => r(this)));
  }

  dropClient(): void {
    this.socket?.destroy();
  }

  close(): Promise<void> {
    this.socket?.destroy();
    return new Promise((r) => this.server.close(() => r()));
  }

  private send(message: unknown): void {
    this.socket?.write(`${JSON.stringify(message)}\r\n`);
  }

  private event(event: string, data: Record<string, unknown> = {}): void {
    const t = Date.now();
    this.send({ event, data, timestamp: { seconds: Math.floor(t / 1000), microseconds: (t % 1000) * 1000 } });
  }

  private setStatus(status: string): void {
    this.status = status;
    this.log.push(status);
    this.event('MIGRATION', { status });
  }

  private later(ms: number, fn: () => void): void {
    setTimeout(fn, ms);
  }

  private handle(command: Cmd): unknown {
    const ok = (ret: unknown = {}) => this.send({ return: ret, id: command.id });
    if (!['query-migrate', 'query-status', 'qmp_capabilities'].includes(command.execute))
      this.log.push(command.execute);
    switch (command.execute) {
      case 'qmp_capabilities':
        return ok();
      case 'migrate-set-capabilities': {
        const caps = command.arguments?.['capabilities'] as { capability: string; state: boolean }[];
        this.pauseBeforeSwitchover = caps.some((x) => x.capability === 'pause-before-switchover' && x.state);
        return ok();
      }
      case 'migrate-set-parameters':
        this.args.push(command.arguments ?? {});
        return ok();
      case 'object-add': {
        const a = command.arguments ?? {};
        this.args.push(a);
        if (this.objectAddError || this.objects.has(String(a['id'])))
          return this.send({
            error: { class: 'GenericError', desc: this.objectAddError ?? 'duplicate ID' },
            id: command.id,
          });
        this.objects.add(String(a['id']));
        return ok();
      }
      case 'object-del': {
        const id = String(command.arguments?.['id']);
        if (!this.objects.delete(id))
          return this.send({
            error: { class: 'GenericError', desc: `object '${id}' not found` },
            id: command.id,
          });
        return ok();
      }
      case 'migrate':
        ok();
        this.setStatus('setup');
        this.later(5, () => this.setStatus('active'));
        this.later(30, () => {
          if (this.status !== 'active') return;
          if (this.failAt === 'active') return this.fail();
          this.running = false;
          this.event('STOP');
          if (this.pauseBeforeSwitchover) this.setStatus('pre-switchover');
          else this.complete();
        });
        return;
      case 'migrate-continue':
        ok();
        this.setStatus('device');
        this.later(5, () => (this.failAt === 'device' ? this.fail() : this.complete()));
        return;
      case 'migrate_cancel':
        ok();
        if (this.status === 'completed') return;
        this.setStatus('cancelling');
        this.later(5, () => {
          this.setStatus('cancelled');
          this.resume();
        });
        return;
      case 'query-status':
        return ok({ running: this.running, status: this.running ? 'running' : 'postmigrate' });
      case 'query-migrate': {
        if (this.status === 'active')
          return ok({
            status: 'active',
            ram: {
              transferred: 1000,
              remaining: 5000,
              total: 6000,
              'dirty-pages-rate': 10,
              'page-size': 4096,
            },
          });
        if (this.status === 'completed') {
          const zero = this.zeroFiguresFor-- > 0;
          return ok({
            status: 'completed',
            'total-time': zero ? 0 : 412,
            downtime: zero ? 0 : 12,
            'setup-time': 1,
            ram: { transferred: 56e6, total: 135e6 },
          });
        }
        return ok({
          status: this.status,
          ...(this.status === 'failed' ? { 'error-desc': 'Unable to write to socket: Broken pipe' } : {}),
        });
      }
      case 'cont':
        this.resume();
        return ok();
      default:
        this.send({
          error: { class: 'CommandNotFound', desc: `The command ${command.execute} has not been found` },
          id: command.id,
        });
    }
  }

  private complete(): void {
    this.setStatus('completed');
  }

  private fail(): void {
    this.setStatus('failed');
    this.resume();
  }

  private resume(): void {
    if (this.running) return;
    this.running = true;
    this.event('RESUME');
  }
}

async function setup(): Promise<{ fake: FakeQemu; vm: MigratingVm }> {
  const fake = await new FakeQemu().listen();
  const qmp = new QmpClient('t');
  await qmp.connect(fake.path);
  const vm: MigratingVm = {
    qmp,
    alive: true,
    describeExit: () => 'running',
    options: { paths: { qmp: fake.path } },
  };
  return { fake, vm };
}

function options(extra: Partial<OutgoingOptions> = {}): OutgoingOptions {
  return {
    guest: 'g',
    uri: 'tcp:[2001:db8:b::2]:4444',
    overlap: true,
    timeoutMs: 10_000,
    progressIntervalMs: 5,
    ...extra,
  };
}

describe('OutgoingMigration (fake QEMU)', () => {
  test('overlap: the hook runs at pre-switchover, before migrate-continue; figures re-read after completed', async () => {
    const { fake, vm } = await setup();
    const progress: DriverProgress[] = [];
    const result = await new OutgoingMigration(
      vm,
      options({
        downtimeLimitMs: 50,
        onSwitchover: async () => {
          fake.log.push('hook');
        },
        onProgress: (p) => progress.push(p),
        resumedAt: async () => Date.now(),
      }),
    ).run();
    assert.deepEqual(fake.log, [
      'migrate-set-capabilities',
      'migrate-set-parameters',
      'migrate',
      'setup',
      'active',
      'pre-switchover',
      'hook',
      'migrate-continue',
      'device',
      'completed',
    ]);
    assert.equal(result.downtimeMs, 12);
    assert.equal(result.figures?.['totalTimeMs'], 412);
    assert.equal(result.transferredBytes, 56e6);
    assert.ok(result.pausedMs !== undefined && result.pausedMs >= 0);
    assert.ok(
      progress.some(
        (p) => p.phase === 'transfer' && p.remainingBytes === 5000 && p.dirtyBytesPerSecond === 40960,
      ),
    );
    assert.deepEqual(
      progress.map((p) => p.phase).filter((p, i, a) => a.indexOf(p) === i),
      ['start', 'transfer', 'switchover', 'resumed'],
    );
    await vm.qmp.close();
    await fake.close();
  });

  test('TLS: a fresh client tls-creds-x509 object each time, named by tls-creds; without TLS tls-creds is cleared', async () => {
    const { fake, vm } = await setup();
    for (let i = 0; i < 2; i++) await new OutgoingMigration(vm, options({ tlsDir: '/etc/pki/qemu' })).run();
    await new OutgoingMigration(vm, options()).run();
    const creds = {
      'qom-type': 'tls-creds-x509',
      id: TLS_CREDS_ID,
      dir: '/etc/pki/qemu',
      endpoint: 'client',
      'verify-peer': true,
    };
    assert.deepEqual(fake.args, [
      creds,
      { 'tls-creds': TLS_CREDS_ID },
      creds,
      { 'tls-creds': TLS_CREDS_ID },
      { 'tls-creds': '' },
    ]);
    assert.deepEqual(
      fake.log.filter((c) => c.startsWith('object-')),
      ['object-del', 'object-add', 'object-del', 'object-add'],
      'the second migration replaced the object (renewed certificates count)',
    );
    await vm.qmp.close();
    await fake.close();
  });

  test('TLS: certificates QEMU refuses fail the migration before anything is sent; the guest keeps running', async () => {
    const { fake, vm } = await setup();
    fake.objectAddError =
      "Our own certificate /etc/pki/qemu/client-cert.pem failed validation against /etc/pki/qemu/ca-cert.pem: The certificate hasn't got a known issuer";
    await assert.rejects(
      new OutgoingMigration(vm, options({ tlsDir: '/etc/pki/qemu' })).run(),
      (e: Error) => {
        assert.match(
          e.message,
          /TLS certificates in \/etc\/pki\/qemu: Our own certificate .* known issuer; the guest keeps running on the source/,
        );
        return true;
      },
    );
    assert.ok(!fake.log.includes('migrate'), 'no migrate sent');
    assert.equal(fake.running, true);
    await vm.qmp.close();
    await fake.close();
  });

  test('no overlap: QEMU is continued at once and the hook runs after completion', async () => {
    const { fake, vm } = await setup();
    await new OutgoingMigration(
      vm,
      options({
        overlap: false,
        onSwitchover: async () => {
          fake.log.push('hook');
        },
      }),
    ).run();
    assert.deepEqual(fake.log.slice(-4), ['migrate-continue', 'device', 'completed', 'hook']);
    await vm.qmp.close();
    await fake.close();
  });

  test('a failing hook cancels: the guest runs on the source again', async () => {
    const { fake, vm } = await setup();
    const err = await new OutgoingMigration(
      vm,
      options({
        onSwitchover: async () => {
          throw new Error('destination refused the handover');
        },
      }),
    )
      .run()
      .catch((e: Error & { code?: string }) => e);
    assert.match(
      String(err),
      /switchover hook failed: destination refused the handover; the guest keeps running on the source/,
    );
    assert.ok(fake.log.includes('migrate_cancel'));
    assert.ok(!fake.log.includes('migrate-continue'));
    assert.equal(fake.running, true);
    await vm.qmp.close();
    await fake.close();
  });

  test('a migration that fails in QEMU reports its error-desc; the guest runs', async () => {
    const { fake, vm } = await setup();
    fake.failAt = 'device';
    await assert.rejects(
      new OutgoingMigration(vm, options()).run(),
      /migration failed: Unable to write to socket: Broken pipe; the guest keeps running on the source/,
    );
    assert.equal(fake.running, true);
    await vm.qmp.close();
    await fake.close();
  });

  test('QMP dropped at pre-switchover: reconnect, cancel, guest runs', async () => {
    const { fake, vm } = await setup();
    const err = await new OutgoingMigration(
      vm,
      options({
        onSwitchover: async () => {
          fake.dropClient();
          await new Promise((r) => setTimeout(r, 20));
        },
      }),
    )
      .run()
      .catch((e: Error) => e);
    assert.match(String(err), /QMP connection lost mid-migration .*; the guest keeps running on the source/);
    assert.ok(fake.log.includes('migrate_cancel'));
    assert.equal(fake.running, true);
    assert.equal(vm.qmp.state, 'running', 'reconnected');
    await vm.qmp.close();
    await fake.close();
  });

  test('abort and timeout cancel the migration', async () => {
    for (const how of ['abort', 'timeout'] as const) {
      const { fake, vm } = await setup();
      const ac = new AbortController();
      const run = new OutgoingMigration(
        vm,
        options({
          signal: ac.signal,
          timeoutMs: how === 'timeout' ? 60 : 10_000,
          // Hold QEMU at pre-switchover until the signal fires.
          onSwitchover: () =>
            new Promise<void>((_, reject) => {
              if (how === 'abort') setTimeout(() => ac.abort(new Error('operator')), 10);
              setTimeout(() => reject(new Error('gave up waiting')), 200);
            }),
        }),
      ).run();
      await assert.rejects(
        run,
        how === 'abort'
          ? /migration aborted \(operator\)/
          : /did not finish within 0 s|switchover hook failed/,
      );
      assert.ok(fake.log.includes('migrate_cancel'), how);
      assert.equal(fake.running, true);
      await vm.qmp.close();
      await fake.close();
    }
  });
});
