// The QMP client's errors (qmp.ts): one base class, QEMU's own error class carried by QmpError.
import { OfflinkError } from '../../errors.ts';

/** Anything the QMP client throws on purpose. */
export class QmpClientError extends OfflinkError {}

/** QEMU answered a command with an error (`errorClass` is QEMU's, e.g. `GenericError`, `CommandNotFound`). */
export class QmpError extends QmpClientError {
  readonly command: string;
  readonly errorClass: string;
  readonly desc: string;
  constructor(command: string, errorClass: string, desc: string) {
    super('ERR_QMP_COMMAND', `QMP ${command}: ${errorClass}: ${desc}`);
    this.command = command;
    this.errorClass = errorClass;
    this.desc = desc;
  }
}

/** The connection ended (QEMU exited, the socket closed, or the peer broke the protocol). */
export class QmpDisconnectedError extends QmpClientError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_QMP_DISCONNECTED', message, options);
  }
}

/** The peer sent something that is not QMP (bad JSON, no greeting, a reply to nothing we asked). */
export class QmpProtocolError extends QmpClientError {
  constructor(message: string) {
    super('ERR_QMP_PROTOCOL', message);
  }
}

/** A call that the connection's state does not allow (execute before connect, connect twice). */
export class QmpStateError extends QmpClientError {
  constructor(message: string) {
    super('ERR_QMP_STATE', message);
  }
}
