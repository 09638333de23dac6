// Test certificates for the migration stream's TLS, made with openssl: a CA, and for each host one
// directory in the layout QEMU's tls-creds-x509 and libvirt's migrate_tls_x509_cert_dir read
// (ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem, client-key.pem). Each host's server
// certificate names its care-of address as an IP subjectAltName (the source checks it against the
// address it connects to). EC P-256 keys: made in milliseconds, and GnuTLS (QEMU, libvirt) takes them.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const openssl = (args: string[], cwd: string) => execFileSync('openssl', args, { cwd, stdio: 'pipe' });

function newKey(dir: string, name: string): string {
  const key = join(dir, name);
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key], dir);
  return key;
}

export interface TestCa {
  dir: string;
  cert: string;
  key: string;
}

/** A self-signed CA in `dir` (ca-cert.pem, ca-key.pem). */
export function makeCa(dir: string, cn = 'offlink test CA'): TestCa {
  mkdirSync(dir, { recursive: true });
  const key = newKey(dir, 'ca-key.pem');
  const cert = join(dir, 'ca-cert.pem');
  openssl(
    [
      'req',
      '-x509',
      '-new',
      '-key',
      key,
      '-out',
      cert,
      '-days',
      '2',
      '-subj',
      `/CN=${cn}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
  return { dir, cert, key };
}

/** A certificate for `role` signed by `ca`, written as `<role>-cert.pem` / `<role>-key.pem` in `dir`. */
export function issue(
  ca: TestCa,
  dir: string,
  role: 'server' | 'client',
  cn: string,
  ips: readonly string[],
) {
  mkdirSync(dir, { recursive: true });
  newKey(dir, `${role}-key.pem`);
  const csr = join(dir, `${role}.csr`);
  openssl(['req', '-new', '-key', `${role}-key.pem`, '-out', csr, '-subj', `/CN=${cn}`], dir);
  const ext = join(dir, `${role}.ext`);
  writeFileSync(
    ext,
    [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      `extendedKeyUsage=${role === 'server' ? 'serverAuth' : 'clientAuth'}`,
      ...(ips.length ? [`subjectAltName=${ips.map((ip) => `IP:${ip}`).join(',')}`] : []),
      '',
    ].join('\n'),
  );
  openssl(
    [
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      ca.cert,
      '-CAkey',
      ca.key,
      '-CAcreateserial',
      '-out',
      `${role}-cert.pem`,
      '-days',
      '2',
      '-extfile',
      ext,
    ],
    dir,
  );
}

/**
 * One host's directory: the certificates of the CAs in `trust` (ca-cert.pem, a bundle when several), a
 * server certificate for `ip` and a client certificate, both signed by `signer` (default: the first
 * trusted CA). QEMU checks its own certificates against its own ca-cert.pem when it loads them, so a
 * host signed by a CA the others do not trust must trust that CA itself.
 */
export function hostPki(
  dir: string,
  host: string,
  ip: string,
  trust: readonly TestCa[],
  signer = trust[0]!,
): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'ca-cert.pem'), trust.map((ca) => readFileSync(ca.cert, 'utf8')).join(''));
  issue(signer, dir, 'server', host, [ip]);
  issue(signer, dir, 'client', host, [ip]);
  return dir;
}
