// The lab's daemons, each its own process inside its namespace, started the way a user would start
// them on real machines (`offlink ha --config …`, `offlink agent --config …`), and `offlink migrate`
// run on the source host for each migration.
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AgentStatus, MigrationRecord } from '../migration/messages.ts';
import type { CommandRunner } from '../system/runner.ts';
import type { LabConfigs } from './configs.ts';
import { CONTROL_PORT, SIGNALING_PORT } from './configs.ts';
import { LabError, spawnInNamespace } from './netns.ts';
import type { HostPlan, Topology } from './topology.ts';

export const OFFLINK_BIN = fileURLToPath(new URL('../../bin/offlink.js', import.meta.url));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Poll `check` every 50 ms until it is true; else throw `what` after `timeoutMs`. */
export async function waitFor(
  check: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
  signal?: AbortSignal,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    signal?.throwIfAborted();
    if (await check()) return;
    if (Date.now() > end) throw new LabError('ERR_LAB_TIMEOUT', what);
    await sleep(50);
  }
}

async function listening(runner: CommandRunner, ns: string, proto: 'udp' | 'tcp', port: number) {
  const r = await runner.run(
    ['ip', 'netns', 'exec', ns, 'ss', '-Hln', proto === 'udp' ? '-u' : '-t', 'sport', '=', `:${port}`],
    { allowFailure: true },
  );
  return r.stdout.trim() !== '';
}

async function linkExists(runner: CommandRunner, ns: string, dev: string) {
  const r = await runner.run(['ip', '-n', ns, 'link', 'show', 'dev', dev], { allowFailure: true });
  return r.exitCode === 0;
}

export interface DaemonStartOptions {
  runner: CommandRunner;
  configs: LabConfigs;
  logDir: string;
  detached: boolean;
  signal?: AbortSignal;
}

/** Start `argv` (offlink's) in `ns`, its output to LOGDIR/NAME.log; a check that throws once it has exited. */
function startOfflink(
  ns: string,
  name: string,
  args: string[],
  options: DaemonStartOptions,
): { child: ChildProcess; alive: () => void } {
  const env = { ...process.env, OFFLINK_LOG_LEVEL: process.env['OFFLINK_LOG_LEVEL'] ?? 'info' };
  const logFile = join(options.logDir, `${name}.log`);
  const child = spawnInNamespace(ns, [process.execPath, OFFLINK_BIN, ...args], {
    logFile,
    env,
    detached: options.detached,
  });
  let exited: string | undefined;
  child.once('exit', (code, sig) => {
    exited = `${name} exited (${code ?? sig}); see ${logFile}`;
  });
  return {
    child,
    alive: () => {
      if (exited) throw new LabError('ERR_LAB_DAEMON', exited);
    },
  };
}

/**
 * `offlink ha --config CONFIG` in `ns` (log LOGDIR/NAME.log, appended: a restarted HA continues it);
 * resolves with its process (`ip netns exec` execs node: the pid is the HA's) once it listens.
 */
export async function startHomeAgent(
  ns: string,
  name: string,
  config: string,
  options: DaemonStartOptions,
): Promise<ChildProcess> {
  const { child, alive } = startOfflink(ns, name, ['ha', '--config', config], options);
  await waitFor(
    async () => {
      alive();
      return listening(options.runner, ns, 'udp', SIGNALING_PORT);
    },
    60_000,
    `the home agent (${ns}) did not listen on UDP ${SIGNALING_PORT} within 60 s; see ${options.logDir}/${name}.log`,
    options.signal,
  );
  return child;
}

/**
 * Start the home agent (both, with two), then both host agents (after `beforeAgents`); resolves when they
 * listen and every guest bridge exists, with the home agents' processes by name (`ha1`, `ha2`; one HA:
 * `ha1`). A daemon that exits early is reported with the last line of its log.
 */
export async function startDaemons(
  topo: Topology,
  options: DaemonStartOptions & { beforeAgents?: () => Promise<void> },
): Promise<Record<string, ChildProcess>> {
  const has: Record<string, ChildProcess> = {};
  if (topo.cluster && options.configs.cluster) {
    for (const m of topo.cluster.members)
      has[m.name] = await startHomeAgent(m.ns, m.file, options.configs.cluster[m.name], options);
  } else has['ha1'] = await startHomeAgent(topo.ha.ns, 'ha', options.configs.ha, options);
  await options.beforeAgents?.();
  for (const h of topo.hosts) {
    const { alive } = startOfflink(
      h.ns,
      `agent-${h.name}`,
      ['agent', '--config', options.configs.hosts[h.name]],
      options,
    );
    await waitFor(
      async () => {
        alive();
        if (!(await listening(options.runner, h.ns, 'tcp', CONTROL_PORT))) return false;
        for (const g of topo.guests) if (!(await linkExists(options.runner, h.ns, g.bridge))) return false;
        return true;
      },
      60_000,
      `the agent of ${h.name} did not come up within 60 s; see ${options.logDir}/agent-${h.name}.log`,
      options.signal,
    );
  }
  return has;
}

export interface MigrateResult {
  ok: boolean;
  error?: string;
  record?: MigrationRecord;
  /** Lines printed by `offlink migrate` (its live phases). */
  lines: string[];
}

/** `offlink migrate NETWORK --to HOST --json`, run on the source host with its agent config. */
export function runMigrate(
  source: HostPlan,
  network: string,
  to: string,
  procedure: string,
  configs: LabConfigs,
  onLine?: (line: string) => void,
): Promise<MigrateResult> {
  return new Promise((resolve) => {
    const child = spawn(
      'ip',
      [
        'netns',
        'exec',
        source.ns,
        process.execPath,
        OFFLINK_BIN,
        'migrate',
        network,
        '--to',
        to,
        '--procedure',
        procedure,
        '--config',
        configs.hosts[source.name],
        '--json',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, OFFLINK_LOG_LEVEL: 'warn' } },
    );
    let stdout = '';
    let stderr = '';
    let partial = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d;
      partial += d;
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) if (l.startsWith('[') || l.startsWith('migrat')) onLine?.(l);
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      const lines = stdout.split('\n');
      const at = lines.indexOf('{');
      let record: MigrationRecord | undefined;
      if (at >= 0) {
        try {
          record = JSON.parse(lines.slice(at).join('\n')) as MigrationRecord;
        } catch {}
      }
      const ok = code === 0 && record?.outcome === 'succeeded';
      const error = ok
        ? undefined
        : (stderr.trim().split('\n').filter(Boolean).pop() ??
          record?.error ??
          `offlink migrate exited ${code}`);
      resolve({
        ok,
        ...(error ? { error: error.replace(/^offlink: /, '') } : {}),
        ...(record ? { record } : {}),
        lines: lines.slice(0, at < 0 ? undefined : at),
      });
    });
  });
}

/** `offlink status --json` of a host's agent, run inside its namespace as a user would. */
export async function agentStatus(
  runner: CommandRunner,
  host: HostPlan,
  configs: LabConfigs,
): Promise<AgentStatus | undefined> {
  const r = await runner.run(
    [
      'ip',
      'netns',
      'exec',
      host.ns,
      process.execPath,
      OFFLINK_BIN,
      'status',
      '--config',
      configs.hosts[host.name],
      '--json',
    ],
    { allowFailure: true, timeoutMs: 15_000 },
  );
  if (r.exitCode !== 0) return undefined;
  try {
    return JSON.parse(r.stdout) as AgentStatus;
  } catch {
    return undefined;
  }
}

/** Wait until every network is active on `host` (registered with the home agent). */
export async function waitActive(
  runner: CommandRunner,
  host: HostPlan,
  configs: LabConfigs,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<void> {
  let last = 'no answer';
  await waitFor(
    async () => {
      const s = await agentStatus(runner, host, configs);
      if (!s) return false;
      last = s.networks
        .map((n) => `${n.name} ${n.state}${n.lastError ? ` (${n.lastError})` : ''}`)
        .join(', ');
      return s.networks.length > 0 && s.networks.every((n) => n.state === 'active');
    },
    timeoutMs,
    `the agent of ${host.name} did not become active within ${timeoutMs / 1000} s (${last})`,
    signal,
  );
}
