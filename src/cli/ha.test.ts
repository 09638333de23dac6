import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import type { BindingStatus } from '../homeagent/status.ts';
import { formatBindingCache } from './status.ts';

const run = promisify(execFile);
const bin = new URL('../../bin/offlink.js', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'offlink-cli-ha-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function offlink(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args]);
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

test('offlink ha --config with a bad config prints one line naming the key and exits non-zero', async () => {
  const path = join(dir, 'bad.yaml');
  writeFileSync(
    path,
    `homeAgent: { address: "2001:db8::1", uplink: eth0 }
mobileRouters:
  - { name: a, homeAddress: "2001:db8::101", prefixes: ["2001:db8:1::/64"], spi: 300, key: "${'11'.repeat(20)}" }
  - { name: b, homeAddress: "2001:db8::102", prefixes: ["2001:db8:2::/64", "nope"], spi: 301, key: "${'22'.repeat(20)}" }
`,
  );
  for (const args of [
    ['ha', '--config', path],
    ['ha', 'flush', '--config', path],
    ['ha', 'check-config', '--config', path],
  ]) {
    const r = await offlink(...args);
    assert.notEqual(r.code, 0);
    assert.equal(
      r.stderr,
      'offlink: mobileRouters[1].prefixes[1]: nope: not an IPv6 or IPv4 prefix (address/length)\n',
    );
  }
});

test('offlink ha check-config: a good config is one ok line, exit 0; nothing is started', async () => {
  const path = join(dir, 'good.yaml');
  writeFileSync(
    path,
    `homeAgent: { address: "2001:db8::1", uplink: eth0, database: ${join(dir, 'never.sqlite')} }
mobileRouters:
  - { name: a, homeAddress: "2001:db8::101", prefixes: ["2001:db8:1::/64"], spi: 300, key: "${'11'.repeat(20)}" }
`,
  );
  const r = await offlink('ha', 'check-config', '--config', path);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(
    r.stdout,
    `${path}: ok — home agent 2001:db8::1 on eth0, 1 mobile router, database ${join(dir, 'never.sqlite')}, data plane auto\n`,
  );
  assert.equal(existsSync(join(dir, 'never.sqlite')), false, 'no database made');
});

test('offlink ha without --config and with a missing file', async () => {
  assert.match((await offlink('ha')).stderr, /--config FILE is required/);
  const r = await offlink('ha', '--config', join(dir, 'missing.yaml'));
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /^offlink: cannot read config .*missing\.yaml: ENOENT\n$/);
});

test('offlink status --ha: unreachable endpoint is one error line', async () => {
  const r = await offlink('status', '--ha', 'http://127.0.0.1:9');
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /^offlink: cannot reach http:\/\/127\.0\.0\.1:9\/status/);
});

const BINDING: BindingStatus = {
  hoa: '2001:db8:ffff::101',
  mobileRouter: 'net1',
  coa: '2001:db8:a::2',
  prefixes: ['2001:db8:100::/64'],
  sequence: 7,
  lifetimeSeconds: 400,
  remainingSeconds: 321,
  mode: 'explicit',
  id: 1,
  registeredAt: '',
  updatedAt: '',
  expiresAt: '',
};

test('binding cache table', () => {
  const text = formatBindingCache({
    haAddress: '2001:db8:ffff::1',
    now: '2026-01-01T00:00:00.000Z',
    bindings: [{ ...BINDING, prefixes: ['2001:db8:100::/64', '2001:db8:101::/64'] }],
  });
  assert.equal(
    text,
    [
      'HOME ADDRESS        CARE-OF ADDRESS  PREFIXES                             SEQ  LIFETIME  LEFT  MODE      ID  MR',
      '2001:db8:ffff::101  2001:db8:a::2    2001:db8:100::/64,2001:db8:101::/64  7    400s      321s  explicit  1   net1',
      '1 binding at home agent 2001:db8:ffff::1',
      '',
    ].join('\n'),
  );
});

test('binding cache table in a cluster: the members, then which HA served each binding', () => {
  const text = formatBindingCache({
    haAddress: '2001:db8:ffff::1',
    now: '2026-01-01T00:00:00.000Z',
    cluster: {
      name: 'ha2',
      etcd: 'reachable',
      expiryOwner: false,
      members: [
        { name: 'ha1', serving: true, expiryOwner: true, since: 0, address: '2001:db8:ffff::1' },
        { name: 'ha2', serving: false, expiryOwner: false, since: 1000 },
      ],
    },
    bindings: [{ ...BINDING, servedBy: 'ha1' }],
  });
  assert.equal(
    text,
    [
      'cluster (2 members; this HA: ha2, etcd reachable)',
      'MEMBER  HEALTH       EXPIRY  ADDRESS           SINCE',
      'ha1     serving      yes     2001:db8:ffff::1  1970-01-01T00:00:00.000Z',
      'ha2     not serving  -       -                 1970-01-01T00:00:01.000Z',
      '',
      'HOME ADDRESS        CARE-OF ADDRESS  PREFIXES           SEQ  LIFETIME  LEFT  MODE      ID  MR    SERVED BY',
      '2001:db8:ffff::101  2001:db8:a::2    2001:db8:100::/64  7    400s      321s  explicit  1   net1  ha1',
      '1 binding at home agent 2001:db8:ffff::1 (ha2)',
      '',
    ].join('\n'),
  );
});
