import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { FakeClock } from '../clock.ts';
import { FakeKernel } from '../dataplane/fake-kernel.ts';
import { silentLogger } from '../log.ts';
import type { Dhcp4Config } from './config.ts';
import { dnsmasqArgv } from './dhcp4.ts';
import { bridgeMac, GuestLink, gatewayAddress, ipv4GatewayAddress, linkPrefix } from './guestlink.ts';
import { renderRadvdConfig } from './radvd.ts';
import { FakeSpawner, runPendingWork } from './testkit.ts';

function rig(
  options: { exists?: boolean; linkLocals?: string[]; prefixes?: string[]; dhcp4?: Dhcp4Config } = {},
) {
  const runDir = mkdtempSync(join(tmpdir(), 'offlink-gl-'));
  const kernel = new FakeKernel();
  if (options.exists) {
    const linkLocal = (address: string) => ({ address, prefixLength: 64, scope: 'link' as const, flags: [] });
    kernel.addLink('ofl-net1', { bridge: true, addresses: (options.linkLocals ?? []).map(linkLocal) });
  }
  const spawner = new FakeSpawner();
  const clock = new FakeClock();
  const link = new GuestLink(
    { kernel, spawner, clock, logger: silentLogger() },
    {
      network: 'net1',
      bridge: 'ofl-net1',
      prefixes: options.prefixes ?? ['2001:db8:100::/64', '2001:db8:200::/56'],
      runDir,
      ...(options.dhcp4 ? { dhcp4: options.dhcp4 } : {}),
    },
  );
  return { runDir, kernel, spawner, clock, link };
}

describe('guest link', () => {
  it('derives a locally administered unicast MAC, stable per name and different between names', () => {
    const mac = bridgeMac('net1');
    assert.match(mac, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    const first = Number.parseInt(mac.slice(0, 2), 16);
    assert.equal(first & 0x01, 0, 'unicast');
    assert.equal(first & 0x02, 0x02, 'locally administered');
    assert.equal(bridgeMac('net1'), mac);
    assert.notEqual(bridgeMac('net2'), mac);
  });

  it('puts the gateway at MNP::1 on the first /64 of the MNP', () => {
    assert.equal(gatewayAddress('2001:db8:100::/64'), '2001:db8:100::1');
    assert.equal(gatewayAddress('2001:db8:200::/56'), '2001:db8:200::1');
    assert.equal(linkPrefix('2001:db8:200::/56'), '2001:db8:200::/64');
  });

  it('dual stack: the IPv4 gateway is the prefix’s first address, on the bridge; radvd only for IPv6', async () => {
    assert.equal(ipv4GatewayAddress('10.1.0.0/24'), '10.1.0.1');
    assert.equal(ipv4GatewayAddress('192.0.2.64/26'), '192.0.2.65');
    const { kernel, link } = rig({ prefixes: ['2001:db8:100::/64', '10.1.0.0/24'] });
    await link.ensure();
    assert.deepEqual(
      kernel.writes().filter((c) => c.call === 'replaceAddress'),
      [
        { call: 'replaceAddress', dev: 'ofl-net1', address: 'fe80::1', prefixLength: 64 },
        { call: 'replaceAddress', dev: 'ofl-net1', address: '2001:db8:100::1', prefixLength: 64 },
        { call: 'replaceAddress', dev: 'ofl-net1', address: '10.1.0.1', prefixLength: 24 },
      ],
    );
  });

  it('creates the bridge with MTU 1460, no STP, no auto link-local, fe80::1 and the gateways', async () => {
    const { kernel, link } = rig();
    await link.ensure();
    const address = (a: string) => ({
      call: 'replaceAddress',
      dev: 'ofl-net1',
      address: a,
      prefixLength: 64,
    });
    assert.deepEqual(kernel.writes(), [
      { call: 'ensureBridge', spec: { name: 'ofl-net1', mac: bridgeMac('net1'), mtu: 1460 } },
      address('fe80::1'),
      address('2001:db8:100::1'),
      address('2001:db8:200::1'),
      { call: 'setUp', name: 'ofl-net1' },
    ]);
    const bridge = kernel.linkTable.get('ofl-net1');
    assert.equal(bridge?.up, true);
    assert.deepEqual(
      bridge?.addresses.map((a) => a.address),
      ['fe80::1', '2001:db8:100::1', '2001:db8:200::1'],
    );
  });

  it('adopts an existing bridge and removes a kernel link-local', async () => {
    const { kernel, link } = rig({ exists: true, linkLocals: ['fe80::1', 'fe80::aa:bbff:fecc:dd'] });
    await link.ensure();
    assert.deepEqual(
      kernel.writes().filter((call) => call.call === 'deleteAddress'),
      [{ call: 'deleteAddress', dev: 'ofl-net1', address: 'fe80::aa:bbff:fecc:dd', prefixLength: 64 }],
    );
    assert.equal(kernel.linkTable.get('ofl-net1')?.mac, bridgeMac('net1'));
    await link.destroy();
    assert.equal(kernel.linkTable.has('ofl-net1'), false, 'an adopted bridge goes with destroy() too');
  });

  it('runs radvd only while advertising', async () => {
    const { spawner, link, runDir } = rig();
    await link.startAdvertising();
    await link.startAdvertising();
    assert.equal(spawner.running().length, 1);
    const argv = spawner.spawned[0]!.argv;
    const conf = join(runDir, 'radvd-ofl-net1.conf');
    assert.deepEqual(argv, [
      'radvd',
      '-n',
      '-C',
      conf,
      '-p',
      join(runDir, 'radvd-ofl-net1.pid'),
      '-m',
      'stderr',
    ]);
    assert.equal(statSync(conf).mode & 0o022, 0, 'not writable by others');
    const text = readFileSync(conf, 'utf8');
    assert.match(text, /prefix 2001:db8:200::\/64 \{/);
    await link.stopAdvertising();
    assert.equal(spawner.spawned[0]!.process.killedWith, 'SIGTERM');
    assert.equal(existsSync(conf), false);
    assert.equal(link.advertising, false);
  });

  it('DHCPv4: dnsmasq beside radvd only while advertising, serving the IPv4 prefixes’ reservations', async () => {
    const dhcp4 = { leaseSeconds: 600, hosts: [{ mac: '02:00:5e:00:01:10', address: '10.1.0.10' }] };
    const { spawner, link, runDir } = rig({ prefixes: ['2001:db8:100::/64', '10.1.0.0/24'], dhcp4 });
    assert.equal(link.servingDhcp4, false);
    await link.startAdvertising();
    await link.startAdvertising();
    const running = spawner.spawned.filter((s) => s.process.alive).map((s) => s.argv);
    assert.deepEqual(running.map((a) => a[0]).sort(), ['dnsmasq', 'radvd']);
    const pidFile = join(runDir, 'dnsmasq-ofl-net1.pid');
    assert.deepEqual(
      running.find((a) => a[0] === 'dnsmasq'),
      dnsmasqArgv({ bridge: 'ofl-net1', prefixes: ['10.1.0.0/24'], mtu: 1460, config: dhcp4 }, { pidFile }),
    );
    assert.equal(link.servingDhcp4, true);
    await link.stopAdvertising();
    assert.equal(spawner.running().length, 0);
    assert.equal(link.servingDhcp4, false);
    // without dhcp4, radvd alone
    const plain = rig({ prefixes: ['2001:db8:100::/64', '10.1.0.0/24'] });
    await plain.link.startAdvertising();
    assert.deepEqual(
      plain.spawner.running().map((line) => line.split(' ')[0]),
      ['radvd'],
    );
    await plain.link.stopAdvertising();
  });

  it('DHCPv4 reload: new settings restart a running dnsmasq, are kept on standby; added and removed', async () => {
    const host = (n: number) => ({ mac: `02:00:5e:00:01:${n}`, address: `10.1.0.${n}` });
    const dhcp4 = { leaseSeconds: 600, hosts: [host(10)] };
    const { spawner, link } = rig({ prefixes: ['2001:db8:100::/64', '10.1.0.0/24'], dhcp4 });
    const dnsmasq = () => spawner.spawned.filter((s) => s.argv[0] === 'dnsmasq');
    // on standby: kept for the next start
    assert.equal(await link.setDhcp4({ ...dhcp4, hosts: [host(10), host(11)] }), 'stored');
    await link.startAdvertising();
    assert.ok(dnsmasq()[0]!.argv.includes('--dhcp-host=02:00:5e:00:01:11,10.1.0.11'));
    assert.equal(await link.setDhcp4({ ...dhcp4, hosts: [host(10), host(11)] }), 'unchanged');
    assert.equal(dnsmasq().length, 1);
    assert.equal(await link.setDhcp4({ leaseSeconds: 1200, hosts: [host(12)] }), 'restarted');
    assert.deepEqual(
      dnsmasq().map((s) => s.process.alive),
      [false, true],
    );
    assert.ok(dnsmasq()[1]!.argv.includes('--dhcp-range=10.1.0.0,static,255.255.255.0,1200'));
    assert.ok(dnsmasq()[1]!.argv.includes('--dhcp-host=02:00:5e:00:01:12,10.1.0.12'));
    assert.equal(await link.setDhcp4(undefined), 'stopped');
    assert.equal(link.servingDhcp4, false);
    assert.equal(await link.setDhcp4(dhcp4), 'started', 'added while active: runs at once');
    assert.equal(link.servingDhcp4, true);
    await link.stopAdvertising();
  });

  it('DHCPv4 reload racing a handover to standby: nothing left running', async () => {
    const dhcp4 = { leaseSeconds: 600, hosts: [{ mac: '02:00:5e:00:01:10', address: '10.1.0.10' }] };
    const { spawner, link } = rig({ prefixes: ['2001:db8:100::/64', '10.1.0.0/24'], dhcp4 });
    await link.startAdvertising();
    // the reload's restart and the standby's stop, issued together: they run one after the other
    const reloaded = link.setDhcp4({ ...dhcp4, leaseSeconds: 1200 });
    const stopped = link.stopAdvertising();
    assert.equal(await reloaded, 'restarted');
    await stopped;
    assert.deepEqual(spawner.running(), [], 'no dnsmasq or radvd on a standby host');
    assert.equal(link.servingDhcp4, false);
  });

  it('dnsmasq’s command line: DHCP only on the bridge, a static range per IPv4 prefix, the reservations, MTU, DNS', () => {
    const argv = dnsmasqArgv(
      {
        bridge: 'ofl-net1',
        prefixes: ['10.1.0.0/24', '192.168.8.0/22'],
        mtu: 1460,
        config: {
          leaseSeconds: 3600,
          hosts: [
            { mac: '02:00:5e:00:01:10', address: '10.1.0.10' },
            { mac: '02:00:5e:00:01:11', address: '192.168.9.7' },
          ],
          dns: ['192.0.2.53', '192.0.2.54'],
        },
      },
      { pidFile: '/run/offlink/dnsmasq-ofl-net1.pid' },
    );
    assert.deepEqual(argv, [
      'dnsmasq',
      '--keep-in-foreground',
      '--conf-file=/dev/null',
      '--port=0',
      '--no-resolv',
      '--no-hosts',
      '--interface=ofl-net1',
      '--bind-interfaces',
      '--except-interface=lo',
      '--dhcp-authoritative',
      '--leasefile-ro',
      '--pid-file=/run/offlink/dnsmasq-ofl-net1.pid',
      '--log-facility=-',
      '--log-dhcp',
      '--dhcp-range=10.1.0.0,static,255.255.255.0,3600',
      '--dhcp-range=192.168.8.0,static,255.255.252.0,3600',
      '--dhcp-host=02:00:5e:00:01:10,10.1.0.10',
      '--dhcp-host=02:00:5e:00:01:11,192.168.9.7',
      '--dhcp-option=option:mtu,1460',
      '--dhcp-option=option:dns-server,192.0.2.53,192.0.2.54',
    ]);
  });

  it('restarts radvd when it dies while advertising', async () => {
    const { spawner, link, clock } = rig();
    await link.startAdvertising();
    spawner.spawned[0]!.process.exit(1);
    await runPendingWork();
    assert.equal(spawner.running().length, 0);
    clock.advance(1000);
    assert.equal(spawner.running().length, 1);
    await link.stopAdvertising();
    assert.equal(spawner.running().length, 0);
  });

  it('flushes the bridge’s neighbour entries', async () => {
    const { kernel, link } = rig();
    await link.flushNeighbours();
    assert.deepEqual(kernel.writes(), [{ call: 'flushNeighbours', dev: 'ofl-net1' }]);
  });

  it('destroy() stops radvd and deletes the bridge', async () => {
    const { kernel, spawner, link } = rig();
    await link.ensure();
    await link.startAdvertising();
    await link.destroy();
    assert.equal(spawner.running().length, 0);
    assert.equal(kernel.linkTable.has('ofl-net1'), false);
  });

  it('renders the radvd config with MTU 1460, short intervals and SLAAC prefixes', () => {
    const text = renderRadvdConfig({
      bridge: 'ofl-net1',
      linkPrefixes: ['2001:db8:100::/64'],
      mtu: 1460,
      timing: { minIntervalSeconds: 3, maxIntervalSeconds: 4, defaultLifetimeSeconds: 1800 },
    });
    for (const line of [
      'interface ofl-net1 {',
      'AdvSendAdvert on;',
      'MinRtrAdvInterval 3;',
      'MaxRtrAdvInterval 4;',
      'AdvDefaultLifetime 1800;',
      'AdvLinkMTU 1460;',
      'prefix 2001:db8:100::/64 {',
      'AdvOnLink on;',
      'AdvAutonomous on;',
    ]) {
      assert.ok(text.includes(line), line);
    }
  });
});
