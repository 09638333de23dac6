// `offlink status`: what a running daemon holds. `--ha URL` prints the home agent's binding cache as a
// table, like UMIP's `bc` view. (The host agent's view, `--agent URL`, belongs to the agent.)
import type { Command } from 'commander';
import { OfflinkError } from '../errors.ts';
import type { HomeAgentStatus } from '../homeagent/daemon.ts';
import { type AgentTarget, showAgentStatus, targetOptions } from './agent.ts';

export function registerStatus(program: Command): Command {
  const status = program
    .command('status')
    .description('show the state of a running daemon')
    .option('--ha <url>', 'home agent status endpoint, e.g. http://127.0.0.1:9180')
    .option('--json', 'print the raw JSON');
  return targetOptions(status).action(async (opts: AgentTarget & { ha?: string; json?: boolean }) => {
    if (!opts.ha && (opts.agent || opts.config)) return showAgentStatus(opts);
    if (!opts.ha) throw new OfflinkError('ERR_USAGE', 'status: give --ha URL or --agent URL');
    const status = await fetchHomeAgentStatus(opts.ha);
    process.stdout.write(opts.json ? `${JSON.stringify(status, null, 2)}\n` : formatBindingCache(status));
  });
}

export async function fetchHomeAgentStatus(url: string, signal?: AbortSignal): Promise<HomeAgentStatus> {
  const base = url.replace(/\/+$/, '').replace(/\/status$/, '');
  let res: Response;
  try {
    res = await fetch(`${base}/status`, { signal: signal ?? AbortSignal.timeout(5000) });
  } catch (err) {
    throw new OfflinkError('ERR_STATUS', `cannot reach ${base}/status: ${(err as Error).cause ?? err}`);
  }
  if (!res.ok) throw new OfflinkError('ERR_STATUS', `${base}/status: HTTP ${res.status}`);
  return (await res.json()) as HomeAgentStatus;
}

/** Rows as aligned text columns, header first. */
function table(header: readonly string[], rows: readonly string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => cell.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)];
}

/**
 * The binding cache as an aligned text table, one binding a line, then a count; in a cluster, the members
 * first and which HA last served each binding.
 */
export function formatBindingCache(status: HomeAgentStatus): string {
  const cluster = status.cluster;
  const header = [
    'HOME ADDRESS',
    'CARE-OF ADDRESS',
    'PREFIXES',
    'SEQ',
    'LIFETIME',
    'LEFT',
    'MODE',
    'ID',
    'MR',
  ];
  const rows = status.bindings.map((b) => [
    b.hoa,
    b.coa,
    b.prefixes.join(','),
    String(b.sequence),
    `${b.lifetimeSeconds}s`,
    `${b.remainingSeconds}s`,
    b.mode,
    String(b.id),
    b.mobileRouter ?? '-',
    ...(cluster ? [b.servedBy ?? '-'] : []),
  ]);
  const n = status.bindings.length;
  const out = [
    ...(cluster ? formatCluster(cluster) : []),
    ...table(cluster ? [...header, 'SERVED BY'] : header, rows),
    `${n} binding${n === 1 ? '' : 's'} at home agent ${status.haAddress}${cluster ? ` (${cluster.name})` : ''}`,
  ];
  return `${out.join('\n')}\n`;
}

function formatCluster(cluster: NonNullable<HomeAgentStatus['cluster']>): string[] {
  const rows = cluster.members.map((m) => [
    m.name,
    m.serving ? 'serving' : 'not serving',
    m.expiryOwner ? 'yes' : '-',
    typeof m['address'] === 'string' ? m['address'] : '-',
    new Date(m.since).toISOString(),
  ]);
  const self = `this HA: ${cluster.name}, etcd ${cluster.etcd}${cluster.expiryOwner ? ', expiry owner' : ''}`;
  return [
    `cluster (${cluster.members.length} member${cluster.members.length === 1 ? '' : 's'}; ${self})`,
    ...table(['MEMBER', 'HEALTH', 'EXPIRY', 'ADDRESS', 'SINCE'], rows),
    '',
  ];
}
