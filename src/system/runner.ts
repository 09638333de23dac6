// Command runners (STYLE: tailscale's router runs every OS command through a runner that tests replace).
// Commands are argv arrays handed to the kernel's execve, never to a shell.
import { spawn } from 'node:child_process';
import { OfflinkError } from '../errors.ts';

/** Runs one command given as argv (never a shell string). Tests replace it with a recording fake. */
export interface CommandRunner {
  run(argv: readonly string[], options?: RunOptions): Promise<RunResult>;
}
export interface RunOptions {
  /** Written to the command's standard input (e.g. `nft -f -`, `ip -batch -`). */
  input?: string;
  signal?: AbortSignal;
  /** Do not throw on a non-zero exit status; return it. */
  allowFailure?: boolean;
  /** Kill the command (SIGKILL) after this many milliseconds; the runner's default otherwise. */
  timeoutMs?: number;
}
export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** A command exited non-zero (or could not start). */
export class CommandError extends OfflinkError {
  readonly argv: readonly string[];
  readonly exitCode: number;
  readonly stderr: string;
  constructor(argv: readonly string[], exitCode: number, stderr: string, options?: { cause?: unknown }) {
    super(
      'ERR_COMMAND',
      `${argv.join(' ')}: exit ${exitCode}: ${stderr.trim().split('\n').slice(0, 5).join('; ')}`,
      options,
    );
    this.argv = argv;
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

export interface ExecRunnerOptions {
  /** Run every command inside this network namespace (`ip netns exec <netns> …`). */
  netns?: string;
  /**
   * Kill a command that has not finished after this many milliseconds (a hung `ip` must not hang a
   * daemon or `lab down`). Default 60 s; RunOptions.timeoutMs overrides it per command.
   */
  timeoutMs?: number;
}

/** A command that is not installed (`spawn` ENOENT). */
export class MissingCommandError extends OfflinkError {
  constructor(command: string) {
    super('ERR_MISSING_COMMAND', `${command} not found: install it (scripts/bootstrap names the package)`);
  }
}

/** Runs commands with `child_process.spawn` (no shell): the one runner of one-shot commands. */
export class ExecRunner implements CommandRunner {
  private readonly prefix: readonly string[];
  private readonly timeoutMs: number;

  constructor(options: ExecRunnerOptions = {}) {
    this.prefix = options.netns ? ['ip', 'netns', 'exec', options.netns] : [];
    this.timeoutMs = options.timeoutMs ?? 60_000;
  }

  run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const full = [...this.prefix, ...argv];
    return new Promise((resolve, reject) => {
      const child = spawn(full[0]!, full.slice(1), {
        stdio: ['pipe', 'pipe', 'pipe'],
        ...(options.signal ? { signal: options.signal } : {}),
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (d: Buffer) => out.push(d));
      child.stderr.on('data', (d: Buffer) => err.push(d));
      child.stdin.on('error', () => {}); // the command may exit before reading all of its input
      const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? this.timeoutMs);
      child.on('error', (e) => {
        clearTimeout(timer);
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') reject(new MissingCommandError(full[0]!));
        else reject(new CommandError(argv, -1, e.message, { cause: e }));
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        const result = {
          stdout: Buffer.concat(out).toString(),
          stderr: Buffer.concat(err).toString(),
          exitCode: code ?? (signal ? 128 : -1),
        };
        if (result.exitCode !== 0 && !options.allowFailure)
          reject(new CommandError(argv, result.exitCode, result.stderr));
        else resolve(result);
      });
      child.stdin.end(options.input ?? '');
    });
  }
}
