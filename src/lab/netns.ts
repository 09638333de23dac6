// Lifecycle of the lab's namespaces and processes: preflight checks (root, Debian packages, a lab
// already running, leftovers of a crashed one), daemons started inside namespaces, and `lab down`,
// which removes every `ofl-*` namespace and every process in it whatever state the lab is in.
import { type ChildProcess, spawn } from 'node:child_process';
import {
  closeSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { delimiter, join } from 'node:path';
import { OfflinkError } from '../errors.ts';
import type { CommandRunner } from '../system/runner.ts';
import { killLibvirtIn } from './libvirt-hosts.ts';

/** Every namespace of the lab starts with this; nothing else on the machine should. */
export const LAB_PREFIX = 'ofl-';
/** Generated configs, keys, logs and the lab's state file. */
export const DEFAULT_STATE_DIR = '/run/offlink-lab';
/** The libvirt hosts' directories (`--guest libvirt`), under the state directory. */
export const LIBVIRT_DIR = 'libvirt';
/** A lab command (ip, tc, a daemon's stop) that has not finished by then is killed: `lab down` never hangs. */
export const LAB_COMMAND_TIMEOUT_MS = 20_000;

export class LabError extends OfflinkError {}

/** Commands the lab runs, with the Debian package that provides each. */
export const REQUIRED_COMMANDS = [
  { command: 'ip', pkg: 'iproute2' },
  { command: 'radvd', pkg: 'radvd' },
  { command: 'nft', pkg: 'nftables' },
  { command: 'sysctl', pkg: 'procps' },
] as const;

export interface LabState {
  /** The process that built the lab (`lab run`) or that left it up (`lab up`). */
  pid: number;
  mode: 'run' | 'up';
  topology: string;
  startedAt: string;
}

function findCommand(command: string): string | undefined {
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter), '/usr/sbin', '/sbin'];
  for (const dir of dirs) {
    try {
      if (dir && statSync(join(dir, command)).mode & 0o111) return join(dir, command);
    } catch {}
  }
  return undefined;
}

/** Whether process `pid` exists (EPERM: it does, as another user's). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Names of the lab's namespaces that exist now. */
export function labNamespaces(): string[] {
  try {
    return readdirSync('/run/netns')
      .filter((n) => n.startsWith(LAB_PREFIX))
      .sort();
  } catch {
    return [];
  }
}

export function readState(stateDir: string): LabState | undefined {
  try {
    return JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8')) as LabState;
  } catch {
    return undefined;
  }
}

export function writeState(stateDir: string, state: LabState): void {
  mkdirSync(stateDir, { recursive: true });
  writeFileSync(join(stateDir, 'state.json'), `${JSON.stringify(state, null, 2)}\n`);
}

/**
 * Checks before building: root, packages, and what is left of an earlier lab. A lab that is still
 * running (its process alive, or left up by `lab up`) is an error; leftovers of a crashed run are
 * removed and reported through `notice`.
 */
export async function preflight(
  runner: CommandRunner,
  stateDir: string,
  notice: (line: string) => void,
  /** What this lab needs beyond REQUIRED_COMMANDS (two home agents: etcd, BIRD). */
  extra: readonly { command: string; pkg: string }[] = [],
): Promise<void> {
  if (process.getuid?.() !== 0) {
    throw new LabError(
      'ERR_LAB_NOT_ROOT',
      'the lab needs root (it creates network namespaces): run it with sudo',
    );
  }
  for (const { command, pkg } of [...REQUIRED_COMMANDS, ...extra]) {
    if (!findCommand(command)) {
      throw new LabError(
        'ERR_LAB_MISSING_PACKAGE',
        `${command} not found (Debian package ${pkg}): run scripts/bootstrap`,
      );
    }
  }
  const state = readState(stateDir);
  if (state && state.pid !== process.pid && (state.mode === 'up' || pidAlive(state.pid))) {
    const how = state.mode === 'up' ? 'left up by `offlink lab up`' : `running as pid ${state.pid}`;
    throw new LabError(
      'ERR_LAB_BUSY',
      `a lab is already ${how} since ${state.startedAt}: remove it with \`offlink lab down\``,
    );
  }
  const leftovers = labNamespaces();
  if (leftovers.length > 0 || state) {
    await labDown(runner, stateDir, { killOwner: false });
    notice(`removed leftovers of an earlier lab: ${leftovers.join(', ') || 'state files'}`);
  }
}

/** PIDs of the processes inside a namespace. */
async function namespacePids(runner: CommandRunner, ns: string): Promise<number[]> {
  const r = await runner.run(['ip', 'netns', 'pids', ns], { allowFailure: true, timeoutMs: 5000 });
  return r.stdout
    .split('\n')
    .map((s) => Number(s.trim()))
    .filter((n) => Number.isInteger(n) && n > 0);
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {}
}

async function waitGone(pids: readonly number[], ms: number): Promise<number[]> {
  const end = Date.now() + ms;
  let alive = pids.filter(pidAlive);
  while (alive.length > 0 && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 50));
    alive = alive.filter(pidAlive);
  }
  return alive;
}

/**
 * Remove the lab whatever state it is in: stop the process that owns it (unless told not to), every
 * process inside an `ofl-*` namespace (TERM, then KILL; libvirtds and their QEMUs too), the namespaces,
 * and the state directory.
 * Returns the namespaces removed.
 */
export async function labDown(
  runner: CommandRunner,
  stateDir: string,
  options: { killOwner?: boolean } = {},
): Promise<string[]> {
  const state = readState(stateDir);
  if (options.killOwner !== false && state && state.pid !== process.pid && state.mode === 'run') {
    if (pidAlive(state.pid)) {
      signal(state.pid, 'SIGTERM');
      await waitGone([state.pid], 10_000);
    }
  }
  const namespaces = labNamespaces();
  const pids = (await Promise.all(namespaces.map((ns) => namespacePids(runner, ns)))).flat();
  for (const pid of pids) signal(pid, 'SIGTERM');
  for (const pid of await waitGone(pids, 3000)) signal(pid, 'SIGKILL');
  await waitGone(pids, 2000);
  for (const ns of namespaces) {
    await runner.run(['ip', 'netns', 'del', ns], { allowFailure: true, timeoutMs: 10_000 });
  }
  // libvirt guests: the libvirtds and their QEMUs ran in the hosts' namespaces and are gone with them;
  // this finds any that outlived a namespace's name (a process keeps its namespace), by their pid files.
  await killLibvirtIn(join(stateDir, LIBVIRT_DIR));
  rmSync(stateDir, { recursive: true, force: true });
  return namespaces;
}

export interface DaemonOptions {
  /** Log file for the daemon's stdout and stderr (appended). */
  logFile: string;
  env?: NodeJS.ProcessEnv;
  /** Keep the daemon running after this process exits (`lab up`). */
  detached?: boolean;
}

/**
 * Start a long-running process inside a namespace, exactly as a user would on a real machine
 * (`ip netns exec <ns> <argv>`); its output goes to a log file. `lab down` finds it by namespace.
 */
export function spawnInNamespace(ns: string, argv: readonly string[], options: DaemonOptions): ChildProcess {
  const fd = openSync(options.logFile, 'a');
  try {
    const child = spawn('ip', ['netns', 'exec', ns, ...argv], {
      stdio: ['ignore', fd, fd],
      env: options.env ?? process.env,
      detached: options.detached ?? false,
    });
    if (options.detached) child.unref();
    child.on('error', () => {});
    return child;
  } finally {
    closeSync(fd);
  }
}

/** Inode of a namespace's network namespace, to tell when a process has entered it. */
export function namespaceInode(ns: string): number {
  return statSync(`/run/netns/${ns}`).ino;
}

/** Resolve once `pid` runs inside namespace `ns` (after `ip netns exec` has switched). */
export async function waitInNamespace(pid: number, ns: string, timeoutMs = 5000): Promise<void> {
  const want = namespaceInode(ns);
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (statSync(`/proc/${pid}/ns/net`).ino === want) return;
    } catch {}
    if (Date.now() > end)
      throw new LabError('ERR_LAB_PROCESS', `process ${pid} did not enter namespace ${ns}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
