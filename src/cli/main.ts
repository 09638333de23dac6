// The `offlink` command (docs/architecture.md). Each subcommand lives in its own file and is registered here.
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { OfflinkError } from '../errors.ts';
import { registerAgent } from './agent.ts';
import { registerDoctor } from './doctor.ts';
import { registerHomeAgent } from './ha.ts';
import { registerLab } from './lab.ts';
import { registerStatus } from './status.ts';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

export function buildProgram(): Command {
  const program = new Command('offlink')
    .description(
      'Live migration of virtual machines between hosts on different IP subnets, on NEMO Basic Support (RFC 3963).',
    )
    .version(pkg.version, '-V, --version', 'print the version')
    .showHelpAfterError()
    .exitOverride();

  registerLab(program);
  registerHomeAgent(program);
  registerStatus(program);
  registerAgent(program);
  registerDoctor(program);
  return program;
}

export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv as string[]);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    if (err instanceof OfflinkError) {
      process.stderr.write(`offlink: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}
