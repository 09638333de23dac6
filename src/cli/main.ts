// The `offlink` command of a checkout (docs/architecture.md): every command, the lab included. Each
// subcommand lives in its own file; program.ts is the frame. The installed package runs production.ts.
import { registerAgent } from './agent.ts';
import { registerDoctor } from './doctor.ts';
import { registerHomeAgent } from './ha.ts';
import { registerLab } from './lab.ts';
import { buildProgram, runProgram } from './program.ts';
import { registerStatus } from './status.ts';

export const COMMANDS = [registerLab, registerHomeAgent, registerStatus, registerAgent, registerDoctor];

/** `entry`: the script running this, when it is the command itself (bin/offlink.js): see `cliEntry`. */
export function main(argv: readonly string[], options: { entry?: string } = {}): Promise<number> {
  return runProgram(buildProgram(COMMANDS), argv, options);
}
