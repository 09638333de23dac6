// The `offlink` command of the installed package (scripts/package bundles this file into
// /usr/lib/offlink/dist/offlink.mjs): the daemons, migrate, status and doctor; no lab, and nothing that
// installs anything.
import { registerAgent } from './agent.ts';
import { registerDoctor } from './doctor.ts';
import { registerHomeAgent } from './ha.ts';
import { buildProgram, runProgram } from './program.ts';
import { registerStatus } from './status.ts';

process.exitCode = await runProgram(
  buildProgram([registerHomeAgent, registerStatus, registerAgent, registerDoctor]),
  process.argv,
  // node runs the bundle itself: argv[1] is its path (import.meta.url names this source, see package.mjs)
  { entry: process.argv[1]! },
);
