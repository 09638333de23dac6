/**
 * The one error base of offlink (STYLE: undici / js-libp2p): every error the project throws on purpose
 * is an OfflinkError with a literal `code`, so callers branch on `code`, never on message text.
 * This file imports nothing and sits below every layer, protocol/ included.
 */
export class OfflinkError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** Bad configuration: `path` names the key (e.g. `mobileRouters[2].key`), `message` the problem. */
export class ConfigError extends OfflinkError {
  readonly path: string;
  constructor(path: string, message: string) {
    super('ERR_CONFIG', path ? `${path}: ${message}` : message);
    this.path = path;
  }
}
