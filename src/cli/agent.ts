// `offlink agent --config FILE`: the host agent daemon, until SIGINT/SIGTERM; SIGHUP reloads keys and peers.
// `offlink agent check-config --config FILE`: validate a config without running anything.
// `offlink migrate NETWORK --to HOST [--procedure P]`: move a mobile network, showing its phases live;
//   exits non-zero when the migration fails.
// The agent's side of `offlink status` (`--agent URL`) is `showAgentStatus` below.
//
// Which agent and which key: `--agent URL` and `--key-file FILE` (or OFFLINK_CLUSTER_KEY as hex), or
// `--config FILE`, an agent config whose control address and cluster key are used.
import { readFileSync } from 'node:fs';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { MIN_CLUSTER_KEY_BYTES } from '../agent/auth.ts';
import { buildAgent } from '../agent/build.ts';
import { ControlClient, MigrationFailed } from '../agent/client.ts';
import { type AgentConfig, loadAgentConfig } from '../agent/config.ts';
import { systemClock } from '../clock.ts';
import { resolveBackend } from '../dataplane/index.ts';
import { OfflinkError } from '../errors.ts';
import { createLogger, flushLogger } from '../log.ts';
import {
  type AgentStatus,
  type MigrationEvent,
  type MigrationRecord,
  PROCEDURES,
  type Procedure,
  procedureNamed,
  unknownProcedureMessage,
} from '../migration/messages.ts';
import { type CommandRunner, ExecRunner, MissingCommandError } from '../system/runner.ts';
import { holdHangup, reloadOnHangup } from './reload.ts';

export interface AgentTarget {
  agent?: string;
  keyFile?: string;
  config?: string;
}

/**
 * Networks with DHCPv4 need Debian's dnsmasq (dnsmasq-base): say so before anything starts, instead of a
 * dnsmasq that fails to spawn on every activation.
 */
export async function checkDhcp4Server(config: AgentConfig, runner: CommandRunner): Promise<void> {
  const i = config.networks.findIndex((n) => n.dhcp4);
  if (i < 0) return;
  try {
    await runner.run(['dnsmasq', '--version']);
  } catch (err) {
    if (!(err instanceof MissingCommandError)) throw err;
    throw new OfflinkError(
      'ERR_MISSING_COMMAND',
      `networks[${i}].dhcp4 (${config.networks[i]!.name}): dnsmasq not found; install Debian's dnsmasq-base (the daemon package is not needed)`,
    );
  }
}

function agentConfigPath(opts: { config?: string }): string {
  if (!opts.config) throw new OfflinkError('ERR_USAGE', 'agent: --config FILE is required');
  return opts.config;
}

export function registerAgent(program: Command): void {
  const agent = program
    .command('agent')
    .description(
      'run the host agent: mobile networks, hypervisor driver, control API (until SIGINT/SIGTERM; SIGHUP reloads keys and peers)',
    )
    .option('-c, --config <file>', 'agent config (YAML, see examples/agent.yaml)')
    .action(async (opts: { config?: string }) => {
      const path = agentConfigPath(opts);
      const releaseHangup = holdHangup();
      const config = loadAgentConfig(path);
      const logger = createLogger('agent');
      const backend = await resolveBackend(config.dataplane.backend, { runner: new ExecRunner(), logger });
      await checkDhcp4Server(config, new ExecRunner());
      const running = buildAgent(config, { logger, clock: systemClock, backend });
      const stopping = new Promise<NodeJS.Signals>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await running.start();
      const stopReloading = reloadOnHangup(path, (p) => running.reload(loadAgentConfig(p)), logger);
      releaseHangup();
      const signal = await stopping;
      logger.info({ signal }, 'stopping');
      stopReloading();
      await running.stop();
      await flushLogger(logger); // the log is asynchronous: write what is queued before exiting
    });
  agent
    .command('check-config')
    .description(
      'validate an agent config (schema, addresses, keys and key files, peers); exit 1 if it is bad',
    )
    .option('-c, --config <file>', 'agent config (YAML)')
    .action((opts: { config?: string }, cmd: Command) => {
      const path = agentConfigPath({ ...cmd.parent?.opts(), ...opts });
      const c = loadAgentConfig(path);
      const networks = c.networks.map((n) => n.name).join(', ') || 'none';
      console.log(
        `${path}: ok — host ${c.host} on ${c.mobileRouter.uplink}, home agent ${c.mobileRouter.haAddress}, networks ${networks}, ${Object.keys(c.peers).length} peer${Object.keys(c.peers).length === 1 ? '' : 's'}, hypervisor ${c.hypervisor.driver}`,
      );
    });

  const migrate = program
    .command('migrate')
    .description('move a mobile network (its guests and its registration) to another host')
    .argument('<network>', 'network name')
    .requiredOption('--to <host>', 'destination host name (a peer of the source agent)')
    .addOption(procedureOption())
    .option('--json', 'print the migration record as JSON at the end');
  targetOptions(migrate).action(
    async (network: string, opts: AgentTarget & { to: string; procedure: Procedure; json?: boolean }) => {
      const client = clientFor(opts);
      const out = (line: string) => process.stdout.write(`${line}\n`);
      out(`migrating ${network} to ${opts.to} (${opts.procedure}) via ${client.baseUrl}`);
      let record: MigrationRecord;
      try {
        record = await client.migrate({ network, to: opts.to, procedure: opts.procedure }, (e) => {
          const line = formatEvent(e);
          if (line) out(line);
        });
      } catch (err) {
        if (err instanceof MigrationFailed && err.migration) {
          if (opts.json) out(JSON.stringify(err.migration, null, 2));
          const m = err.migration;
          throw new OfflinkError(
            'ERR_MIGRATION_FAILED',
            `migration ${m.id} failed${m.failedPhase ? ` in ${m.failedPhase}` : ''}: ${m.error}${m.recovery ? `\n  recovery: ${m.recovery}` : ''}`,
          );
        }
        throw err;
      }
      out(formatSummary(record));
      if (opts.json) out(JSON.stringify(record, null, 2));
    },
  );
}

/**
 * `--procedure`, for `migrate` and `lab run`. The help lists the current names; the former name "paper" is
 * still accepted and becomes break-before-make here, so the rest of the program only sees current names.
 */
export function procedureOption(): Option {
  return new Option('--procedure <p>', 'migration procedure')
    .choices(PROCEDURES)
    .argParser((name: string): Procedure => {
      const procedure = procedureNamed(name);
      if (procedure === undefined) throw new InvalidArgumentError(unknownProcedureMessage(name));
      return procedure;
    })
    .default('make-before-break');
}

/** Add --agent / --key-file / --config to a command. */
export function targetOptions(cmd: Command): Command {
  return cmd
    .option('--agent <url>', 'agent control API, e.g. http://[2001:db8:a::2]:7400')
    .option('--key-file <file>', 'cluster key file (hex); or set OFFLINK_CLUSTER_KEY')
    .option('--config <file>', 'take the agent URL and cluster key from this agent config');
}

export function clientFor(opts: AgentTarget): ControlClient {
  let url = opts.agent;
  let key: Buffer | undefined;
  if (opts.config) {
    const config = loadAgentConfig(opts.config);
    key = config.control.key;
    if (!url) {
      const { host, port } = config.control.listen;
      const reachable = host === '::' ? '::1' : host === '0.0.0.0' ? '127.0.0.1' : host;
      url = `http://${reachable.includes(':') ? `[${reachable}]` : reachable}:${port}`;
    }
  }
  if (opts.keyFile) key = readKey(opts.keyFile, `--key-file ${opts.keyFile}`);
  else if (!key && process.env['OFFLINK_CLUSTER_KEY'])
    key = parseKey(process.env['OFFLINK_CLUSTER_KEY'], 'OFFLINK_CLUSTER_KEY');
  if (!url) throw new OfflinkError('ERR_USAGE', 'give --agent URL (or --config FILE)');
  if (!key) throw new OfflinkError('ERR_USAGE', 'give --key-file FILE, OFFLINK_CLUSTER_KEY or --config FILE');
  return new ControlClient(url, { key, clock: systemClock });
}

function readKey(path: string, what: string): Buffer {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new OfflinkError('ERR_USAGE', `${what}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  return parseKey(text, what);
}

function parseKey(text: string, what: string): Buffer {
  const hex = text.replace(/\s+/g, '');
  if (!/^(?:[0-9a-fA-F]{2})+$/.test(hex) || hex.length < MIN_CLUSTER_KEY_BYTES * 2) {
    throw new OfflinkError('ERR_USAGE', `${what}: not a hex key of at least ${MIN_CLUSTER_KEY_BYTES} bytes`);
  }
  return Buffer.from(hex, 'hex');
}

function ms(v: number | undefined): string {
  return v === undefined ? '-' : `${v.toFixed(1)} ms`;
}

/** One progress line, or undefined for events that the summary covers. */
export function formatEvent(e: MigrationEvent): string | undefined {
  if (e.type !== 'phase') return undefined;
  const at = `[${e.elapsedMs.toFixed(1).padStart(8)} ms]`;
  const what =
    e.state === 'start' ? '...' : e.state === 'done' ? `done in ${ms(e.ms)}` : `FAILED after ${ms(e.ms)}`;
  return `${at} ${e.phase.padEnd(14)} ${what}${e.detail ? `  (${e.detail})` : ''}`;
}

export function formatSummary(r: MigrationRecord): string {
  const t = r.timings;
  const parts = [
    `prepare ${ms(t.prepareMs)}`,
    `hypervisor ${ms(t.hypervisorMs)}${t.downtimeMs === undefined ? '' : ` (guest stopped ${ms(t.downtimeMs)})`}`,
    ...(t.deregistrationMs === undefined ? [] : [`deregistration ${ms(t.deregistrationMs)}`]),
    `notification ${ms(t.notificationMs)}`,
    `BU→BA ${ms(t.buToBaMs)}`,
  ];
  return `migration ${r.id} ${r.outcome}: ${r.network} ${r.from} → ${r.to} in ${ms(t.totalMs)}\n  ${parts.join(', ')}`;
}

/** `offlink status --agent URL`: networks, then recent migrations. */
export async function showAgentStatus(opts: AgentTarget & { json?: boolean }): Promise<void> {
  const status = await clientFor(opts).status();
  process.stdout.write(opts.json ? `${JSON.stringify(status, null, 2)}\n` : formatAgentStatus(status));
}

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((cells) =>
    cells
      .map((cell, i) => cell.padEnd(widths[i]!))
      .join('  ')
      .trimEnd(),
  );
}

export function formatAgentStatus(s: AgentStatus): string {
  const lines = [`host ${s.host}${s.coa ? `, care-of address ${s.coa}` : ''}`, ''];
  lines.push(
    ...table(
      ['NETWORK', 'STATE', 'HOME ADDRESS', 'PREFIXES', 'SEQ', 'LIFETIME', 'GUESTS HERE', 'NOTE'],
      s.networks.map((n) => [
        n.name,
        n.state,
        n.homeAddress,
        n.prefixes.join(','),
        n.sequence === undefined ? '-' : String(n.sequence),
        n.lifetimeRemaining ? `${n.lifetimeRemaining}s` : '-',
        n.guests.map((g) => (g.state === 'running' ? g.name : `${g.name}(${g.state})`)).join(',') || '-',
        n.migrating ? `migrating ${n.migrating}` : (n.lastError ?? ''),
      ]),
    ),
  );
  if (s.migrations.length > 0) {
    lines.push('', 'recent migrations (newest first):');
    lines.push(
      ...table(
        [
          'ID',
          'NETWORK',
          'FROM',
          'TO',
          'PROCEDURE',
          'OUTCOME',
          'TOTAL',
          'HYPERVISOR',
          'NOTIFY',
          'BU→BA',
          'STARTED',
        ],
        s.migrations.map((m) => [
          m.id.slice(0, 8),
          m.network,
          m.from,
          m.to,
          m.procedure,
          m.outcome + (m.failedPhase ? ` (${m.failedPhase})` : ''),
          ms(m.timings.totalMs),
          ms(m.timings.hypervisorMs),
          ms(m.timings.notificationMs),
          ms(m.timings.buToBaMs),
          m.startedAt,
        ]),
      ),
    );
  }
  return `${lines.join('\n')}\n`;
}
