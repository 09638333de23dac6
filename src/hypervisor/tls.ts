// TLS for the migration stream: the certificate directory QEMU's tls-creds-x509 object reads, in the
// layout libvirt uses too (its qemu.conf `migrate_tls_x509_cert_dir`, default /etc/pki/qemu):
//
//   ca-cert.pem      the CA(s) this host trusts: peers' certificates must chain to one of them
//   server-cert.pem  this host as a migration destination (subjectAltName: its care-of address)
//   server-key.pem
//   client-cert.pem  this host as a migration source (the destination verifies it: verify-peer)
//   client-key.pem
//
// Every host is both a source and a destination, so all five are required. The agent checks them when
// it reads its config, so a missing file or a key that does not fit its certificate stops the agent (and
// `offlink agent check-config`) with one line, instead of failing the first migration.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The migration stream's TLS settings (hypervisor.migration.tls). */
export interface MigrationTls {
  /** The certificate directory (absolute once the config is read). */
  dir: string;
}

/** libvirt's default (qemu.conf default_tls_x509_cert_dir), the same layout. */
export const DEFAULT_TLS_DIR = '/etc/pki/qemu';

export const TLS_FILES = {
  ca: 'ca-cert.pem',
  serverCert: 'server-cert.pem',
  serverKey: 'server-key.pem',
  clientCert: 'client-cert.pem',
  clientKey: 'client-key.pem',
} as const;

function read(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`${path}: missing`);
    if (code === 'EACCES') throw new Error(`${path}: not readable by this user`);
    throw new Error(`${path}: cannot be read (${code ?? (err as Error).message})`);
  }
}

function certificate(path: string): X509Certificate {
  const pem = read(path);
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch {
    throw new Error(`${path}: not a PEM certificate`);
  }
  const now = Date.now();
  if (Date.parse(cert.validTo) < now) throw new Error(`${path}: expired on ${cert.validTo}`);
  if (Date.parse(cert.validFrom) > now) throw new Error(`${path}: not valid before ${cert.validFrom}`);
  return cert;
}

function pair(dir: string, certFile: string, keyFile: string): void {
  const cert = certificate(join(dir, certFile));
  const keyPath = join(dir, keyFile);
  let key: ReturnType<typeof createPrivateKey>;
  try {
    key = createPrivateKey(read(keyPath));
  } catch (err) {
    if ((err as Error).message.startsWith(keyPath)) throw err;
    throw new Error(
      `${keyPath}: not a PEM private key (an encrypted key does not work: QEMU reads it unattended)`,
    );
  }
  if (!cert.checkPrivateKey(key)) throw new Error(`${keyPath}: not the key of ${certFile}`);
}

/**
 * What is wrong with a certificate directory, or undefined. Checks that the five files are there and
 * readable, the certificates parse and are valid now, and each key is its certificate's. Whether the
 * certificates chain to the CA QEMU checks itself when the guest's QEMU loads them (object-add).
 */
export function tlsDirProblem(dir: string): string | undefined {
  try {
    certificate(join(dir, TLS_FILES.ca));
    pair(dir, TLS_FILES.serverCert, TLS_FILES.serverKey);
    pair(dir, TLS_FILES.clientCert, TLS_FILES.clientKey);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}
