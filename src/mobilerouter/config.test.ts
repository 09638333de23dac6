import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError } from '../errors.ts';
import {
  defaultTable,
  type MobileNetworkInput,
  parseMobileNetwork,
  parseMobileRouterHost,
} from './config.ts';
import { baseNetwork, KEY_HEX } from './testkit.ts';

function refused(input: unknown, path: string, message: RegExp, at?: string): void {
  assert.throws(
    () => parseMobileNetwork(input, at === undefined ? {} : { at }),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError, String(e));
      assert.equal(e.path, path);
      assert.match(e.message, message);
      return true;
    },
  );
}

describe('mobile network config', () => {
  it('fills defaults and canonicalises', () => {
    const n = parseMobileNetwork(baseNetwork({ homeAddress: '2001:DB8:FFFF:0:0:0:0:100' }));
    assert.equal(n.homeAddress, '2001:db8:ffff::100');
    assert.equal(n.mode, 'explicit');
    assert.equal(n.algorithm, 'hmac-sha1');
    assert.deepEqual(n.retransmit, { initialFirstMs: 1500, initialMs: 1000, maxMs: 32000 });
    assert.equal(n.rulePref, 1100);
    assert.equal(n.table, defaultTable('net1'));
    assert.equal(n.key.toString('hex'), KEY_HEX);
  });

  it('derives the same table on every host, outside the kernel’s reserved ones', () => {
    assert.equal(defaultTable('net1'), defaultTable('net1'));
    assert.notEqual(defaultTable('net1'), defaultTable('net2'));
    for (const name of ['a', 'net1', 'x'.repeat(60)]) assert.ok(defaultTable(name) >= 10000);
  });

  it('refuses a prefix longer than /64, naming it', () => {
    refused(
      baseNetwork({ prefixes: ['2001:db8:100::/64', '2001:db8:200::/80'] }),
      'prefixes[1]',
      /must be a \/64 or shorter/,
    );
  });

  it('accepts a prefix shorter than /64', () => {
    assert.deepEqual(parseMobileNetwork(baseNetwork({ prefixes: ['2001:db8:100::/56'] })).prefixes, [
      '2001:db8:100::/56',
    ]);
  });

  it('refuses host bits in a prefix and non-prefixes', () => {
    refused(baseNetwork({ prefixes: ['2001:db8:100::1/64'] }), 'prefixes[0]', /host bits set/);
    refused(baseNetwork({ prefixes: ['nonsense'] }), 'prefixes[0]', /not an IPv6 or IPv4 prefix/);
    refused(baseNetwork({ prefixes: [] }), 'prefixes', /at least one prefix/);
  });

  it('dual stack: takes IPv4 prefixes beside an IPv6 one; refuses IPv4 only, a /31, host bits', () => {
    assert.deepEqual(
      parseMobileNetwork(baseNetwork({ prefixes: ['2001:db8:100::/64', '10.1.0.0/24'] })).prefixes,
      ['2001:db8:100::/64', '10.1.0.0/24'],
    );
    refused(baseNetwork({ prefixes: ['10.1.0.0/24'] }), 'prefixes', /at least one IPv6 prefix/);
    refused(
      baseNetwork({ prefixes: ['2001:db8:100::/64', '10.1.0.0/31'] }),
      'prefixes[1]',
      /\/30 or shorter/,
    );
    refused(baseNetwork({ prefixes: ['2001:db8:100::/64', '10.1.0.1/24'] }), 'prefixes[1]', /host bits set/);
  });

  it('DHCPv4 reservations: defaults, MACs lower-cased; refused outside the IPv4 prefixes, on the gateway, twice, without IPv4', () => {
    const dual = (dhcp4: unknown) =>
      baseNetwork({ prefixes: ['2001:db8:100::/64', '10.1.0.0/24'], dhcp4 } as Partial<MobileNetworkInput>);
    const host = (mac: string, address: string) => ({ mac, address });
    assert.deepEqual(parseMobileNetwork(dual({ hosts: [host('02:00:5E:00:01:10', '10.1.0.10')] })).dhcp4, {
      leaseSeconds: 3600,
      hosts: [host('02:00:5e:00:01:10', '10.1.0.10')],
    });
    assert.equal(parseMobileNetwork(dual(undefined)).dhcp4, undefined);
    refused(
      baseNetwork({ dhcp4: { hosts: [host('02:00:5e:00:01:10', '10.1.0.10')] } }),
      'dhcp4',
      /no IPv4 prefix to serve/,
    );
    refused(dual({ hosts: [] }), 'dhcp4.hosts', /at least one reservation/);
    refused(
      dual({ hosts: [host('02:00:5e:00:01', '10.1.0.10')] }),
      'dhcp4.hosts[0].mac',
      /not a MAC address/,
    );
    refused(
      dual({ hosts: [host('02:00:5e:00:01:10', '10.1.0.10/24')] }),
      'dhcp4.hosts[0].address',
      /not an IPv4 address/,
    );
    refused(
      dual({ hosts: [host('02:00:5e:00:01:10', '10.2.0.10')] }),
      'dhcp4.hosts[0].address',
      /not in the network's IPv4 prefixes \(10\.1\.0\.0\/24\)/,
    );
    refused(dual({ hosts: [host('02:00:5e:00:01:10', '10.1.0.1')] }), 'dhcp4.hosts[0].address', /gateway/);
    refused(
      dual({ hosts: [host('02:00:5e:00:01:10', '10.1.0.255')] }),
      'dhcp4.hosts[0].address',
      /broadcast/,
    );
    refused(
      dual({ hosts: [host('02:00:5e:00:01:10', '10.1.0.10'), host('02:00:5E:00:01:10', '10.1.0.11')] }),
      'dhcp4.hosts[1].mac',
      /reserved already in hosts\[0\]/,
    );
    refused(
      dual({ hosts: [host('02:00:5e:00:01:10', '10.1.0.10'), host('02:00:5e:00:01:11', '10.1.0.10')] }),
      'dhcp4.hosts[1].address',
      /reserved already in hosts\[0\]/,
    );
    refused(
      dual({ hosts: [host('02:00:5e:00:01:10', '10.1.0.10')], leaseSeconds: 10 }),
      'dhcp4.leaseSeconds',
      /120/,
    );
    refused(
      dual({ hosts: [host('02:00:5e:00:01:10', '10.1.0.10')], dns: ['nope'] }),
      'dhcp4.dns[0]',
      /not an IPv4 address/,
    );
    refused(
      dual({ hosts: [host('02:00:5e:00:01:10', '10.1.0.10')], range: 'x' }),
      'dhcp4.range',
      /unrecognized|range/i,
    );
    refused(
      dual({ hosts: [host('02:00:5e:00:01:10', '10.2.0.10')] }),
      'networks[3].dhcp4.hosts[0].address',
      /not in/,
      'networks[3]',
    );
  });

  it('refuses a missing key', () => {
    const { key: _, ...noKey } = baseNetwork();
    refused(noKey, 'key', /required \(or keyFile\)/);
    refused(noKey, 'networks[3].key', /required/, 'networks[3]');
  });

  it('refuses a short or non-hex key, and key together with keyFile', () => {
    refused(baseNetwork({ key: 'abcd' }), 'key', /too short/);
    refused(baseNetwork({ key: 'zz'.repeat(16) }), 'key', /not a hex string/);
    refused(baseNetwork({ keyFile: '/nonexistent' }), 'key', /not both/);
  });

  it('reads a keyFile relative to baseDir, and names it when unreadable', () => {
    const dir = mkdtempSync(join(tmpdir(), 'offlink-mr-'));
    writeFileSync(join(dir, 'net1.key'), `${KEY_HEX}\n`);
    const { key: _, ...noKey } = baseNetwork();
    const n = parseMobileNetwork({ ...noKey, keyFile: 'net1.key' }, { baseDir: dir });
    assert.equal(n.key.toString('hex'), KEY_HEX);
    assert.throws(
      () => parseMobileNetwork({ ...noKey, keyFile: 'missing.key' }, { baseDir: dir }),
      /keyFile: cannot read missing\.key: ENOENT/,
    );
  });

  it('refuses a bridge name longer than IFNAMSIZ allows', () => {
    refused(baseNetwork({ bridge: 'ofl-abcdefghijkl' }), 'bridge', /longer than 15 characters/);
    assert.equal(parseMobileNetwork(baseNetwork({ bridge: 'ofl-abcdefghijk' })).bridge, 'ofl-abcdefghijk');
  });

  it('refuses invalid characters in the bridge name', () => {
    refused(baseNetwork({ bridge: 'br/0' }), 'bridge', /invalid characters/);
    refused(baseNetwork({ bridge: 'br 0' }), 'bridge', /invalid characters/);
    refused(baseNetwork({ bridge: '..' }), 'bridge', /invalid characters/);
  });

  it('refuses unknown keys, reserved SPIs, bad retransmission settings', () => {
    refused({ ...baseNetwork(), colour: 'blue' }, 'colour', /unknown key/);
    refused(baseNetwork({ spi: 5 }), 'spi', /reserved/);
    refused(
      baseNetwork({ retransmit: { initialMs: 5000, maxMs: 1000 } }),
      'retransmit.maxMs',
      /must not exceed/,
    );
    refused(baseNetwork({ mode: 'sideways' as 'explicit' }), 'mode', /./);
    refused(baseNetwork({ table: 254 }), 'table', /reserved|main/);
  });

  it('host part: defaults and refusals', () => {
    assert.deepEqual(parseMobileRouterHost({ uplink: 'eth0', haAddress: '2001:db8:ffff::1' }), {
      uplink: 'eth0',
      haAddress: '2001:db8:ffff::1',
      haPort: 4191,
      decapTable: 200,
    });
    assert.throws(() => parseMobileRouterHost({ uplink: 'eth0' }), /haAddress: required/);
    assert.throws(
      () => parseMobileRouterHost({ uplink: 'a-very-long-uplink', haAddress: '::1' }),
      /uplink: longer than 15/,
    );
    assert.throws(
      () => parseMobileRouterHost({ uplink: 'eth0', haAddress: '10.0.0.1' }),
      /haAddress: not an IPv6 address/,
    );
  });
});
