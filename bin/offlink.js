#!/usr/bin/env -S node --max-semi-space-size=4
// --max-semi-space-size=4 (MiB): V8's young generation otherwise grows to 3 x 16 MiB, which the daemons
// keep resident; with it an agent holding 50 networks stays at ~100-120 MiB instead of ~130-150
// (bench/profiles/ha-memory.md). V8 reads it only at start-up, so it is here, not set at run time.
// The `offlink` command. Sources are TypeScript run through tsx's loader, so there is no build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv);
