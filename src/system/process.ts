// Long-running child processes (radvd, `ip monitor`, `bridge monitor`) behind a small interface so unit
// tests replace them, as CommandRunner does for one-shot commands. argv only, never a shell string.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';

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

/**
 * util-linux's setpriv (essential on Debian) sets the parent-death signal before exec: a radvd or
 * `ip monitor` must not outlive an agent that was killed (-9) — a leftover radvd keeps advertising the
 * network's prefix from a host that is no longer active for it.
 */
const SETPRIV = '/usr/bin/setpriv';
const deathSignal = existsSync(SETPRIV) ? [SETPRIV, '--pdeathsig', 'TERM', '--'] : [];

/** Spawns real processes with node:child_process; they get SIGTERM if this process dies. */
export const nodeSpawner: ProcessSpawner = {
  spawn(argv, options = {}) {
    const full = [...deathSignal, ...argv];
    const child = spawn(full[0]!, full.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
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

/** A spawner whose processes run in network namespace `netns` (`ip netns exec`), as ExecRunner({ netns }). */
export function netnsSpawner(netns: string, inner: ProcessSpawner = nodeSpawner): ProcessSpawner {
  return { spawn: (argv, options) => inner.spawn(['ip', 'netns', 'exec', netns, ...argv], options) };
}
