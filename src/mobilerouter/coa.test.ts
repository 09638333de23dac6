import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeClock } from '../clock.ts';
import { FakeKernel } from '../dataplane/fake-kernel.ts';
import type { AddressFlag, InterfaceAddress } from '../dataplane/kernel.ts';
import { silentLogger } from '../log.ts';
import { CoaTracker, selectCoa, usableAddresses } from './coa.ts';
import { runPendingWork } from './testkit.ts';

const global = (address: string, ...flags: AddressFlag[]): InterfaceAddress => ({
  address,
  prefixLength: 64,
  scope: 'global',
  flags,
});

describe('care-of address selection', () => {
  it('skips tentative, deprecated, dadfailed and temporary addresses and other scopes', () => {
    const addresses = [
      global('2001:db8::4'),
      global('2001:db8::5', 'temporary'),
      global('2001:db8::6', 'dadfailed'),
      global('2001:db8::7', 'deprecated'),
      global('2001:db8::8', 'tentative'),
      { ...global('fe80::1'), scope: 'link' as const },
      global('2001:db8::9'),
    ];
    assert.deepEqual(usableAddresses(addresses), ['2001:db8::4', '2001:db8::9']);
    assert.deepEqual(usableAddresses([]), []);
  });

  it('keeps the current address while it is usable', () => {
    assert.equal(selectCoa(['a', 'b'], 'b'), 'b');
    assert.equal(selectCoa(['a', 'b'], 'c'), 'a');
    assert.equal(selectCoa([], 'c'), undefined);
  });
});

describe('CoaTracker', () => {
  function rig() {
    const kernel = new FakeKernel();
    const clock = new FakeClock();
    const tracker = new CoaTracker(
      { kernel, clock, logger: silentLogger() },
      { uplink: 'up0', pollMs: 5000 },
    );
    const changes: Array<string | undefined> = [];
    tracker.onChange((change) => changes.push(change));
    const reads = () => kernel.calls.filter((call) => call.call === 'addresses').length;
    const watching = () => kernel.calls.filter((call) => call.call === 'watchAddresses').length;
    return { kernel, clock, tracker, changes, reads, watching };
  }

  it('reads the uplink, follows the kernel’s announcements and the poll, and reports changes once', async () => {
    const r = rig();
    await r.tracker.start();
    assert.equal(r.tracker.coa, undefined, 'no uplink yet: no CoA, no error');
    assert.equal(r.watching(), 1);
    assert.deepEqual(
      r.kernel.calls.find((call) => call.call === 'addresses'),
      {
        call: 'addresses',
        dev: 'up0',
        scope: 'global',
      },
    );

    const waiting = r.tracker.waitForCoa();
    r.kernel.addLink('up0');
    r.kernel.setAddresses('up0', [global('2001:db8:a::2')]);
    r.clock.advance(20);
    assert.equal(await waiting, '2001:db8:a::2');
    assert.deepEqual(r.changes, ['2001:db8:a::2']);
    const reads = r.reads();

    // the poll re-reads without announcements; no change, no callback
    r.clock.advance(5000);
    await runPendingWork();
    assert.equal(r.reads(), reads + 1);
    assert.deepEqual(r.changes, ['2001:db8:a::2']);

    // renumbering: new address added, old one deprecated
    r.kernel.setAddresses('up0', [global('2001:db8:a::2', 'deprecated'), global('2001:db8:b::2')]);
    r.clock.advance(20);
    await runPendingWork();
    assert.deepEqual(r.changes, ['2001:db8:a::2', '2001:db8:b::2']);

    await r.tracker.stop();
    r.kernel.setAddresses('up0', [global('2001:db8:c::2')]);
    r.clock.advance(5000);
    await runPendingWork();
    assert.deepEqual(r.changes, ['2001:db8:a::2', '2001:db8:b::2'], 'stopped: no more reads');
  });

  it('watches again if the watch ends', async () => {
    const r = rig();
    await r.tracker.start();
    r.kernel.killWatches();
    await runPendingWork();
    r.clock.advance(1000);
    assert.equal(r.watching(), 2);
    await r.tracker.stop();
  });
});
