// One full garbage collection, for a daemon that has just finished a large start-up.
//
// Why: V8 gives memory back to the system only after a full GC finds it free, and it runs those rarely
// while the process is busy. A home agent with 100,000 mobile routers configured parses ~15 MB of YAML at
// start (the heap peaks at several hundred MB of short-lived objects) and then serves BUs at once: V8
// keeps the grown heap, ~700 MB of RSS for ~100 MB of live data (bench/profiles/ha-memory.md). One GC
// right after start-up returns it. Node exposes `gc` only with --expose-gc; setting that flag at run time
// and taking the function from a fresh context is the documented way to get it without the flag.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}
