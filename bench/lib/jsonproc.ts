// A helper process spoken to in JSON lines: `{id, op, ...}` in, `{id, result | error}` out.
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

export class JsonProc {
  readonly child: ChildProcess;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  readonly ready: Promise<void>;
  stderr = '';

  constructor(argv: readonly string[], options: { cwd?: string } = {}) {
    this.child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], ...options });
    this.child.stderr!.on('data', (d) => {
      this.stderr = (this.stderr + d).slice(-20_000);
    });
    this.ready = new Promise((resolve, reject) => {
      this.child.once('exit', (code) => {
        const err = new Error(`${argv.join(' ')} exited (${code}): ${this.stderr.trim()}`);
        reject(err);
        for (const p of this.pending.values()) p.reject(err);
        this.pending.clear();
      });
      createInterface({ input: this.child.stdout! }).on('line', (line) => {
        let msg: { id?: number; ready?: boolean; result?: unknown; error?: string };
        try {
          msg = JSON.parse(line);
        } catch {
          return;
        }
        if (msg.ready) resolve();
        if (msg.id === undefined) return;
        const p = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        if (msg.error) p?.reject(new Error(msg.error));
        else p?.resolve(msg.result);
      });
    });
    this.ready.catch(() => {});
  }

  async call<T>(op: string, arg: Record<string, unknown> = {}): Promise<T> {
    await this.ready;
    const id = ++this.nextId;
    const answer = new Promise<unknown>((resolve, reject) => this.pending.set(id, { resolve, reject }));
    this.child.stdin!.write(`${JSON.stringify({ id, op, ...arg })}\n`);
    return (await answer) as T;
  }

  async close(): Promise<void> {
    const c = this.child;
    if (c.exitCode !== null || c.signalCode !== null) return;
    const closed = new Promise((r) => c.once('exit', r));
    c.stdin!.end();
    const t = setTimeout(() => c.kill('SIGKILL'), 3000);
    await closed;
    clearTimeout(t);
  }
}
