import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { hostPki, makeCa } from '../../test/helpers/pki.ts';
import { parseAgentConfig } from '../agent/config.ts';
import { ConfigError } from '../errors.ts';
import { TLS_FILES, tlsDirProblem } from './tls.ts';

const root = mkdtempSync(join(tmpdir(), 'offlink-tls-'));
after(() => rmSync(root, { recursive: true, force: true }));
const ca = makeCa(join(root, 'ca'));
const other = makeCa(join(root, 'other'), 'other');
const good = hostPki(join(root, 'good'), 'host-a', '2001:db8:a::2', [ca]);
let n = 0;

/** A copy of the good directory, changed by `fn`. */
function variant(fn: (dir: string) => void): string {
  const dir = join(root, `v${++n}`);
  mkdirSync(dir);
  for (const f of Object.values(TLS_FILES)) copyFileSync(join(good, f), join(dir, f));
  fn(dir);
  return dir;
}

describe('migration TLS directory check', () => {
  it('accepts a directory with the five files, each key its certificate’s', () => {
    assert.equal(tlsDirProblem(good), undefined);
  });

  const cases: [string, (dir: string) => void, RegExp][] = [
    ['a missing CA', (d) => unlinkSync(join(d, 'ca-cert.pem')), /ca-cert\.pem: missing$/],
    ['a missing client key', (d) => unlinkSync(join(d, 'client-key.pem')), /client-key\.pem: missing$/],
    [
      'a directory where the key should be',
      (d) => {
        unlinkSync(join(d, 'server-key.pem'));
        mkdirSync(join(d, 'server-key.pem'));
      },
      /server-key\.pem: cannot be read \(EISDIR\)$/,
    ],
    [
      'a certificate that is not one',
      (d) => writeFileSync(join(d, 'server-cert.pem'), 'hello'),
      /server-cert\.pem: not a PEM certificate$/,
    ],
    [
      'a key that is not one',
      (d) => writeFileSync(join(d, 'client-key.pem'), 'hello'),
      /client-key\.pem: not a PEM private key/,
    ],
    [
      "another certificate's key",
      (d) => copyFileSync(join(d, 'client-key.pem'), join(d, 'server-key.pem')),
      /server-key\.pem: not the key of server-cert\.pem$/,
    ],
  ];
  for (const [what, fn, message] of cases)
    it(`refuses ${what}`, () => assert.match(tlsDirProblem(variant(fn)) ?? 'accepted', message));

  it('leaves the chain to QEMU: a certificate from another CA passes this check', () => {
    assert.equal(tlsDirProblem(hostPki(join(root, 'o'), 'host-a', '2001:db8:a::2', [ca], other)), undefined);
  });
});

describe('agent config: hypervisor.migration.tls', () => {
  const doc = (migration: unknown, hypervisor: Record<string, unknown> = {}) =>
    stringify({
      host: 'host-a',
      uplink: 'up0',
      homeAgent: { address: '2001:db8:ffff::1' },
      control: { listen: '[2001:db8:a::2]:7400', key: 'ab'.repeat(32) },
      hypervisor: { driver: 'qemu', guests: {}, migration, ...hypervisor },
    });

  it('takes a qemu certificate directory, relative to the config file', () => {
    const config = parseAgentConfig(doc({ tls: { dir: 'good' } }), root);
    assert.ok(config.hypervisor.driver === 'qemu');
    assert.deepEqual(config.hypervisor.migration?.tls, { dir: good });
  });

  it('defaults the directory to libvirt’s /etc/pki/qemu', () => {
    assert.throws(
      () => parseAgentConfig(doc({ tls: {} }), root),
      (e: Error) =>
        e instanceof ConfigError &&
        /^hypervisor\.migration\.tls\.dir: \/etc\/pki\/qemu\/ca-cert\.pem: missing$/.test(e.message),
    );
  });

  it('refuses a directory with a problem, naming the file, at load (check-config)', () => {
    const dir = variant((d) => unlinkSync(join(d, 'server-cert.pem')));
    assert.throws(
      () => parseAgentConfig(doc({ tls: { dir } }), root),
      (e: Error) =>
        e instanceof ConfigError &&
        e.message === `hypervisor.migration.tls.dir: ${dir}/server-cert.pem: missing`,
    );
  });

  it('takes tls: true for libvirt (libvirt reads its own qemu.conf), and nothing else', () => {
    const libvirt = { driver: 'libvirt', uri: 'qemu:///system', guests: {} };
    const config = parseAgentConfig(doc({ tls: true }, libvirt), root);
    assert.ok(config.hypervisor.driver === 'libvirt');
    assert.equal(config.hypervisor.migration?.tls, true);
    assert.throws(
      () => parseAgentConfig(doc({ tls: { dir: good } }, libvirt), root),
      /hypervisor\.migration\.tls/,
    );
  });
});
