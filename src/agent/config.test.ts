import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { stringify } from 'yaml';
import { ConfigError } from '../errors.ts';
import { loadAgentConfig, parseAgentConfig } from './config.ts';

const CLUSTER = 'ab'.repeat(32);
const NETKEY = 'cd'.repeat(20);

function base(): Record<string, unknown> {
  return {
    host: 'host-a',
    uplink: 'up0',
    homeAgent: { address: '2001:db8:ffff::1' },
    control: { listen: '[2001:db8:a::2]:7400', key: CLUSTER },
    peers: { 'host-b': 'http://[2001:db8:b::2]:7400' },
    hypervisor: { driver: 'netns', namespaces: { 'host-a': 'ofl-host-a', 'host-b': 'ofl-host-b' } },
    networks: [
      {
        name: 'net1',
        homeAddress: '2001:db8:ffff::101',
        prefixes: ['2001:db8:100::/64'],
        bridge: 'ofl-net1',
        spi: 1001,
        key: NETKEY,
        guests: ['guest-1', 'guest-2'],
        activeOnStart: true,
      },
    ],
  };
}

function parse(doc: unknown, dir?: string) {
  return parseAgentConfig(stringify(doc), dir);
}

/** The ConfigError a config raises, as "path: message". */
function errorOf(doc: unknown): string {
  try {
    parse(doc);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.message;
  }
  assert.fail('config was accepted');
}

// biome-ignore lint/suspicious/noExplicitAny: test documents are edited freely
type Doc = Record<string, any>;

function edit(fn: (d: Doc) => void): Record<string, unknown> {
  const d = base();
  fn(d);
  return d;
}

describe('agent config', () => {
  it('parses the example', () => {
    const config = loadAgentConfig(new URL('../../examples/agent.yaml', import.meta.url).pathname);
    assert.equal(config.host, 'host-a');
    assert.equal(config.networks.length, 2);
    assert.deepEqual(
      config.networks.map((n) => n.guests),
      [['guest-1'], ['guest-2']],
    );
    assert.equal(config.control.key.length, 32);
  });

  it('fills defaults and resolves the host-level mobile router settings', () => {
    const config = parse(base());
    assert.deepEqual(config.mobileRouter, {
      uplink: 'up0',
      haAddress: '2001:db8:ffff::1',
      haPort: 4191,
      decapTable: 200,
    });
    assert.deepEqual(config.control.listen, { host: '2001:db8:a::2', port: 7400 });
    assert.equal(config.control.clockSkewMs, 30_000);
    assert.equal(config.careOfAddress, undefined);
    const n = config.networks[0]!;
    assert.equal(n.activeOnStart, true);
    assert.equal(n.algorithm, 'hmac-sha1');
    assert.equal(n.key.length, 20);
    assert.deepEqual(config.hypervisor.guests, {});
  });

  it('one network per guest and one network per host are both expressible', () => {
    const perGuest = edit((d) => {
      d.networks = [1, 2, 3].map((i) => ({
        name: `g${i}`,
        homeAddress: `2001:db8:ffff::${i}`,
        prefixes: [`2001:db8:${i}::/64`],
        bridge: `ofl-g${i}`,
        spi: 1000 + i,
        key: NETKEY,
        guests: [`guest-${i}`],
      }));
    });
    const config = parse(perGuest);
    assert.deepEqual(
      config.networks.map((n) => [n.name, n.guests, n.activeOnStart]),
      [
        ['g1', ['guest-1'], false],
        ['g2', ['guest-2'], false],
        ['g3', ['guest-3'], false],
      ],
    );
    assert.equal(new Set(config.networks.map((n) => n.table)).size, 3);
  });

  it('reads key files relative to the config', () => {
    const dir = mkdtempSync(join(tmpdir(), 'offlink-agent-'));
    writeFileSync(join(dir, 'cluster.key'), `${CLUSTER}\n`);
    writeFileSync(join(dir, 'net1.key'), NETKEY);
    const doc = edit((d) => {
      d.control = { listen: '127.0.0.1:7400', keyFile: 'cluster.key' };
      delete d.networks[0].key;
      d.networks[0].keyFile = 'net1.key';
    });
    writeFileSync(join(dir, 'agent.yaml'), stringify(doc));
    const config = loadAgentConfig(join(dir, 'agent.yaml'));
    assert.equal(config.control.key.toString('hex'), CLUSTER);
    assert.equal(config.networks[0]!.key.toString('hex'), NETKEY);
    writeFileSync(join(dir, 'cluster.key'), 'ab'.repeat(16));
    assert.throws(
      () => loadAgentConfig(join(dir, 'agent.yaml')),
      /^ConfigError: control.keyFile: cluster.key: too short/,
    );
  });

  const bad: Array<[string, (d: Doc) => void, RegExp]> = [
    ['missing host', (d) => delete d.host, /^host: required$/],
    ['unknown top-level key', (d) => (d.colour = 'blue'), /^colour: unknown key$/],
    ['bad uplink', (d) => (d.uplink = 'a-very-long-interface-name'), /^uplink: longer than 15/],
    ['bad HA address', (d) => (d.homeAgent.address = '10.0.0.1'), /^homeAgent.address: not an IPv6 address$/],
    ['bad listen', (d) => (d.control.listen = '2001:db8::1:7400'), /^control.listen: must be address:port/],
    [
      'short cluster key',
      (d) => (d.control.key = 'ab'.repeat(31)),
      /^control.key: too short \(at least 32 bytes/,
    ],
    ['no cluster key', (d) => delete d.control.key, /^control.key: required \(or keyFile\)$/],
    ['both keys', (d) => (d.control.keyFile = 'x'), /^control.key: give key or keyFile, not both$/],
    ['bad peer URL', (d) => (d.peers['host-b'] = 'ftp://x'), /^peers.host-b: must be an http\(s\) base URL/],
    [
      'metrics as a bare address',
      (d) => (d.metrics = '[::]:9181'),
      /^metrics: must be \{ listen: "\[::\]:9180" \}$/,
    ],
    [
      'metrics listen not address:port',
      (d) => (d.metrics = { listen: 'localhost:9181' }),
      /^metrics.listen: must be address:port \("\[::\]:9180", "\[2001:db8::1\]:9180" or "0.0.0.0:9180"\)$/,
    ],
    [
      'metrics on the control socket',
      (d) => (d.metrics = { listen: '[::]:7400' }),
      /^metrics.listen: :: port 7400 is taken by control.listen: give metrics another port$/,
    ],
    [
      'peer is self',
      (d) => (d.peers['host-a'] = 'http://[::1]:1/'),
      /^peers.host-a: this is the host itself$/,
    ],
    [
      'peer without namespace',
      (d) => delete d.hypervisor.namespaces['host-b'],
      /^hypervisor.namespaces.host-b: required/,
    ],
    [
      'unknown driver',
      (d) => (d.hypervisor.driver = 'vmware'),
      /^hypervisor.driver: must be one of: netns, qemu, libvirt$/,
    ],
    [
      'bad port name',
      (d) => (d.hypervisor.guests = { 'guest-1': { port: 'x'.repeat(16) } }),
      /^hypervisor.guests.guest-1.port: longer than 15/,
    ],
    [
      'settings for no guest',
      (d) => (d.hypervisor.guests = { 'guest-9': {} }),
      /^hypervisor.guests.guest-9: not a guest of any network$/,
    ],
    [
      'qemu: bad MAC',
      (d) => (d.hypervisor = { driver: 'qemu', guests: { 'guest-1': { mac: '52:54:00:00:01' } } }),
      /^hypervisor.guests.guest-1.mac: not a MAC address \(52:54:00:12:34:56\)$/,
    ],
    [
      'qemu: boots on an unknown host',
      (d) =>
        (d.hypervisor = {
          driver: 'qemu',
          guests: { 'guest-1': { mac: '52:54:00:00:00:01', bootOn: 'host-z' } },
        }),
      /^hypervisor.guests.guest-1.bootOn: host-z is neither this host nor a peer$/,
    ],
    ...(
      [
        [
          'no length',
          { address: '10.1.0.10', gateway: '10.1.0.1' },
          /^hypervisor.guests.guest-1.ipv4.address: 10.1.0.10: needs its subnet's length/,
        ],
        [
          'not IPv4',
          { address: '2001:db8::5/64', gateway: '10.1.0.1' },
          /^hypervisor.guests.guest-1.ipv4.address: 2001:db8::5\/64: not an IPv4 address \(10.1.0.10\/24\)$/,
        ],
        [
          'octet > 255',
          { address: '10.1.0.300/24', gateway: '10.1.0.1' },
          /^hypervisor.guests.guest-1.ipv4.address: .*not a dotted-quad/,
        ],
        [
          'a /31',
          { address: '10.1.0.10/31', gateway: '10.1.0.11' },
          /^hypervisor.guests.guest-1.ipv4.address: 10.1.0.10\/31: the length must be 1..30$/,
        ],
        [
          'the network address',
          { address: '10.1.0.0/24', gateway: '10.1.0.1' },
          /^hypervisor.guests.guest-1.ipv4.address: 10.1.0.0\/24: the subnet's network or broadcast address$/,
        ],
        [
          'the broadcast address',
          { address: '10.1.0.255/24', gateway: '10.1.0.1' },
          /ipv4.address: 10.1.0.255\/24: the subnet's network or broadcast/,
        ],
        [
          'gateway off the subnet',
          { address: '10.1.0.10/24', gateway: '10.2.0.1' },
          /^hypervisor.guests.guest-1.ipv4.gateway: 10.2.0.1: not in the address's subnet 10.1.0.0\/24$/,
        ],
        [
          'gateway with a length',
          { address: '10.1.0.10/24', gateway: '10.1.0.1/24' },
          /^hypervisor.guests.guest-1.ipv4.gateway: 10.1.0.1\/24: an address, without a length$/,
        ],
        [
          'gateway is the guest',
          { address: '10.1.0.10/24', gateway: '10.1.0.10' },
          /^hypervisor.guests.guest-1.ipv4.gateway: 10.1.0.10: the guest's own address$/,
        ],
        ['no gateway', { address: '10.1.0.10/24' }, /^hypervisor.guests.guest-1.ipv4.gateway: required$/],
        [
          'unknown key',
          { address: '10.1.0.10/24', gateway: '10.1.0.1', dns: '10.1.0.1' },
          /^hypervisor.guests.guest-1.ipv4.dns: unknown key$/,
        ],
        [
          "outside the network's IPv4 prefix",
          { address: '10.9.0.10/24', gateway: '10.9.0.1' },
          /^hypervisor.guests.guest-1.ipv4.address: 10.9.0.10 is not in network net1's IPv4 prefixes \(10.1.0.0\/24\)$/,
        ],
      ] as const
    ).map(([what, ipv4, message]): [string, (d: Doc) => void, RegExp] => [
      `qemu ipv4: ${what}`,
      (d) => {
        d.networks[0].prefixes.push('10.1.0.0/24');
        d.hypervisor = { driver: 'qemu', guests: { 'guest-1': { mac: '52:54:00:00:00:01', ipv4 } } };
      },
      message,
    ]),
    [
      'qemu ipv4: the network has no IPv4 prefix',
      (d) =>
        (d.hypervisor = {
          driver: 'qemu',
          guests: {
            'guest-1': { mac: '52:54:00:00:00:01', ipv4: { address: '10.1.0.10/24', gateway: '10.1.0.1' } },
          },
        }),
      /^hypervisor.guests.guest-1.ipv4.address: network net1 has no IPv4 prefix/,
    ],
    [
      'qemu ipv4: with append',
      (d) => {
        d.networks[0].prefixes.push('10.1.0.0/24');
        d.hypervisor = {
          driver: 'qemu',
          guests: {
            'guest-1': {
              mac: '52:54:00:00:00:01',
              append: 'console=ttyS0',
              ipv4: { address: '10.1.0.10/24', gateway: '10.1.0.1' },
            },
          },
        };
      },
      /^hypervisor.guests.guest-1.ipv4: goes on the default kernel command line: with append, put offlink.addr4=/,
    ],
    [
      'qemu: an accelerator that is none',
      (d) => (d.hypervisor = { driver: 'qemu', accel: 'hvf', guests: {} }),
      /^hypervisor.accel: must be one of: auto, kvm, tcg$/,
    ],
    [
      'qemu: a CPU model with a space',
      (d) => (d.hypervisor = { driver: 'qemu', cpu: 'host -smp 4', guests: {} }),
      /^hypervisor.cpu: not a QEMU CPU model/,
    ],
    [
      'qemu: ready that is not a regular expression',
      (d) =>
        (d.hypervisor = {
          driver: 'qemu',
          guests: { 'guest-1': { mac: '52:54:00:00:00:01', ready: 'login(' } },
        }),
      /^hypervisor.guests.guest-1.ready: not a regular expression/,
    ],
    [
      'qemu: ready true',
      (d) =>
        (d.hypervisor = { driver: 'qemu', guests: { 'guest-1': { mac: '52:54:00:00:00:01', ready: true } } }),
      /^hypervisor.guests.guest-1.ready: /,
    ],
    ['network: unknown key', (d) => (d.networks[0].colour = 1), /^networks\[0\].colour: unknown key$/],
    [
      'network: bad prefix',
      (d) => (d.networks[0].prefixes = ['2001:db8:100::1/64']),
      /^networks\[0\].prefixes\[0\]: .*host bits set/,
    ],
    ['network: no key', (d) => delete d.networks[0].key, /^networks\[0\].key: required \(or keyFile\)$/],
    [
      'network: bad guest name',
      (d) => (d.networks[0].guests = ['guest 1']),
      /^networks\[0\].guests\[0\]: letters/,
    ],
    [
      'network: activeOnStart not bool',
      (d) => (d.networks[0].activeOnStart = 'yes'),
      /^networks\[0\].activeOnStart: /,
    ],
    [
      'duplicate network name',
      (d) =>
        d.networks.push({
          ...d.networks[0],
          bridge: 'b2',
          homeAddress: '2001:db8:ffff::9',
          spi: 9999,
          guests: [],
        }),
      /^networks\[1\].name: net1 is already used by networks\[0\] \(net1\)$/,
    ],
    [
      'duplicate bridge',
      (d) =>
        d.networks.push({
          ...d.networks[0],
          name: 'n2',
          homeAddress: '2001:db8:ffff::9',
          spi: 9999,
          guests: [],
        }),
      /^networks\[1\].bridge: ofl-net1 is already used/,
    ],
    [
      'guest in two networks',
      (d) =>
        d.networks.push({
          ...d.networks[0],
          name: 'n2',
          bridge: 'b2',
          homeAddress: '2001:db8:ffff::9',
          spi: 9999,
          guests: ['guest-2'],
        }),
      /^networks\[1\].guests\[0\]: guest-2 is already in networks\[0\] \(net1\): a guest belongs to one network$/,
    ],
  ];
  for (const [what, fn, message] of bad) {
    it(`refuses: ${what}`, () => {
      assert.match(errorOf(edit(fn)), message);
    });
  }

  it('metrics: none by default, or an unsigned endpoint on any address', () => {
    assert.equal(parse(base()).metrics, undefined);
    assert.deepEqual(parse(edit((d) => (d.metrics = { listen: '[::]:9181' }))).metrics, {
      host: '::',
      port: 9181,
    });
    assert.deepEqual(parse(edit((d) => (d.metrics = { listen: '[2001:db8:a::2]:9181' }))).metrics, {
      host: '2001:db8:a::2',
      port: 9181,
    });
  });

  it('takes a qemu hypervisor section (no namespaces needed)', () => {
    const d = base();
    d['hypervisor'] = {
      driver: 'qemu',
      guests: {
        'guest-1': { mac: '52:54:00:00:00:01', bootOn: 'host-a' },
        'guest-2': {
          mac: '52:54:00:00:00:02',
          kernel: '/srv/vmlinuz',
          initrd: '/srv/initrd',
          ready: 'login: ',
        },
      },
      accel: 'kvm',
      cpu: 'Skylake-Server',
      migration: { downtimeLimitMs: 100, overlap: false },
    };
    const config = parse(d);
    assert.ok(config.hypervisor.driver === 'qemu');
    assert.equal(config.hypervisor.accel, 'kvm');
    assert.equal(config.hypervisor.cpu, 'Skylake-Server');
    assert.equal(config.hypervisor.guests['guest-2']?.ready, 'login: ');
    assert.equal(config.hypervisor.driver, 'qemu');
    assert.deepEqual(config.hypervisor.guests['guest-1'], {
      mac: '52:54:00:00:00:01',
      memoryMiB: 128,
      bootOn: 'host-a',
    });
    assert.deepEqual(config.hypervisor.driver === 'qemu' && config.hypervisor.migration, {
      downtimeLimitMs: 100,
      overlap: false,
    });
  });

  it("takes a qemu guest's IPv4 side inside its network's IPv4 prefix; none by default", () => {
    const d = base();
    (d['networks'] as Doc[])[0]!['prefixes'].push('10.1.0.0/24');
    d['hypervisor'] = {
      driver: 'qemu',
      guests: {
        'guest-1': { mac: '52:54:00:00:00:01', ipv4: { address: '10.1.0.10/24', gateway: '10.1.0.1' } },
        'guest-2': { mac: '52:54:00:00:00:02' },
      },
    };
    const config = parse(d);
    assert.ok(config.hypervisor.driver === 'qemu');
    assert.deepEqual(config.hypervisor.guests['guest-1']?.ipv4, {
      address: '10.1.0.10/24',
      gateway: '10.1.0.1',
    });
    assert.equal(config.hypervisor.guests['guest-2']?.ipv4, undefined);
  });

  const libvirt = () => ({
    driver: 'libvirt',
    uri: 'qemu+tcp://[2001:db8:a::2]/system',
    peers: { 'host-b': 'qemu+tcp://[2001:db8:b::2]/system' },
    guests: { 'guest-1': {}, 'guest-2': { domain: 'web-2' } },
  });

  it("takes a libvirt hypervisor section: this host's URI, each peer's, guests by domain name", () => {
    const d = base();
    d['hypervisor'] = { ...libvirt(), migration: { p2p: true, timeoutSeconds: 60 } };
    const config = parse(d);
    assert.deepEqual(config.hypervisor, { ...libvirt(), migration: { p2p: true, timeoutSeconds: 60 } });
  });

  const badLibvirt: [string, (h: Doc) => void, RegExp][] = [
    ['not a URI', (h) => (h['uri'] = '2001:db8:a::2'), /^hypervisor.uri: must be a libvirt connection URI/],
    [
      'a peer without a URI',
      (h) => (h['peers'] = {}),
      /^hypervisor.peers.host-b: required: the libvirt driver migrates guests to peer host-b's libvirtd/,
    ],
    [
      'a URI for a host that is not a peer',
      (h) => (h['peers']['host-c'] = 'qemu+tcp://[2001:db8:c::2]/system'),
      /^hypervisor.peers.host-c: not one of peers$/,
    ],
    [
      'two guests on one domain',
      (h) => (h['guests'] = { 'guest-1': { domain: 'g' }, 'guest-2': { domain: 'g' } }),
      /^hypervisor.guests.guest-2.domain: libvirt domain g is already guest guest-1's$/,
    ],
    [
      'a domain name with a slash',
      (h) => (h['guests']['guest-1'] = { domain: 'a/b' }),
      /not a libvirt domain name/,
    ],
    ['an unknown key', (h) => (h['qemu'] = '/usr/bin/qemu'), /^hypervisor.qemu: unknown key$/],
  ];
  for (const [what, fn, message] of badLibvirt) {
    it(`refuses a libvirt section with ${what}`, () => {
      const h = libvirt() as Doc;
      fn(h);
      assert.match(errorOf(edit((d) => (d['hypervisor'] = h))), message);
    });
  }

  it('refuses text that is not YAML, and a missing file', () => {
    assert.throws(() => parseAgentConfig('host: [unclosed'), /not valid YAML/);
    assert.throws(() => loadAgentConfig('/nonexistent/agent.yaml'), /cannot read config .*ENOENT/);
  });
});
