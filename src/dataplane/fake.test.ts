import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeHomeAgentDataplane, FakeMobileRouterDataplane } from './fake.ts';

const binding = { hoa: '2001:db8:ffff::100', coa: '2001:db8:a::2', prefixes: ['2001:db8:100::/64'], id: 1 };

test('FakeHomeAgentDataplane holds bindings, records calls and fails on request without changing state', async () => {
  const dp = new FakeHomeAgentDataplane();
  await dp.init();
  await dp.update([{ op: 'set', binding }]);
  assert.deepEqual(
    [...dp.routes()],
    [
      ['2001:db8:100::/64', '2001:db8:a::2'],
      ['2001:db8:ffff::100/128', '2001:db8:a::2'],
    ],
  );
  dp.failNext('update');
  await assert.rejects(dp.update([{ op: 'delete', binding }]), { code: 'ERR_COMMAND' });
  assert.equal(dp.bindings.size, 1);
  await dp.update([{ op: 'delete', binding }]);
  assert.equal(dp.bindings.size, 0);
  await dp.reconcile([binding]);
  await dp.flush();
  assert.deepEqual(
    dp.calls.map((call) => call.method),
    ['init', 'update', 'update', 'update', 'reconcile', 'flush'],
  );
  assert.equal(dp.initialized, false);
});

test('FakeMobileRouterDataplane tracks host and active networks', async () => {
  const dp = new FakeMobileRouterDataplane();
  const routes = {
    network: 'net1',
    haAddress: '2001:db8:ffff::1',
    coa: '2001:db8:a::2',
    uplink: 'up0',
    bridge: 'ofl-net1',
    prefixes: ['2001:db8:100::/64'],
    table: 100,
    rulePref: 100,
  };
  await dp.initHost({ coa: routes.coa, haAddress: routes.haAddress, uplink: 'up0', table: 200 });
  dp.failNext(undefined, new Error('boom'));
  await assert.rejects(dp.activate(routes), /boom/);
  assert.equal(dp.active.size, 0);
  await dp.activate(routes);
  assert.equal(dp.active.get('net1')?.coa, '2001:db8:a::2');
  await dp.deactivate(routes);
  assert.equal(dp.active.size, 0);
  await dp.flushHost();
  assert.equal(dp.host, undefined);
});
