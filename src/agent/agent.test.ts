// Two agents over their real control APIs on loopback, with fake mobile routers and a fake driver.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { systemClock } from '../clock.ts';
import { silentLogger } from '../log.ts';
import { ControlError, type MigrationEvent } from '../migration/messages.ts';
import { FakeBinding, FakeDriver, FakeRouter, FakeWorld } from '../migration/testkit.ts';
import type { SecurityAssociation } from '../protocol/types.ts';
import { Agent, type ManagedRouter } from './agent.ts';
import { signRequest } from './auth.ts';
import { ControlClient, MigrationFailed, peerOf } from './client.ts';
import type { AgentConfig, AgentNetworkConfig } from './config.ts';

const KEY = Buffer.alloc(32, 9);

function network(name: string, i: number, guests: string[]): AgentNetworkConfig {
  return {
    name,
    homeAddress: '2001:db8:ffff::101',
    prefixes: ['2001:db8:100::/64'],
    bridge: `ofl-${name}`,
    spi: 1000 + i,
    key: Buffer.alloc(20, i),
    algorithm: 'hmac-sha1',
    mode: 'explicit',
    lifetimeSeconds: 600,
    retransmit: { initialFirstMs: 1500, initialMs: 1000, maxMs: 32000 },
    table: 100 + i,
    rulePref: 100,
    guests,
    activeOnStart: false,
  };
}

function config(host: string, peer: string): AgentConfig {
  return {
    host,
    mobileRouter: { uplink: 'up0', haAddress: '2001:db8:ffff::1', haPort: 4191, decapTable: 200 },
    dataplane: { backend: 'auto', mss: 1400 },
    careOfAddress: undefined,
    runDir: '/tmp',
    control: { listen: { host: '127.0.0.1', port: 0 }, key: KEY, clockSkewMs: 30_000, history: 3 },
    peers: { [peer]: 'http://unused' },
    hypervisor: { driver: 'netns', namespaces: {}, guests: {} },
    networks: [network('net1', 1, ['guest-1']), network('net2', 2, ['guest-2'])],
  };
}

class TestRouter extends FakeRouter implements ManagedRouter {
  readonly keys: SecurityAssociation[] = [];
  async start(): Promise<void> {}
  rekey(sa: SecurityAssociation): void {
    this.keys.push(sa);
  }
  async stop(): Promise<void> {
    this.state = 'stopped';
  }
}

describe('agent', () => {
  const world = new FakeWorld();
  const bindings = { net1: new FakeBinding(), net2: new FakeBinding() };
  const routers = {
    'host-a': new Map(Object.entries(bindings).map(([n, b]) => [n, new TestRouter(b, '2001:db8:a::2', n)])),
    'host-b': new Map(Object.entries(bindings).map(([n, b]) => [n, new TestRouter(b, '2001:db8:b::2', n)])),
  };
  const agents: Record<string, Agent> = {};
  const clients: Record<string, ControlClient> = {};
  const url = (host: string) => `http://127.0.0.1:${agents[host]!.controlAddress!.port}`;

  before(async () => {
    world.where.set('guest-1', 'host-a');
    world.where.set('guest-2', 'host-a');
    for (const [host, peer] of [
      ['host-a', 'host-b'],
      ['host-b', 'host-a'],
    ] as const) {
      agents[host] = new Agent(
        {
          clock: systemClock,
          logger: silentLogger(),
          driver: new FakeDriver(world, host),
          routers: routers[host],
          peer: (h) => (h === peer ? peerOf(peer, new ControlClient(url(peer), { key: KEY })) : undefined),
        },
        config(host, peer),
      );
    }
    for (const a of Object.values(agents)) await a.start();
    for (const host of Object.keys(agents)) clients[host] = new ControlClient(url(host), { key: KEY });
    // Registration at start is fire-and-forget: wait for it.
    for (let i = 0; i < 50 && bindings.net1.coa === undefined; i++)
      await new Promise((r) => setTimeout(r, 5));
  });
  after(async () => {
    for (const a of Object.values(agents)) await a.stop();
  });

  it('registers at start the networks whose guests are here', async () => {
    assert.equal(routers['host-a'].get('net1')!.state, 'active');
    assert.equal(routers['host-a'].get('net2')!.state, 'active');
    assert.equal(routers['host-b'].get('net1')!.state, 'standby');
    const status = await clients['host-a']!.status();
    assert.equal(status.host, 'host-a');
    assert.deepEqual(
      status.networks.map((n) => [n.name, n.state, n.guests.map((g) => g.name)]),
      [
        ['net1', 'active', ['guest-1']],
        ['net2', 'active', ['guest-2']],
      ],
    );
  });

  it('migrates one network to host-b and back, with live progress; the other network stays', async () => {
    const events: MigrationEvent[] = [];
    const out = await clients['host-a']!.migrate({ network: 'net1', to: 'host-b' }, (e) => events.push(e));
    assert.equal(out.outcome, 'succeeded');
    assert.equal(bindings.net1.coa, '2001:db8:b::2');
    assert.equal(bindings.net2.coa, '2001:db8:a::2');
    assert.equal(world.where.get('guest-1'), 'host-b');
    assert.equal(world.where.get('guest-2'), 'host-a');
    assert.ok(events.some((e) => e.type === 'phase' && e.phase === 'hypervisor' && e.state === 'done'));
    assert.equal(events.at(-1)?.type, 'result');

    const back = await clients['host-b']!.migrate({
      network: 'net1',
      to: 'host-a',
      procedure: 'break-before-make',
    });
    assert.equal(back.outcome, 'succeeded');
    assert.equal(bindings.net1.coa, '2001:db8:a::2');
    assert.equal(routers['host-b'].get('net1')!.state, 'standby');
    const statusB = await clients['host-b']!.status();
    assert.equal(statusB.migrations[0]?.id, back.id);
    assert.equal(statusB.migrations[0]?.procedure, 'break-before-make');
  });

  it('refuses: unknown network 404, unknown peer 404, network not active here 409, itself 409', async () => {
    const expect = async (p: Promise<unknown>, status: number, message: RegExp) =>
      assert.rejects(p, (err: unknown) => {
        assert.ok(err instanceof ControlError, String(err));
        assert.equal(err.status, status);
        assert.match(err.message, message);
        return true;
      });
    await expect(
      clients['host-a']!.migrate({ network: 'net9', to: 'host-b' }),
      404,
      /host-a holds no network named net9/,
    );
    await expect(
      clients['host-a']!.migrate({ network: 'net1', to: 'host-z' }),
      404,
      /host-z is not a peer of host-a/,
    );
    await expect(
      clients['host-b']!.migrate({ network: 'net1', to: 'host-a' }),
      409,
      /net1 is standby on host-b, not active/,
    );
    await expect(clients['host-a']!.migrate({ network: 'net1', to: 'host-a' }), 409, /on host-a already/);
    await expect(
      clients['host-b']!.prepare({
        migrationId: 'mig-00000099',
        network: 'net9',
        source: 'host-a',
        procedure: 'break-before-make',
        guests: [],
      }),
      404,
      /host-b holds no network named net9/,
    );
  });

  it('a failed hypervisor step leaves the network active on the source; the CLI sees the failure', async () => {
    world.failNext.add('guest-2');
    await assert.rejects(clients['host-a']!.migrate({ network: 'net2', to: 'host-b' }), (err: unknown) => {
      assert.ok(err instanceof MigrationFailed);
      assert.equal(err.migration?.failedPhase, 'hypervisor');
      assert.match(err.migration?.recovery ?? '', /host-a registered again|still active on host-a/);
      return true;
    });
    assert.equal(world.where.get('guest-2'), 'host-a');
    assert.equal(bindings.net2.coa, '2001:db8:a::2');
    assert.equal(routers['host-a'].get('net2')!.state, 'active');
    assert.equal(routers['host-b'].get('net2')!.state, 'standby');
  });

  it('exposes metrics, including refused requests and migrations by outcome', async () => {
    const forged = signRequest(
      Buffer.alloc(32, 1),
      { method: 'GET', path: '/v1/status', body: '' },
      systemClock,
    );
    assert.equal((await fetch(`${url('host-a')}/v1/status`, { headers: forged })).status, 401);
    const text = await clients['host-a']!.metrics();
    assert.match(text, /offlink_agent_control_refused_total\{reason="bad-signature"\} 1/);
    assert.match(
      text,
      /offlink_agent_migrations_total\{network="net1",procedure="make-before-break",outcome="succeeded"\} 1/,
    );
    assert.match(
      text,
      /offlink_agent_migrations_total\{network="net2",procedure="make-before-break",outcome="failed"\} 1/,
    );
    assert.match(
      text,
      /offlink_agent_migration_phase_seconds_count\{procedure="make-before-break",phase="bu_to_ba"\}/,
    );
    assert.match(text, /offlink_agent_network_active\{network="net1"\} 1/);
    const textB = await clients['host-b']!.metrics();
    assert.match(textB, /offlink_agent_handovers_total\{network="net1",state="active"\} 1/);
  });

  it('keeps only the configured number of migrations in status', async () => {
    for (let i = 0; i < 2; i++) {
      await clients['host-a']!.migrate({ network: 'net1', to: 'host-b' });
      await clients['host-b']!.migrate({ network: 'net1', to: 'host-a' });
    }
    assert.equal((await clients['host-a']!.status()).migrations.length, 3);
  });

  it('reload: a new cluster key and network key apply at once; a refused change leaves all as it was', async () => {
    const a = agents['host-a']!;
    const running = config('host-a', 'host-b');
    const newKey = Buffer.alloc(32, 0x5c);
    const net1 = { ...running.networks[0]!, spi: 4242, key: Buffer.alloc(20, 0x42) };
    const next = {
      ...running,
      control: { ...running.control, key: newKey },
      networks: [net1, running.networks[1]!],
    };
    assert.deepEqual(a.reload(next), { peers: 1, rekeyed: ['net1'], clusterKeyChanged: true, dhcp4: [] });
    assert.deepEqual(routers['host-a'].get('net1')!.keys, [
      { spi: 4242, key: net1.key, algorithm: net1.algorithm },
    ]);
    assert.deepEqual(routers['host-a'].get('net2')!.keys, [], 'net2 untouched');
    await assert.rejects(
      clients['host-a']!.status(),
      /401|refused|signature/i,
      'the old cluster key is refused',
    );
    const fresh = new ControlClient(url('host-a'), { key: newKey });
    assert.equal((await fresh.status()).host, 'host-a');

    const moved = { ...next, mobileRouter: { ...next.mobileRouter, uplink: 'eth9' }, networks: [net1] };
    assert.throws(
      () => a.reload(moved),
      (err: Error & { code?: string }) =>
        err.code === 'ERR_RELOAD' && /networks removed \(net2\), mobileRouter changed/.test(err.message),
    );
    assert.equal((await fresh.status()).host, 'host-a', 'the reloaded key still applies');
    assert.equal(a.reload(running).clusterKeyChanged, true, 'back to the first key');
    assert.equal((await clients['host-a']!.status()).host, 'host-a');
    // DHCPv4 settings are reloadable (the guest link applies them: src/mobilerouter/guestlink.test.ts)
    const dhcp4 = { leaseSeconds: 600, hosts: [{ mac: '02:00:5e:00:01:10', address: '10.1.0.10' }] };
    const withDhcp = { ...running, networks: [{ ...running.networks[0]!, dhcp4 }, running.networks[1]!] };
    assert.deepEqual(a.reload(withDhcp), {
      peers: 1,
      rekeyed: [],
      clusterKeyChanged: false,
      dhcp4: ['net1'],
    });
    assert.deepEqual(a.reload(running).dhcp4, ['net1'], 'and removed again');
  });
});

describe('agent metrics endpoint', () => {
  it('unsigned /metrics and /healthz: 503 while the networks load, 200 after, closed on stop', async () => {
    let release!: () => void;
    class SlowRouter extends TestRouter {
      override async start(): Promise<void> {
        await new Promise<void>((r) => (release = r));
      }
    }
    const world = new FakeWorld();
    const routers = new Map([
      ['net1', new SlowRouter(new FakeBinding(), '2001:db8:a::2', 'net1')],
      ['net2', new TestRouter(new FakeBinding(), '2001:db8:a::2', 'net2')],
    ]);
    const agent = new Agent(
      {
        clock: systemClock,
        logger: silentLogger(),
        driver: new FakeDriver(world, 'host-a'),
        routers,
        peer: () => undefined,
      },
      { ...config('host-a', 'host-b'), metrics: { host: '127.0.0.1', port: 0 } },
    );
    const starting = agent.start();
    try {
      while (agent.metricsAddress === undefined || release === undefined)
        await new Promise((r) => setTimeout(r, 5));
      const base = `http://127.0.0.1:${agent.metricsAddress.port}`;
      let res = await fetch(`${base}/healthz`);
      assert.equal(res.status, 503);
      assert.deepEqual(await res.json(), { status: 'unavailable', host: 'host-a', networks: 'loading' });
      release();
      await starting;
      res = await fetch(`${base}/healthz`);
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { status: 'ok', host: 'host-a', networks: 2 });
      const metrics = await fetch(`${base}/metrics`);
      assert.equal(metrics.status, 200, 'no signature needed');
      assert.match(await metrics.text(), /^offlink_agent_network_active\{network="net1"\} 0$/m);
      await agent.stop();
      await assert.rejects(fetch(`${base}/healthz`), 'closed on stop');
    } finally {
      release?.();
      await starting.catch(() => {});
      await agent.stop();
    }
  });
});
