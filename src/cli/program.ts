// The `offlink` command's frame: name, version, help and error handling; the commands are registered by
// its two entry points — main.ts (a checkout: every command, the lab included) and production.ts (the
// installed package: no lab, so nothing of the lab is bundled into it).
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { OfflinkError } from '../errors.ts';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

export type Registration = (program: Command) => unknown;

export function buildProgram(commands: readonly Registration[]): Command {
  const program = new Command('offlink')
    .description(
      'Live migration of virtual machines between hosts on different IP subnets: NEMO Basic Support (RFC 3963) messages with RFC 4285 authentication over UDP port 4191.',
    )
    .version(pkg.version, '-V, --version', 'print the version')
    .showHelpAfterError()
    .exitOverride();
  for (const register of commands) register(program);
  return program;
}

/** Run `program` on `argv`; the exit code. An OfflinkError is one `offlink: …` line on stderr. */
export async function runProgram(program: Command, argv: readonly string[]): Promise<number> {
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
