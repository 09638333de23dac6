// `offlink ha --config FILE`: the home agent daemon, until SIGINT/SIGTERM; SIGHUP reloads its config.
// `offlink ha check-config --config FILE`: validate a config without running anything.
// `offlink ha flush --config FILE`: remove every kernel object the home agent installed.
import type { Command } from 'commander';
import { systemClock } from '../clock.ts';
import { type Backend, createHomeAgentDataplane, probeBackends, resolveBackend } from '../dataplane/index.ts';
import type { HomeAgentDataplane } from '../dataplane/types.ts';
import { OfflinkError } from '../errors.ts';
import { TunAnycast } from '../homeagent/anycast.ts';
import { type HomeAgentConfig, loadHomeAgent, loadHomeAgentConfig } from '../homeagent/config.ts';
import { loadHomeAgentApart } from '../homeagent/configload.ts';
import { HomeAgent } from '../homeagent/daemon.ts';
import type { PrefixTable } from '../homeagent/prefixtable.ts';
import { createLogger, flushLogger, type Logger } from '../log.ts';
import { ExecRunner } from '../system/runner.ts';
import { collectGarbage } from './heap.ts';
import { cliEntry } from './program.ts';
import { holdHangup, reloadOnHangup } from './reload.ts';

function dataplaneFor(
  config: HomeAgentConfig,
  backend: Backend,
  logger: Logger,
  table?: PrefixTable,
): HomeAgentDataplane {
  const ha = config.homeAgent;
  return createHomeAgentDataplane(
    backend,
    { runner: new ExecRunner(), logger },
    {
      haAddress: ha.address,
      uplink: ha.uplink,
      table: ha.dataplane.table,
      mss: ha.dataplane.mss,
      runDir: ha.runDir,
      ...(table ? { tunnelled: table.destinations() } : {}),
    },
  );
}

/**
 * Not inline in the async action: a local of an async function stays reachable while it waits, and what
 * the config's loading left (the text: ~15 MB at 100k mobile routers) must be garbage once it is done.
 */
function buildHomeAgent(
  loaded: ReturnType<typeof loadHomeAgent>,
  backend: Backend,
  logger: Logger,
): { agent: HomeAgent; logger: Logger } {
  const { config, table } = loaded;
  const dataplane = dataplaneFor(config, backend, logger, table);
  const ha = config.homeAgent;
  const anycast = ha.anycast
    ? new TunAnycast({ device: ha.anycast.device, address: ha.address, runner: new ExecRunner() })
    : undefined;
  return {
    agent: new HomeAgent(
      { clock: systemClock, logger, dataplane, table, ...(anycast ? { anycast } : {}) },
      config,
    ),
    logger,
  };
}

function configPath(opts: { config?: string }): string {
  if (!opts.config) throw new OfflinkError('ERR_USAGE', 'ha: --config FILE is required');
  return opts.config;
}

export function registerHomeAgent(program: Command): Command {
  const ha = program
    .command('ha')
    .description('run the NEMO Basic Support home agent (until SIGINT/SIGTERM; SIGHUP reloads the config)')
    .option('-c, --config <file>', 'home agent config (YAML, see examples/ha.yaml)')
    .action(async (opts: { config?: string }) => {
      const path = configPath(opts);
      const releaseHangup = holdHangup();
      // in a worker thread: the YAML's parse never grows this thread's heap (configload.ts)
      const loaded = await loadHomeAgentApart(path, cliEntry());
      const logger = createLogger('ha');
      const backend = await resolveBackend(loaded.config.homeAgent.dataplane.backend, {
        runner: new ExecRunner(),
        logger,
      });
      const { agent } = buildHomeAgent(loaded, backend, logger);
      await agent.start();
      collectGarbage(); // the config's parse garbage (bench/profiles/ha-memory.md)
      const stopReloading = reloadOnHangup(
        path,
        async (p) => agent.reload(await loadHomeAgentApart(p, cliEntry())),
        logger,
      );
      releaseHangup();
      const signal = await new Promise<NodeJS.Signals>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      logger.info({ signal }, 'stopping');
      stopReloading();
      await agent.stop();
      await flushLogger(logger); // the log is asynchronous: write what is queued before exiting
    });
  ha.command('check-config')
    .description(
      'validate a home agent config (schema, addresses, prefixes, keys and key files); exit 1 if it is bad',
    )
    .option('-c, --config <file>', 'home agent config (YAML)')
    .action((opts: { config?: string }, cmd: Command) => {
      const path = configPath({ ...cmd.parent?.opts(), ...opts });
      const { config, table } = loadHomeAgent(path);
      const ha = config.homeAgent;
      console.log(
        `${path}: ok — home agent ${ha.address} on ${ha.uplink}, ${table.size} mobile router${table.size === 1 ? '' : 's'}, database ${ha.database}, data plane ${ha.dataplane.backend}`,
      );
    });
  ha.command('flush')
    .description('remove all kernel state (routes, rules, nftables) the home agent installed')
    .option('-c, --config <file>', 'home agent config (YAML)')
    .action(async (opts: { config?: string }, cmd: Command) => {
      const config = loadHomeAgentConfig(configPath({ ...cmd.parent?.opts(), ...opts }));
      const logger = createLogger('ha');
      // every backend this kernel runs: what is installed may come from another backend than auto picks now
      const probe = await probeBackends({ runner: new ExecRunner() });
      for (const b of probe.backends.filter((p) => p.usable))
        await dataplaneFor(config, b.backend, logger).flush();
      logger.info({ address: config.homeAgent.address }, 'home agent kernel state flushed');
    });
  return ha;
}
