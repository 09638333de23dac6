import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { ConfigError } from '../errors.ts';
import { type HomeAgentConfig, parseHomeAgent, parseHomeAgentConfig } from './config.ts';

const KEY = '00112233445566778899aabbccddeeff00112233';
const dir = mkdtempSync(join(tmpdir(), 'offlink-ha-config-'));
writeFileSync(join(dir, 'mr2.key'), `${'ab'.repeat(32)}\n`);
writeFileSync(join(dir, 'short.key'), 'abcd\n');
after(() => rmSync(dir, { recursive: true, force: true }));

// biome-ignore lint/suspicious/noExplicitAny: test documents are mutated into every malformed shape
type Doc = Record<string, any>;

const ETCD = { endpoints: ['http://127.0.0.1:2379'] };

function base() {
  return {
    homeAgent: { address: '2001:db8:ffff::1', uplink: 'ha-mr', database: 'ha.sqlite' },
    mobileRouters: [
      {
        name: 'mr1',
        homeAddress: '2001:db8:ffff::101',
        prefixes: ['2001:db8:100::/64'],
        spi: 1001,
        key: KEY,
      },
      {
        name: 'mr2',
        homeAddress: '2001:db8:ffff::102',
        prefixes: ['2001:db8:200::/56'],
        spi: 1002,
        keyFile: 'mr2.key',
        algorithm: 'hmac-sha256',
      },
    ],
  } as Doc;
}

function parse(doc: unknown) {
  return parseHomeAgentConfig(JSON.stringify(doc), dir);
}

function error(mutate: (d: Doc) => void): string {
  const d = base();
  mutate(d);
  try {
    parse(d);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.message;
  }
  assert.fail('expected a ConfigError');
}

const cases: [string, (d: Doc) => void, RegExp][] = [
  [
    'bad prefix',
    (d) => (d['mobileRouters'][1].prefixes = ['2001:db8::/64', 'nope']),
    /^mobileRouters\[1\]\.prefixes\[1\]: nope: not an IPv6 or IPv4 prefix/,
  ],
  [
    'host bits set',
    (d) => (d['mobileRouters'][0].prefixes = ['2001:db8:100::1/64']),
    /^mobileRouters\[0\]\.prefixes\[0\]: 2001:db8:100::1\/64: host bits set \(the network is 2001:db8:100::\/64\)/,
  ],
  [
    'bad HA address',
    (d) => (d['homeAgent'].address = '10.0.0.1'),
    /^homeAgent\.address: not an IPv6 address/,
  ],
  ['missing uplink', (d) => delete d['homeAgent'].uplink, /^homeAgent\.uplink: required/],
  ['unknown key', (d) => (d['homeAgent'].adress = 'x'), /^homeAgent\.adress: unknown key/],
  [
    'duplicate SPI',
    (d) => (d['mobileRouters'][1].spi = 1001),
    /^mobileRouters\[1\]\.spi: duplicate of mobileRouters\[0\]/,
  ],
  [
    'duplicate home address',
    (d) => (d['mobileRouters'][1].homeAddress = '2001:db8:ffff::101'),
    /^mobileRouters\[1\]\.homeAddress: duplicate/,
  ],
  ['duplicate name', (d) => (d['mobileRouters'][1].name = 'mr1'), /^mobileRouters\[1\]\.name: duplicate/],
  [
    'overlapping prefixes',
    (d) => (d['mobileRouters'][1].prefixes = ['2001:db8:100::/56']),
    /^mobileRouters\[1\]\.prefixes\[0\]: 2001:db8:100::\/56 overlaps 2001:db8:100::\/64 of mobileRouters\[0\]/,
  ],
  [
    'overlap, inner one later',
    (d) => {
      d['mobileRouters'][0].prefixes = ['2001:db8::/32'];
      d['mobileRouters'][1].prefixes = ['2001:db8:5::/64'];
    },
    /^mobileRouters\[1\]\.prefixes\[0\]: .* overlaps 2001:db8::\/32/,
  ],
  [
    'IPv4 prefix with host bits',
    (d) => (d['mobileRouters'][0].prefixes = ['2001:db8:100::/64', '10.1.0.1/24']),
    /^mobileRouters\[0\]\.prefixes\[1\]: 10\.1\.0\.1\/24: host bits set \(the network is 10\.1\.0\.0\/24\)/,
  ],
  [
    'IPv4 prefix too long',
    (d) => (d['mobileRouters'][0].prefixes = ['10.1.0.0/33']),
    /^mobileRouters\[0\]\.prefixes\[0\]: 10\.1\.0\.0\/33: not an IPv4 prefix: length must be 0\.\.32/,
  ],
  [
    'IPv4 address without a length',
    (d) => (d['mobileRouters'][0].prefixes = ['10.1.0.0']),
    /^mobileRouters\[0\]\.prefixes\[0\]: 10\.1\.0\.0: not a prefix \(address\/length\)/,
  ],
  [
    'overlapping IPv4 prefixes',
    (d) => {
      d['mobileRouters'][0].prefixes = ['2001:db8:100::/64', '10.1.0.0/16'];
      d['mobileRouters'][1].prefixes = ['2001:db8:200::/64', '10.1.2.0/24'];
    },
    /^mobileRouters\[1\]\.prefixes\[1\]: 10\.1\.2\.0\/24 overlaps 10\.1\.0\.0\/16 of mobileRouters\[0\]/,
  ],
  ['key too short', (d) => (d['mobileRouters'][0].key = 'abcd'), /^mobileRouters\[0\]\.key: too short/],
  ['key not hex', (d) => (d['mobileRouters'][0].key = 'xyz'), /^mobileRouters\[0\]\.key: not a hex string/],
  [
    'key and keyFile',
    (d) => (d['mobileRouters'][0].keyFile = 'mr2.key'),
    /^mobileRouters\[0\]\.key: give key or keyFile/,
  ],
  ['no key', (d) => delete d['mobileRouters'][0].key, /^mobileRouters\[0\]\.key: required/],
  [
    'unreadable key file',
    (d) => (d['mobileRouters'][1].keyFile = 'missing.key'),
    /^mobileRouters\[1\]\.keyFile: cannot read missing\.key: ENOENT/,
  ],
  [
    'short key file',
    (d) => (d['mobileRouters'][1].keyFile = 'short.key'),
    /^mobileRouters\[1\]\.keyFile: short\.key: too short/,
  ],
  ['reserved SPI', (d) => (d['mobileRouters'][0].spi = 5), /^mobileRouters\[0\]\.spi: SPI 0–255 is reserved/],
  ['bad algorithm', (d) => (d['mobileRouters'][0].algorithm = 'md5'), /^mobileRouters\[0\]\.algorithm:/],
  [
    'status not loopback',
    (d) => (d['homeAgent'].status = { listen: '0.0.0.0:9180' }),
    /^homeAgent\.status\.listen: must be a loopback/,
  ],
  [
    'bad table',
    (d) => (d['homeAgent'].dataplane = { table: 254 }),
    /^homeAgent\.dataplane\.table: tables 253–255/,
  ],
  ['bad backend', (d) => (d['homeAgent'].dataplane = { backend: 'gre' }), /^homeAgent\.dataplane\.backend:/],
  [
    'refresh advice ≥ max lifetime',
    (d) => {
      d['homeAgent'].maxLifetimeSeconds = 100;
      d['homeAgent'].refreshAdviceSeconds = 100;
    },
    /^homeAgent\.refreshAdviceSeconds: must be less than maxLifetimeSeconds/,
  ],
  [
    'lifetime too long',
    (d) => (d['homeAgent'].maxLifetimeSeconds = 300000),
    /^homeAgent\.maxLifetimeSeconds:/,
  ],
  [
    'no prefixes',
    (d) => (d['mobileRouters'][0].prefixes = []),
    /^mobileRouters\[0\]\.prefixes: at least one prefix/,
  ],
  [
    'metrics as a bare address',
    (d) => (d['homeAgent'].metrics = '[::]:9100'),
    /^homeAgent\.metrics: must be \{ listen: "\[::\]:9180" \}$/,
  ],
  [
    'metrics without brackets',
    (d) => (d['homeAgent'].metrics = { listen: '2001:db8::1:9100' }),
    /^homeAgent\.metrics\.listen: must be address:port \("\[::\]:9180"/,
  ],
  [
    'metrics port out of range',
    (d) => (d['homeAgent'].metrics = { listen: '0.0.0.0:70000' }),
    /^homeAgent\.metrics\.listen: must be address:port/,
  ],
  [
    'metrics unknown key',
    (d) => (d['homeAgent'].metrics = { listen: '[::]:9100', path: '/m' }),
    /^homeAgent\.metrics\.path: unknown key$/,
  ],
  [
    'metrics on the status socket',
    (d) => (d['homeAgent'].metrics = { listen: '[::]:9180' }),
    /^homeAgent\.metrics\.listen: :: port 9180 is taken by homeAgent\.status\.listen/,
  ],
  [
    'store neither sqlite nor etcd',
    (d) => (d['homeAgent'].store = 'redis'),
    /^homeAgent\.store: must be "sqlite" or "etcd"$/,
  ],
  [
    'store etcd without an etcd section',
    (d) => (d['homeAgent'].store = 'etcd'),
    /^homeAgent\.etcd: required with store: etcd/,
  ],
  [
    'etcd section with store sqlite',
    (d) => (d['homeAgent'].etcd = ETCD),
    /^homeAgent\.etcd: only with store: etcd \(store is sqlite\)$/,
  ],
  [
    'etcd endpoints empty',
    (d) => Object.assign(d['homeAgent'], { store: 'etcd', etcd: { endpoints: [] } }),
    /^homeAgent\.etcd\.endpoints: at least one etcd endpoint$/,
  ],
  [
    'etcd endpoint not a URL',
    (d) => Object.assign(d['homeAgent'], { store: 'etcd', etcd: { endpoints: ['127.0.0.1:2379'] } }),
    /^homeAgent\.etcd\.endpoints\[0\]: not a URL \("http:\/\/\[2001:db8::10\]:2379"\)$/,
  ],
  [
    'etcd endpoint neither http nor https',
    (d) => Object.assign(d['homeAgent'], { store: 'etcd', etcd: { endpoints: ['grpc://127.0.0.1:2379'] } }),
    /^homeAgent\.etcd\.endpoints\[0\]: must be http:\/\/ or https:\/\//,
  ],
  [
    'etcd endpoint without a port',
    (d) => Object.assign(d['homeAgent'], { store: 'etcd', etcd: { endpoints: ['http://[2001:db8::10]'] } }),
    /^homeAgent\.etcd\.endpoints\[0\]: needs a port/,
  ],
  [
    'etcd endpoint with a path',
    (d) =>
      Object.assign(d['homeAgent'], {
        store: 'etcd',
        etcd: { endpoints: ['http://127.0.0.1:2379', 'http://127.0.0.1:2381/v3'] },
      }),
    /^homeAgent\.etcd\.endpoints\[1\]: only scheme, host and port/,
  ],
  [
    'etcd prefix without slashes',
    (d) => Object.assign(d['homeAgent'], { store: 'etcd', etcd: { ...ETCD, prefix: 'offlink' } }),
    /^homeAgent\.etcd\.prefix: must start and end with "\/"/,
  ],
  [
    'etcd as a list',
    (d) => Object.assign(d['homeAgent'], { store: 'etcd', etcd: ['http://127.0.0.1:2379'] }),
    /^homeAgent\.etcd: must be \{ endpoints: \["http:\/\/…:2379"\] \}$/,
  ],
];

describe('home agent config', () => {
  test('defaults and normalisation', () => {
    const config = parse(base());
    assert.deepEqual(config.homeAgent.listen, { address: '2001:db8:ffff::1', port: 4191 });
    assert.deepEqual(config.homeAgent.status, { host: '127.0.0.1', port: 9180 });
    assert.deepEqual(config.homeAgent.dataplane, { backend: 'auto', table: 200, mss: 1400 });
    assert.equal(config.homeAgent.database, join(dir, 'ha.sqlite'));
    assert.equal(config.homeAgent.replayWindowSeconds, 7);
    assert.equal(config.homeAgent.retainOnStop, true);
    assert.equal(config.mobileRouters[0]!.algorithm, 'hmac-sha1');
    assert.deepEqual(new Uint8Array(config.mobileRouters[0]!.key), new Uint8Array(Buffer.from(KEY, 'hex')));
    assert.equal(config.mobileRouters[1]!.key.length, 32);
  });

  test('store: sqlite by default; etcd with its defaults filled in', () => {
    assert.equal(parse(base()).homeAgent.store, 'sqlite');
    assert.equal(parse(base()).homeAgent.etcd, undefined);
    const d = base();
    d['homeAgent'].store = 'etcd';
    d['homeAgent'].etcd = { endpoints: ['http://[2001:db8::10]:2379', 'https://etcd1.example:2379'] };
    assert.deepEqual(parse(d).homeAgent.etcd, {
      endpoints: ['http://[2001:db8::10]:2379', 'https://etcd1.example:2379'],
      prefix: '/offlink/',
      timeoutMs: 5000,
      maxTxnOps: 128,
      leaseTtlSeconds: 5,
    });
  });

  test('addresses are canonicalised', () => {
    const d = base();
    d['homeAgent'].address = '2001:DB8:FFFF:0:0:0:0:1';
    d['mobileRouters'][0].prefixes = ['2001:0DB8:0100::/64'];
    const config = parse(d);
    assert.equal(config.homeAgent.address, '2001:db8:ffff::1');
    assert.deepEqual(config.mobileRouters[0]!.prefixes, ['2001:db8:100::/64']);
  });

  test('status on [::1] and disabled', () => {
    const d = base();
    d['homeAgent'].status = { listen: '[::1]:9999' };
    assert.deepEqual(parse(d).homeAgent.status, { host: '::1', port: 9999 });
    d['homeAgent'].status = false;
    assert.equal(parse(d).homeAgent.status, undefined);
  });

  test('metrics: none by default; any address and port, apart from the status socket', () => {
    assert.equal(parse(base()).homeAgent.metrics, undefined);
    const d = base();
    d['homeAgent'].metrics = { listen: '[2001:db8:ffff::1]:9100' };
    assert.deepEqual(parse(d).homeAgent.metrics, { host: '2001:db8:ffff::1', port: 9100 });
    d['homeAgent'].metrics = { listen: '0.0.0.0:9180' };
    d['homeAgent'].status = false;
    assert.deepEqual(parse(d).homeAgent.metrics, { host: '0.0.0.0', port: 9180 }, 'status off: 9180 is free');
    d['homeAgent'].status = { listen: '[::1]:9180' };
    assert.deepEqual(parse(d).homeAgent.metrics, { host: '0.0.0.0', port: 9180 }, 'IPv4 and IPv6 sockets');
  });

  test('the example config is valid', () => {
    const text = readFileSync(new URL('../../examples/ha.yaml', import.meta.url), 'utf8');
    const config = parseHomeAgentConfig(text, dir);
    assert.ok(config.mobileRouters.length > 0);
  });

  for (const [name, mutate, re] of cases) {
    test(`error names the key: ${name}`, () => {
      const msg = error(mutate);
      assert.match(msg, re);
      assert.ok(!msg.includes('\n'), 'one line');
    });
  }

  test('YAML syntax error', () => {
    assert.throws(
      () => parseHomeAgentConfig('homeAgent: [\n', dir),
      (e: Error) => e instanceof ConfigError && /not valid YAML/.test(e.message),
    );
  });

  test('duplicate YAML keys are refused', () => {
    assert.throws(() => parseHomeAgentConfig('homeAgent: {}\nhomeAgent: {}\n', dir), ConfigError);
  });
});

// Over 1 MiB of YAML with the mobile routers as a block sequence: parsed, validated and put into the table
// a slice of 100 at a time. The same document as JSON (one line, no block sequence) takes the whole-document
// path; both must give the same table and the same first error.
describe('home agent config, a large one (sliced)', () => {
  const FILLERS = 9000;
  function large(): Doc {
    const d = base();
    const fillers = Array.from({ length: FILLERS }, (_, i) => ({
      name: `f${i}`,
      homeAddress: `2001:db8:ffff:1::${i.toString(16)}`,
      prefixes: [`3fff:1:${i.toString(16)}::/64`],
      spi: 2000 + i,
      key: KEY,
    }));
    d['mobileRouters'] = [...fillers, ...d['mobileRouters']];
    return d;
  }
  /** The document as a slicable YAML text and as JSON, each parsed; the result or the error message. */
  function both(d: Doc): [unknown, unknown] {
    const yaml = stringify(d);
    assert.ok(yaml.length > 1 << 20 && /^mobileRouters:\n {2}- name: f0$/m.test(yaml));
    const run = (text: string) => {
      try {
        return parseHomeAgentConfig(text, dir);
      } catch (err) {
        assert.ok(err instanceof ConfigError, String(err));
        return err.message;
      }
    };
    return [run(yaml), run(JSON.stringify(d))];
  }

  test('the same config as the whole document gives', () => {
    const [sliced, whole] = both(large());
    assert.deepEqual(sliced, whole);
    const config = sliced as HomeAgentConfig;
    assert.equal(config.mobileRouters.length, FILLERS + 2);
    assert.equal(config.mobileRouters[FILLERS + 1]!.key.length, 32);
    const { table } = parseHomeAgent(stringify(large()), dir);
    assert.equal(table.size, FILLERS + 2);
    assert.equal(table.bySpi(1002)!.name, 'mr2');
    assert.equal(table.byHomeAddress('2001:db8:ffff:1::2327')!.sa.spi, 2000 + 0x2327);
  });

  // The error cases above, on the two mobile routers at the end of the list (slice 90).
  for (const [name, mutate, re] of cases) {
    test(`the same error: ${name}`, () => {
      const d = large();
      const mrs = d['mobileRouters'];
      mutate({ homeAgent: d['homeAgent'], mobileRouters: mrs.slice(FILLERS) });
      const [sliced, whole] = both(d);
      assert.equal(sliced, whole);
      const shifted = (sliced as string).replace(
        /mobileRouters\[(\d+)\]/g,
        (_, i) => `mobileRouters[${i - FILLERS}]`,
      );
      assert.match(shifted, re);
    });
  }

  // The first error is the whole document's first, wherever the slices put them.
  const precedence: [string, (mrs: Doc[], d: Doc) => void, string][] = [
    [
      'a zod issue late before a key error early',
      (mrs) => {
        delete mrs[5]!.key;
        mrs[8500]!.spi = 'x';
      },
      'mobileRouters[8500].spi: must be a number, not a string',
    ],
    [
      'a key error late before a duplicate early',
      (mrs) => {
        mrs[5]!.name = 'f1';
        mrs[8500]!.key = undefined;
        mrs[8500]!.keyFile = 'missing.key';
      },
      'mobileRouters[8500].keyFile: cannot read missing.key: ENOENT',
    ],
    [
      'the first duplicate, not a later one',
      (mrs) => {
        mrs[8500]!.spi = 2000;
        mrs[300]!.homeAddress = '2001:db8:ffff:1::3';
      },
      'mobileRouters[300].homeAddress: duplicate of mobileRouters[3]',
    ],
    [
      'a duplicate before an overlap',
      (mrs) => {
        mrs[10]!.prefixes = ['3fff:1::/48'];
        mrs[8500]!.name = 'f0';
      },
      'mobileRouters[8500].name: duplicate of mobileRouters[0]',
    ],
    [
      'an unknown top-level key after the mobile routers’ zod issues',
      (mrs, d) => {
        d['extra'] = 1;
        mrs[8500]!.algorithm = 'md5';
      },
      'mobileRouters[8500].algorithm: Invalid option: expected one of "hmac-sha1"|"hmac-sha256"',
    ],
    [
      'an unknown top-level key before key errors',
      (mrs, d) => {
        d['extra'] = 1;
        delete mrs[20]!.key;
      },
      'extra: unknown key',
    ],
    [
      'homeAgent before the mobile routers',
      (mrs, d) => {
        mrs[0]!.spi = 1;
        delete d['homeAgent'].uplink;
      },
      'homeAgent.uplink: required',
    ],
    [
      'refreshAdviceSeconds last',
      (mrs, d) => {
        d['homeAgent'].maxLifetimeSeconds = 100;
        d['homeAgent'].refreshAdviceSeconds = 200;
        mrs[8999]!.prefixes = ['3fff:1:1::/64'];
      },
      'mobileRouters[8999].prefixes[0]: 3fff:1:1::/64 overlaps 3fff:1:1::/64 of mobileRouters[1] (f1)',
    ],
  ];
  for (const [name, mutate, message] of precedence) {
    test(`first error: ${name}`, () => {
      const d = large();
      mutate(d['mobileRouters'], d);
      const [sliced, whole] = both(d);
      assert.equal(sliced, message);
      assert.equal(whole, message);
    });
  }

  test('a YAML error late in the list comes before a validation error early', () => {
    const d = large();
    d['mobileRouters'][3].spi = 'x';
    const lines = stringify(d).split('\n');
    const at = lines.indexOf('  - name: f8000');
    lines[at] = '  - name: f8000: x';
    assert.throws(
      () => parseHomeAgentConfig(lines.join('\n'), dir),
      (e: Error) => e instanceof ConfigError && /^not valid YAML: /.test(e.message),
    );
  });
});
