// Command runners (STYLE: tailscale's router runs every OS command through a runner that tests replace).
// Commands are argv arrays handed to the kernel's execve, never to a shell.
import { spawn } from 'node:child_process';
import { OfflinkError } from '../errors.ts';
import type { CommandRunner, RunOptions, RunResult } from './types.ts';

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

export interface RecordedCall {
  argv: readonly string[];
  input?: string;
}

/** Answers a command, or returns undefined to fall through to the next responder (default: success, no output). */
export type Responder = (
  argv: readonly string[],
  input: string | undefined,
) => Partial<RunResult> | undefined;

/** Fake runner for unit tests: records every call and answers from scripted responders. */
export class RecordingRunner implements CommandRunner {
  readonly calls: RecordedCall[] = [];
  private readonly responders: Responder[] = [];

  constructor(responder?: Responder) {
    if (responder) this.responders.push(responder);
  }

  /** Answer commands whose argv starts with `prefix` (or satisfies the predicate). Later answers win. */
  respond(
    match: readonly string[] | ((argv: readonly string[]) => boolean),
    result: Partial<RunResult>,
  ): this {
    const test =
      typeof match === 'function' ? match : (argv: readonly string[]) => match.every((a, i) => argv[i] === a);
    this.responders.unshift((argv) => (test(argv) ? result : undefined));
    return this;
  }

  async run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    this.calls.push(
      options.input === undefined ? { argv: [...argv] } : { argv: [...argv], input: options.input },
    );
    let answer: Partial<RunResult> | undefined;
    for (const r of this.responders) {
      answer = r(argv, options.input);
      if (answer) break;
    }
    const result = {
      stdout: answer?.stdout ?? '',
      stderr: answer?.stderr ?? '',
      exitCode: answer?.exitCode ?? 0,
    };
    if (result.exitCode !== 0 && !options.allowFailure)
      throw new CommandError(argv, result.exitCode, result.stderr);
    return result;
  }

  /** Every call as text: the argv line, then its input's lines indented by two spaces. */
  lines(): string[] {
    return this.calls.flatMap((c) => [
      c.argv.join(' '),
      ...(c.input === undefined
        ? []
        : c.input
            .split('\n')
            .filter((l) => l !== '')
            .map((l) => `  ${l}`)),
    ]);
  }

  clear(): void {
    this.calls.length = 0;
  }
}

export interface BatchFailure {
  /** 1-based line of the batch. */
  line: number;
  command: string;
  message: string;
}

/** Some lines of an `ip -batch` failed; `failures` names each with its message. */
export class IpBatchError extends OfflinkError {
  readonly failures: readonly BatchFailure[];
  constructor(failures: readonly BatchFailure[]) {
    const first = failures.slice(0, 3).map((f) => `${f.command}: ${f.message}`);
    super('ERR_IP_BATCH', `ip -batch: ${failures.length} command(s) failed: ${first.join('; ')}`);
    this.failures = failures;
  }
}

export interface IpBatchRunOptions {
  signal?: AbortSignal;
  /** How often to retry lines that failed for lack of kernel memory (see docs/dataplane.md). Default 12. */
  retries?: number;
  /** Injected for tests. */
  sleep?: (ms: number) => Promise<void>;
}

const transientError = /Cannot allocate memory|No buffer space available/;

/**
 * Many `ip` commands through one `ip -force -batch -` process (a spawned `ip` costs ~2 ms; 200,000 routes
 * in one batch take ~5 s). With `-force`, ip goes on after a failing line and reports each failure on
 * stderr as the error message followed by `Command failed -:<line>`; the exit status is then 1.
 *
 * Lines that fail with ENOMEM are retried after a pause: seg6 routes allocate per-CPU memory atomically,
 * and the kernel's atomic per-CPU pool runs dry during a burst until its background refill catches up.
 * A retried line runs after the lines that followed it, so a batch must not hold two lines about the
 * same object (the callers' diffs never do).
 */
export class IpBatch {
  private readonly lines: { args: readonly string[]; ignore?: RegExp }[] = [];

  /**
   * `globalArgs` go after `ip` (default `-6`); `prefix` before it, e.g. `['env', 'TC_BPF_MNT=…']` for
   * routes that load an eBPF object (docs/dataplane.md).
   */
  constructor(
    private readonly globalArgs: readonly string[] = ['-6'],
    private readonly prefix: readonly string[] = [],
  ) {}

  /** Add one command (argv after `ip`). `ignore`: error messages that mean the goal is already reached. */
  add(args: readonly string[], ignore?: RegExp): this {
    for (const a of args) {
      if (!/^[^\s"'\\#]+$/.test(a))
        throw new OfflinkError('ERR_COMMAND', `unsafe ip -batch argument ${JSON.stringify(a)}`);
    }
    this.lines.push(ignore ? { args, ignore } : { args });
    return this;
  }

  get size(): number {
    return this.lines.length;
  }

  /** The batch as text, one command a line. */
  text(): string {
    return this.lines.map((l) => `${l.args.join(' ')}\n`).join('');
  }

  async run(runner: CommandRunner, options: IpBatchRunOptions = {}): Promise<{ retried: number }> {
    const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
    let pending = this.lines;
    let retried = 0;
    for (let attempt = 0; pending.length > 0; attempt++) {
      const argv = [...this.prefix, 'ip', ...this.globalArgs, '-force', '-batch', '-'];
      const input = pending.map((l) => `${l.args.join(' ')}\n`).join('');
      const result = await runner.run(argv, {
        input,
        allowFailure: true,
        ...(options.signal ? { signal: options.signal } : {}),
      });
      if (result.exitCode === 0) break;
      const failures = parseBatchErrors(
        result.stderr,
        pending.map((l) => l.args.join(' ')),
      );
      if (result.exitCode !== 1 || failures.length === 0)
        throw new CommandError(argv, result.exitCode, result.stderr);
      const real = failures.filter((f) => !pending[f.line - 1]!.ignore?.test(f.message));
      const transient = real.filter((f) => transientError.test(f.message));
      if (transient.length < real.length || attempt >= (options.retries ?? 12)) throw new IpBatchError(real);
      pending = transient.map((f) => pending[f.line - 1]!);
      retried += pending.length;
      if (pending.length > 0) await sleep(Math.min(5 * 2 ** attempt, 500));
    }
    return { retried };
  }
}

/** Split `ip -force -batch` stderr into one failure per `Command failed -:<line>` marker. */
export function parseBatchErrors(stderr: string, commands: readonly string[]): BatchFailure[] {
  const failures: BatchFailure[] = [];
  let message: string[] = [];
  for (const text of stderr.split('\n')) {
    const m = /^Command failed .*:(\d+)$/.exec(text);
    if (m) {
      const line = Number(m[1]);
      failures.push({ line, command: commands[line - 1] ?? '?', message: message.join('; ') });
      message = [];
    } else if (text.trim() !== '') {
      message.push(text.trim());
    }
  }
  return failures;
}
