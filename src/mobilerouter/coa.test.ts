import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeClock } from '../clock.ts';
import type { RunResult } from '../dataplane/types.ts';
import { silentLogger } from '../log.ts';
import { CoaTracker, selectCoa, usableAddresses } from './coa.ts';
import { FakeSpawner, settle } from './testkit.ts';

function addrJson(addrs: Array<Record<string, unknown>>): string {
  return JSON.stringify([
    {
      ifname: 'up0',
      addr_info: [...addrs.map((a) => ({ family: 'inet6', scope: 'global', prefixlen: 64, ...a })), {}],
    },
  ]);
}

describe('care-of address selection', () => {
  it('skips tentative, deprecated, dadfailed and temporary addresses; oldest first', () => {
    const json = addrJson([
      { local: '2001:db8::9' },
      { local: '2001:db8::8', tentative: true },
      { local: '2001:db8::7', deprecated: true },
      { local: '2001:db8::6', dadfailed: true },
      { local: '2001:db8::5', temporary: true },
      { local: '2001:db8::4' },
    ]);
    assert.deepEqual(usableAddresses(json), ['2001:db8::4', '2001:db8::9']);
    assert.deepEqual(usableAddresses('not json'), []);
    assert.deepEqual(usableAddresses('[]'), []);
  });

  it('keeps the current address while it is usable', () => {
    assert.equal(selectCoa(['a', 'b'], 'b'), 'b');
    assert.equal(selectCoa(['a', 'b'], 'c'), 'a');
    assert.equal(selectCoa([], 'c'), undefined);
  });
});

describe('CoaTracker', () => {
  function rig() {
    let reply: Partial<RunResult> = { exitCode: 1, stdout: '' };
    const commands: string[] = [];
    const runner = {
      run: async (argv: readonly string[]) => {
        commands.push(argv.join(' '));
        return { stdout: '', stderr: '', exitCode: 0, ...reply };
      },
    };
    const spawner = new FakeSpawner();
    const clock = new FakeClock();
    const tracker = new CoaTracker(
      { runner, spawner, clock, logger: silentLogger() },
      { uplink: 'up0', pollMs: 5000 },
    );
    const changes: Array<string | undefined> = [];
    tracker.onChange((c) => changes.push(c));
    return { set: (r: Partial<RunResult>) => (reply = r), commands, spawner, clock, tracker, changes };
  }

  it('reads the uplink, follows monitor events and the poll, and reports changes once', async () => {
    const r = rig();
    r.set({ exitCode: 1 });
    await r.tracker.start();
    assert.equal(r.tracker.coa, undefined, 'no uplink yet: no CoA, no error');
    assert.deepEqual(r.spawner.running(), ['ip -6 monitor address']);
    assert.equal(r.commands[0], 'ip -j -6 addr show dev up0 scope global');

    const waiting = r.tracker.waitForCoa();
    r.set({ exitCode: 0, stdout: addrJson([{ local: '2001:db8:a::2' }]) });
    const monitor = r.spawner.spawned[0]!.process;
    monitor.print('3: up0    inet6 2001:db8:a::2/64 scope global');
    monitor.print('       valid_lft forever preferred_lft forever');
    r.clock.advance(20);
    assert.equal(await waiting, '2001:db8:a::2');
    assert.deepEqual(r.changes, ['2001:db8:a::2']);
    const reads = r.commands.length;

    // the poll re-reads without events; no change, no callback
    r.clock.advance(5000);
    await settle();
    assert.equal(r.commands.length, reads + 1);
    assert.deepEqual(r.changes, ['2001:db8:a::2']);

    // renumbering: new address added, old one deprecated
    r.set({
      exitCode: 0,
      stdout: addrJson([{ local: '2001:db8:b::2' }, { local: '2001:db8:a::2', deprecated: true }]),
    });
    monitor.print('change');
    r.clock.advance(20);
    await settle();
    assert.deepEqual(r.changes, ['2001:db8:a::2', '2001:db8:b::2']);

    await r.tracker.stop();
    assert.deepEqual(r.spawner.running(), []);
  });

  it('restarts the monitor if it dies', async () => {
    const r = rig();
    await r.tracker.start();
    r.spawner.spawned[0]!.process.exit(1);
    await settle();
    r.clock.advance(1000);
    assert.deepEqual(r.spawner.running(), ['ip -6 monitor address']);
    assert.equal(r.spawner.spawned.length, 2);
    await r.tracker.stop();
  });
});
