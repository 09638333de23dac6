// SIGHUP for the daemons: read the config file again and hand it to the daemon's reload, one at a time.
// A bad file or a refused change is logged and leaves the daemon on the config it runs; Node's default
// for SIGHUP (exit) never applies, not even while the daemon is starting (`holdHangup`).
import type { Logger } from '../log.ts';

/** Ignore SIGHUP until `reloadOnHangup` takes over (a daemon that is still starting has nothing to reload). */
export function holdHangup(): () => void {
  const ignore = () => {};
  process.on('SIGHUP', ignore);
  return () => process.off('SIGHUP', ignore);
}

/** On SIGHUP, `reload(path)`; logs 'config reloaded' with what it returns, or 'config not reloaded'. */
export function reloadOnHangup(
  path: string,
  reload: (path: string) => Promise<object> | object,
  logger: Logger,
): () => void {
  let reloading = Promise.resolve();
  const onHangup = () => {
    reloading = reloading.then(async () => {
      try {
        logger.info({ config: path, ...(await reload(path)) }, 'config reloaded');
      } catch (err) {
        logger.error({ err, config: path }, 'config not reloaded');
      }
    });
  };
  process.on('SIGHUP', onHangup);
  return () => process.off('SIGHUP', onHangup);
}
