// Processes with a stdin/stdout conversation, started inside namespaces by integration tests (one-shot
// commands go through the product's ExecRunner). Every process is killed by `killAll()` (call it in `finally`).
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

export const GUEST_APPS = new URL('../fixtures/guest-apps.mjs', import.meta.url).pathname;

/** A child process whose stdout lines can be awaited. */
export class Proc {
  readonly lines: string[] = [];
  private waiters: Array<() => void> = [];
  stderr = '';

  constructor(readonly child: ChildProcessWithoutNullStreams) {
    createInterface({ input: child.stdout }).on('line', (line) => {
      this.lines.push(line);
      for (const w of this.waiters.splice(0)) w();
    });
    child.stderr.on('data', (d) => {
      this.stderr += d;
    });
    child.on('close', () => {
      for (const w of this.waiters.splice(0)) w();
    });
  }

  send(line: string): void {
    this.child.stdin.write(`${line}\n`);
  }

  /** The first line (at index ≥ `from`) matching `test`; removes lines up to it. */
  async waitFor(test: (line: string) => boolean, timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.lines.findIndex(test);
      if (i >= 0) return this.lines.splice(0, i + 1).at(-1)!;
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`process exited (${this.child.exitCode}); stderr: ${this.stderr.trim()}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for a line; have ${JSON.stringify(this.lines)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
}

export class Procs {
  private readonly all: Proc[] = [];

  /** Start argv inside namespace `ns` (or here when ns is undefined). */
  start(ns: string | undefined, argv: readonly string[], env?: NodeJS.ProcessEnv): Proc {
    const full = ns === undefined ? [...argv] : ['ip', 'netns', 'exec', ns, ...argv];
    const child = spawn(full[0]!, full.slice(1), {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: env ?? process.env,
    });
    const p = new Proc(child);
    this.all.push(p);
    return p;
  }

  /** One of test/fixtures/guest-apps.mjs's programs, once it says "ready". */
  async app(ns: string, args: readonly string[]): Promise<Proc> {
    const p = this.start(ns, [process.execPath, GUEST_APPS, ...args]);
    await p.waitFor((l) => l === 'ready');
    return p;
  }

  async killAll(): Promise<void> {
    for (const p of this.all.reverse()) {
      const c = p.child;
      if (c.exitCode === null && c.signalCode === null) {
        const closed = new Promise((r) => c.once('close', r));
        c.kill('SIGTERM');
        const t = setTimeout(() => c.kill('SIGKILL'), 3000);
        await closed;
        clearTimeout(t);
      }
    }
  }
}
