// Long-running child processes (radvd, `ip monitor`) behind a small interface so unit tests replace them,
// as CommandRunner does for one-shot commands. argv only, never a shell string.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Clock } from '../clock.ts';
import type { CommandRunner } from '../dataplane/types.ts';
import type { Logger } from '../log.ts';

export interface ProcessExit {
  code: number | null;
  signal: string | null;
}

export interface SpawnedProcess {
  readonly pid: number | undefined;
  kill(signal?: NodeJS.Signals): void;
  /** Settles when the process has exited (or failed to start: code null, signal null). */
  readonly exited: Promise<ProcessExit>;
}

export interface SpawnOptions {
  /** Called with each line the process writes on stdout. */
  onStdoutLine?: (line: string) => void;
  /** Called with each line the process writes on stderr. */
  onStderrLine?: (line: string) => void;
}

export interface ProcessSpawner {
  spawn(argv: readonly string[], options?: SpawnOptions): SpawnedProcess;
}

/** What a part that runs commands and long-running processes on the host (CoA tracking, guest link) needs. */
export interface HostComponents {
  runner: CommandRunner;
  spawner: ProcessSpawner;
  clock: Clock;
  logger: Logger;
}

/** Spawns real processes with node:child_process. */
export const nodeSpawner: ProcessSpawner = {
  spawn(argv, options = {}) {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines = (stream: NodeJS.ReadableStream, fn: ((line: string) => void) | undefined) => {
      if (fn) createInterface({ input: stream }).on('line', fn);
      else stream.resume();
    };
    lines(child.stdout, options.onStdoutLine);
    lines(child.stderr, options.onStderrLine);
    const exited = new Promise<ProcessExit>((resolve) => {
      child.once('error', () => resolve({ code: null, signal: null }));
      child.once('close', (code, signal) => resolve({ code, signal }));
    });
    return {
      pid: child.pid,
      kill: (signal = 'SIGTERM') => {
        if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      },
      exited,
    };
  },
};
