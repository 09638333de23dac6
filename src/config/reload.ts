// The one refusal both daemons give a reload that asks for what only a restart can do.
import { OfflinkError } from '../errors.ts';

/** Throws ERR_RELOAD naming `changed` (settings only a restart applies); returns when there are none. */
export function refuseRestartOnly(changed: readonly string[]): void {
  if (changed.length === 0) return;
  throw new OfflinkError(
    'ERR_RELOAD',
    `reload refused: ${changed.join(', ')} changed, which only a restart applies; still running on the previous config`,
  );
}
