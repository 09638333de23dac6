// Runs the lab's commands as argv (never a shell string), with a timeout so that a hung `ip` or a
// daemon that ignores signals cannot hang `lab down`. Implements the data plane's CommandRunner shape.
import { spawn } from 'node:child_process';
import type { CommandRunner, RunOptions, RunResult } from '../dataplane/types.ts';
import { OfflinkError } from '../errors.ts';

export interface LabRunOptions extends RunOptions {
  /** Kill the command after this many milliseconds (default 20 s). */
  timeoutMs?: number;
}

export class CommandFailed extends OfflinkError {
  readonly argv: readonly string[];
  readonly result: RunResult;
  constructor(argv: readonly string[], result: RunResult) {
    const why = result.stderr.trim().split('\n').pop() || `exit status ${result.exitCode}`;
    super('ERR_LAB_COMMAND', `${argv.join(' ')}: ${why}`);
    this.argv = argv;
    this.result = result;
  }
}

export class LabRunner implements CommandRunner {
  run(argv: readonly string[], options: LabRunOptions = {}): Promise<RunResult> {
    return new Promise((resolve, reject) => {
      const child = spawn(argv[0]!, argv.slice(1), {
        stdio: ['pipe', 'pipe', 'pipe'],
        signal: options.signal,
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => {
        stdout += d;
      });
      child.stderr.on('data', (d: Buffer) => {
        stderr += d;
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 20_000);
      child.on('error', (err) => {
        clearTimeout(timer);
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') {
          reject(new OfflinkError('ERR_LAB_MISSING_PACKAGE', `${argv[0]} not found: run scripts/bootstrap`));
        } else reject(err);
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        const result = { stdout, stderr, exitCode: code ?? (signal ? 128 : 1) };
        if (result.exitCode !== 0 && !options.allowFailure) reject(new CommandFailed(argv, result));
        else resolve(result);
      });
      child.stdin.on('error', () => {});
      child.stdin.end(options.input ?? '');
    });
  }
}
