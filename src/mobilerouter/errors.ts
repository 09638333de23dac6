// Errors a mobile router reports (STYLE: one base class, a literal `code`).
import { OfflinkError } from '../errors.ts';
import { baStatusName } from '../protocol/constants.ts';

/** The home agent refused the registration: `status` is the BA status, `statusName` its RFC name. */
export class RegistrationRejectedError extends OfflinkError {
  override readonly code = 'ERR_BA_REJECTED' as const;
  readonly status: number;
  readonly statusName: string;
  constructor(network: string, status: number, detail?: string) {
    const name = baStatusName(status);
    super(
      'ERR_BA_REJECTED',
      `${network}: home agent rejected the registration: ${name} (${status})${detail ? `, ${detail}` : ''}`,
    );
    this.status = status;
    this.statusName = name;
  }
}

/** A registration that was waited for will not complete (standby, deregister, stop, abort, install failure). */
export class RegistrationAbandonedError extends OfflinkError {
  constructor(
    code: 'ERR_MR_STANDBY' | 'ERR_MR_STOPPED' | 'ERR_MR_ABORTED' | 'ERR_MR_DATAPLANE' | 'ERR_MR_BUSY',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}
