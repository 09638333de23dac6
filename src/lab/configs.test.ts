import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadAgentConfig } from '../agent/config.ts';
import { loadHomeAgentConfig } from '../homeagent/config.ts';
import { writeLabConfigs } from './configs.ts';
import { planTopology, type Topology } from './topology.ts';

const topo: Topology = {
  ...planTopology('off-link'),
  careOf: { 'host-a': '2001:db8:a:0:f:ff:fe00:a', 'host-b': '2001:db8:b:0:f:ff:fe00:b' },
};

describe('lab configs', () => {
  it('are accepted by the daemons’ own config loaders, and agree with each other', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ofl-configs-'));
    try {
      const files = writeLabConfigs(topo, dir);
      assert.equal(statSync(files.clusterKey).mode & 0o077, 0, 'keys are private');
      const ha = loadHomeAgentConfig(files.ha);
      const a = loadAgentConfig(files.hosts['host-a']);
      const b = loadAgentConfig(files.hosts['host-b']);
      assert.equal(ha.homeAgent.address, '2001:db8:f::1');
      assert.equal(a.mobileRouter.haAddress, ha.homeAgent.address);
      assert.equal(a.peers['host-b'], 'http://[2001:db8:b:0:f:ff:fe00:b]:7400');
      assert.equal(b.peers['host-a'], 'http://[2001:db8:a:0:f:ff:fe00:a]:7400');
      assert.deepEqual(a.control.key, b.control.key);
      const [mr] = ha.mobileRouters;
      for (const n of [a.networks[0]!, b.networks[0]!]) {
        assert.equal(n.homeAddress, mr!.homeAddress);
        assert.deepEqual(n.prefixes, mr!.prefixes);
        assert.equal(n.spi, mr!.spi);
        assert.deepEqual(n.key, mr!.key);
        assert.deepEqual(n.guests, ['guest-1']);
      }
      assert.equal(a.networks[0]!.activeOnStart, true);
      assert.equal(b.networks[0]!.activeOnStart, false);
      assert.deepEqual(a.hypervisor.namespaces, { 'host-a': 'ofl-host-a', 'host-b': 'ofl-host-b' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
