// Starting offlink's daemons for a benchmark: `node [flags] bin/offlink.js <args>` inside a namespace,
// stderr (the JSON log) into a file, so a chatty daemon never blocks on a pipe we are slow to read. The
// node flags the `offlink` wrapper gives the subcommand are applied, as when a user runs `./offlink agent`.
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_DIR } from './results.ts';

export interface Daemon {
  child: ChildProcess;
  pid: number;
  log: string;
  /** Wall ms from spawn until the ready line appeared. */
  startMs: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The node flags the `offlink` wrapper (the repo's entry point) gives a subcommand: read from its
 * `if [ "${1:-}" = agent ]; then flags=(…); fi` blocks, so a daemon runs here as `./offlink agent …` runs
 * it. A block also conditioned on a variable (`&& [ "${OFFLINK_HA_LOW_MEMORY:-}" = 1 ]`) applies when
 * this process has that variable set to 1, as the wrapper would see it.
 */
export function launcherFlags(subcommand: string, env: NodeJS.ProcessEnv = process.env): string[] {
  return launcherList(subcommand, 'flags', env);
}

/** The environment the wrapper adds for a subcommand (`env=(NAME=value …)` in the same block). */
export function launcherEnv(
  subcommand: string,
  env: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  return Object.fromEntries(
    launcherList(subcommand, 'env', env).map((kv) => [
      kv.slice(0, kv.indexOf('=')),
      kv.slice(kv.indexOf('=') + 1),
    ]),
  );
}

const BLOCK = /^if \[ "\$\{1:-\}" = (\w+) \](?: && \[ "\$\{(\w+):-\}" = 1 \])?; then([\s\S]*?)\bfi$/gm;

function launcherList(subcommand: string, name: 'flags' | 'env', env: NodeJS.ProcessEnv): string[] {
  const text = readFileSync(join(REPO_DIR, 'offlink'), 'utf8');
  let found: string[] = [];
  // Later blocks override earlier ones, as the wrapper's assignments do.
  for (const m of text.matchAll(BLOCK)) {
    if (m[1] !== subcommand || (m[2] !== undefined && env[m[2]] !== '1')) continue;
    const list = new RegExp(`\\b${name}=\\(([^)]*)\\)`).exec(m[3]!)?.[1];
    if (list !== undefined) found = list.split(/\s+/).filter((f) => f !== '');
  }
  return found;
}

export async function startDaemon(
  ns: string,
  args: readonly string[],
  o: {
    log: string;
    ready: string;
    nodeFlags?: readonly string[];
    env?: NodeJS.ProcessEnv;
    timeoutMs?: number;
  },
): Promise<Daemon> {
  const fd = openSync(o.log, 'w');
  const t0 = performance.now();
  const child = spawn(
    'ip',
    [
      'netns',
      'exec',
      ns,
      process.execPath,
      ...launcherFlags(args[0] ?? ''),
      ...(o.nodeFlags ?? []),
      join(REPO_DIR, 'bin/offlink.js'),
      ...args,
    ],
    { stdio: ['ignore', fd, fd], env: { ...(o.env ?? process.env), ...launcherEnv(args[0] ?? '') } },
  );
  closeSync(fd);
  const deadline = Date.now() + (o.timeoutMs ?? 120_000);
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`${args[0]} exited (${child.exitCode ?? child.signalCode}):\n${tail(o.log)}`);
    if (readFileSync(o.log, 'utf8').includes(o.ready)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${args[0]} did not log "${o.ready}":\n${tail(o.log)}`);
    }
    await sleep(100);
  }
  // `ip netns exec` execs the program: the pid is node's.
  return { child, pid: child.pid!, log: o.log, startMs: performance.now() - t0 };
}

export function tail(path: string, lines = 15): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
export async function stopDaemon(d: Daemon | undefined, graceMs = 60_000): Promise<void> {
  if (!d) return;
  const c = d.child;
  if (c.exitCode !== null || c.signalCode !== null) return;
  const closed = new Promise((r) => c.once('exit', r));
  c.kill('SIGTERM');
  const t = setTimeout(() => c.kill('SIGKILL'), graceMs);
  await closed;
  clearTimeout(t);
}
