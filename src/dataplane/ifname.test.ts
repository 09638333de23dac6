import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkInterfaceName } from './ifname.ts';

test('interface names that could not be Linux names, or would break a command script, are refused', () => {
  for (const ok of ['eth0', 'br-net1', 'ofl-net1', 'up0', 'a.b:c_d'])
    assert.equal(checkInterfaceName(ok), ok);
  for (const bad of ['', 'a-very-long-name0', 'br 0', 'br"0', 'br\n0'])
    assert.throws(() => checkInterfaceName(bad), { code: 'ERR_INVALID_INTERFACE' });
});
