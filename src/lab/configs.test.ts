import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
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

  it('dual-stack: the HA and both agents list the IPv4 prefix beside the IPv6 MNP; ipv6: the MNP alone', () => {
    for (const [family, prefixes] of [
      ['dual', ['2001:db8:100::/64', '10.1.0.0/24']],
      ['ipv6', ['2001:db8:100::/64']],
    ] as const) {
      const dir = mkdtempSync(join(tmpdir(), 'ofl-configs-'));
      try {
        const files = writeLabConfigs({ ...topo, ...planTopology('off-link', 1, 'netns', family) }, dir);
        const text = (f: string) => JSON.stringify(parse(readFileSync(f, 'utf8')));
        for (const f of [files.ha, files.hosts['host-a'], files.hosts['host-b']])
          assert.ok(text(f).includes(`"prefixes":${JSON.stringify(prefixes)}`), `${family}: ${f}`);
        // and the daemons' loaders take them
        loadHomeAgentConfig(files.ha);
        loadAgentConfig(files.hosts['host-a']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  });

  it('libvirt guests: each agent names its libvirtd and the peer’s by care-of address, and the lab’s domain', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ofl-configs-'));
    try {
      const files = writeLabConfigs({ ...topo, ...planTopology('off-link', 1, 'libvirt', 'ipv6') }, dir);
      const a = loadAgentConfig(files.hosts['host-a']);
      const b = loadAgentConfig(files.hosts['host-b']);
      assert.deepEqual(a.hypervisor, {
        ...a.hypervisor,
        driver: 'libvirt',
        uri: 'qemu+tcp://[2001:db8:a:0:f:ff:fe00:a]/system',
        peers: { 'host-b': 'qemu+tcp://[2001:db8:b:0:f:ff:fe00:b]/system' },
      });
      assert.equal(
        b.hypervisor.driver === 'libvirt' && b.hypervisor.peers['host-a'],
        'qemu+tcp://[2001:db8:a:0:f:ff:fe00:a]/system',
      );
      for (const c of [a, b])
        assert.deepEqual(c.hypervisor.driver === 'libvirt' && c.hypervisor.guests, {
          'guest-1': { domain: 'ofl-guest-1' },
        });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
