#!/usr/bin/env node
// The `offlink` command. Sources are TypeScript run through tsx's loader, so there is no build step; the
// two daemons (`offlink ha`, `offlink agent`) run a cached esbuild build of the same sources instead, made
// on first start and whenever a source changed (bin/compiled.js: tsx's loader thread costs a daemon
// ~40 MiB of RSS for its whole life). OFFLINK_TSX=1 runs them through tsx too.
import { fileURLToPath } from 'node:url';

const DAEMONS = ['ha', 'agent'];
const compiled =
  DAEMONS.includes(process.argv[2]) && process.env.OFFLINK_TSX !== '1'
    ? await (await import('./compiled.js')).compiledCli()
    : undefined;
let main;
if (compiled) ({ main } = await import(compiled));
else {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('../src/cli/main.ts'));
}
// this script is the command: worker threads of the CLI start on it too (src/cli/program.ts, cliEntry)
process.exitCode = await main(process.argv, { entry: fileURLToPath(import.meta.url) });
