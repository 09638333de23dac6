// The migration stream's TLS in QEMU (qemu docs/system/tls.rst, qapi/migration.json): a tls-creds-x509
// object reading the certificate directory (src/hypervisor/tls.ts), named by the `tls-creds` migration
// parameter on both ends. The destination is the TLS server and, with verify-peer, asks the source for
// its client certificate; the source, the TLS client, checks the destination's server certificate
// against the address in the migration URI (its care-of address: an IP subjectAltName).
import type { QmpClient } from './qmp.ts';
import { QmpError } from './qmp-errors.ts';

/** The object's id in every QEMU the driver runs. */
export const TLS_CREDS_ID = 'offlink-migration-tls';

/**
 * (Re)create the credentials object: QEMU reads the files at object-add and checks its own certificate
 * against its own CA there, so a fresh object per migration picks up renewed certificates.
 */
export async function addTlsCreds(qmp: QmpClient, dir: string, endpoint: 'server' | 'client'): Promise<void> {
  await qmp.execute('object-del', { id: TLS_CREDS_ID }).catch((err: unknown) => {
    if (!(err instanceof QmpError)) throw err; // none yet
  });
  try {
    await qmp.execute('object-add', {
      'qom-type': 'tls-creds-x509',
      id: TLS_CREDS_ID,
      dir,
      endpoint,
      'verify-peer': true,
    });
  } catch (err) {
    if (err instanceof QmpError) throw new Error(`TLS certificates in ${dir}: ${err.desc}`);
    throw err;
  }
}
