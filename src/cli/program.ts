// The `offlink` command's frame: name, version, help and error handling; the commands are registered by
// its two entry points — main.ts (a checkout: every command, the lab included) and production.ts (the
// installed package: no lab, so nothing of the lab is bundled into it).
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { OfflinkError } from '../errors.ts';
import { serveConfigLoad } from '../homeagent/configload.ts';

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

let entry: string | undefined;

/**
 * The script this process runs as the `offlink` command (bin/offlink.js, or the package's bundle), when
 * it is one: commands start worker threads on it (the home agent's config loader, configload.ts).
 * Undefined when the program runs inside something else (tests call `main` in-process).
 */
export function cliEntry(): string | undefined {
  return entry;
}

/**
 * Run `program` on `argv`; the exit code. An OfflinkError is one `offlink: …` line on stderr. `entry`:
 * the script running it (see `cliEntry`). In a worker thread started on that script, the worker's task
 * runs instead of the command line.
 */
export async function runProgram(
  program: Command,
  argv: readonly string[],
  options: { entry?: string } = {},
): Promise<number> {
  if (serveConfigLoad()) return 0;
  entry = options.entry;
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
