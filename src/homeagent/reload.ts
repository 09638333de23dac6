// What `offlink ha` may change on SIGHUP without a restart, and what it must refuse.
//
// A reload swaps the prefix table (the mobile routers: home addresses, prefixes, SPIs and keys) and the
// binding policy (lifetimes, replay window, retain-on-stop). Every binding the new table still authorizes
// stays exactly as it is (same id, CoA, expiry; no data plane change, no re-registration); a binding it
// no longer authorizes (its MR removed, or a prefix taken away) is removed as an expiry would remove it.
// Everything else — addresses, sockets, database, data plane, run directory, status endpoint — is fixed
// for the life of the process: a change there is refused with the names of the settings, and the daemon
// keeps running on the config it has.
import { isDeepStrictEqual } from 'node:util';
import { refuseRestartOnly } from '../config/reload.ts';
import type { HomeAgentConfig } from './config.ts';

type Settings = HomeAgentConfig['homeAgent'];

/** The settings a reload applies. */
export const RELOADABLE_SETTINGS = [
  'maxLifetimeSeconds',
  'refreshAdviceSeconds',
  'replayWindowSeconds',
  'retainOnStop',
] as const satisfies readonly (keyof Settings)[];

/** The settings that differ between `running` and `next` and that only a restart can change. */
export function restartOnlyChanges(running: Settings, next: Settings): string[] {
  const reloadable = new Set<string>(RELOADABLE_SETTINGS);
  const keys = new Set([...Object.keys(running), ...Object.keys(next)]) as Set<keyof Settings>;
  return [...keys]
    .filter((k) => !reloadable.has(k) && !isDeepStrictEqual(running[k], next[k]))
    .map((k) => `homeAgent.${k}`)
    .sort();
}

/** Throws ERR_RELOAD naming what needs a restart; returns when `next` can be applied by a reload. */
export function checkReloadable(running: Settings, next: Settings): void {
  refuseRestartOnly(restartOnlyChanges(running, next));
}

/** What a reload did. */
export interface ReloadResult {
  mobileRouters: number;
  /** Bindings the new config no longer authorizes, removed. */
  removed: number;
  /** Bindings left untouched. */
  kept: number;
}
