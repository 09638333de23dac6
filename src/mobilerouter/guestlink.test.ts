import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { FakeClock } from '../clock.ts';
import { silentLogger } from '../log.ts';
import { bridgeMac, GuestLink, gatewayAddress, linkPrefix } from './guestlink.ts';
import { renderRadvdConfig } from './radvd.ts';
import { FakeSpawner, ScriptedRunner, settle } from './testkit.ts';

function rig(options: { exists?: boolean; linkLocals?: string[] } = {}) {
  const runDir = mkdtempSync(join(tmpdir(), 'offlink-gl-'));
  const addrJson = JSON.stringify([
    {
      ifname: 'ofl-net1',
      addr_info: (options.linkLocals ?? []).map((a) => ({ local: a, prefixlen: 64, scope: 'link' })),
    },
  ]);
  const runner = new ScriptedRunner([
    ['ip link show dev ofl-net1', { exitCode: options.exists ? 0 : 1 }],
    ['ip -j -6 addr show dev ofl-net1 scope link', { stdout: addrJson }],
  ]);
  const spawner = new FakeSpawner();
  const clock = new FakeClock();
  const link = new GuestLink(
    { runner, spawner, clock, logger: silentLogger() },
    { network: 'net1', bridge: 'ofl-net1', prefixes: ['2001:db8:100::/64', '2001:db8:200::/56'], runDir },
  );
  return { runDir, runner, spawner, clock, link };
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

  it('creates the bridge with MTU 1460, no STP, no auto link-local, fe80::1 and the gateways', async () => {
    const { runner, link } = rig();
    await link.ensure();
    const mac = bridgeMac('net1');
    assert.deepEqual(runner.commands, [
      'ip link show dev ofl-net1',
      `ip link add ofl-net1 address ${mac} mtu 1460 type bridge forward_delay 0 stp_state 0`,
      'ip link set dev ofl-net1 addrgenmode none',
      'ip -j -6 addr show dev ofl-net1 scope link',
      'ip -6 addr replace fe80::1/64 dev ofl-net1 nodad',
      'ip -6 addr replace 2001:db8:100::1/64 dev ofl-net1 nodad',
      'ip -6 addr replace 2001:db8:200::1/64 dev ofl-net1 nodad',
      'ip link set dev ofl-net1 up',
    ]);
  });

  it('adopts an existing bridge and removes a kernel link-local', async () => {
    const { runner, link } = rig({ exists: true, linkLocals: ['fe80::1', 'fe80::aa:bbff:fecc:dd'] });
    await link.ensure();
    assert.ok(runner.commands.some((c) => c.startsWith('ip link set dev ofl-net1 address')));
    assert.ok(runner.commands.includes('ip -6 addr del fe80::aa:bbff:fecc:dd/64 dev ofl-net1'));
    assert.ok(!runner.commands.includes('ip -6 addr del fe80::1/64 dev ofl-net1'));
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

  it('restarts radvd when it dies while advertising', async () => {
    const { spawner, link, clock } = rig();
    await link.startAdvertising();
    spawner.spawned[0]!.process.exit(1);
    await settle();
    assert.equal(spawner.running().length, 0);
    clock.advance(1000);
    assert.equal(spawner.running().length, 1);
    await link.stopAdvertising();
    assert.equal(spawner.running().length, 0);
  });

  it('flushes the bridge’s neighbour entries', async () => {
    const { runner, link } = rig();
    await link.flushNeighbours();
    assert.deepEqual(runner.commands, ['ip -6 neigh flush dev ofl-net1']);
  });

  it('destroy() stops radvd and deletes the bridge', async () => {
    const { runner, spawner, link } = rig();
    await link.ensure();
    await link.startAdvertising();
    await link.destroy();
    assert.equal(spawner.running().length, 0);
    assert.equal(runner.commands.at(-1), 'ip link del dev ofl-net1');
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
