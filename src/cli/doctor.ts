// `offlink doctor`: what this kernel offers the data plane — the kernel options that matter, which
// backends work (each tried in a throwaway network namespace) and which one `backend: auto` takes.
import type { Command } from 'commander';
import {
  BACKENDS,
  chooseBackend,
  NoBackendError,
  probeBackends,
  REQUIRED_OPTIONS,
} from '../dataplane/index.ts';
import { OfflinkError } from '../errors.ts';
import { ExecRunner } from '../system/runner.ts';

export function registerDoctor(program: Command): Command {
  return program
    .command('doctor')
    .description('check this kernel: data plane backends that work here, and the one "auto" picks (root)')
    .option('--json', 'print the findings as JSON')
    .action(async (opts: { json?: boolean }) => {
      if (process.getuid?.() !== 0)
        throw new OfflinkError(
          'ERR_NOT_ROOT',
          'doctor tries each backend in a network namespace: run it as root',
        );
      const result = await probeBackends({ runner: new ExecRunner() });
      let chosen: { backend: string; why: string } | { error: string };
      try {
        chosen = chooseBackend('auto', result);
      } catch (err) {
        if (!(err instanceof NoBackendError)) throw err;
        chosen = { error: err.message };
      }
      const out = (line: string) => process.stdout.write(`${line}\n`);
      if (opts.json) {
        out(JSON.stringify({ ...result, auto: chosen }, null, 2));
      } else {
        out(`kernel ${result.kernelRelease}`);
        if (result.kernelOptions) {
          for (const b of BACKENDS) {
            const opts = REQUIRED_OPTIONS[b].map((option) => `${option}=${result.kernelOptions![option]}`);
            out(`  ${b} needs: ${opts.join(' ')}`);
          }
        } else out('  (no /proc/config.gz: kernel options not shown)');
        for (const b of result.backends)
          out(`backend ${b.backend}: ${b.usable ? 'works' : `does not work: ${b.reason}`}`);
        out('backend' in chosen ? `auto: ${chosen.backend} (${chosen.why})` : `auto: none — ${chosen.error}`);
      }
      if (!('backend' in chosen)) process.exitCode = 2;
    });
}
