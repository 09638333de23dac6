// Commit latency per batch of refreshes (issue 16): the SQLite store (synchronous=FULL) beside the etcd
// store on a 3-member etcd cluster on loopback (Debian's etcd-server, started here with --max-txn-ops 4096).
// Commits run one after another, as the daemon's queue runs them, so batch / latency is the BU/s a store
// can commit at that batch size.
//
//   node --import tsx bench/ha/etcd-commit.ts [--batches 200]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Binding } from '../../src/homeagent/bcache.ts';
import { EtcdBindingStore } from '../../src/homeagent/etcdstore.ts';
import { BindingStore, type BindingStoreLike } from '../../src/homeagent/store.ts';
import { ntpTimestamp } from '../../src/protocol/auth.ts';
import { EtcdCluster } from '../../test/helpers/etcd.ts';
import { numArg, parseArgs } from '../lib/results.ts';

const args = parseArgs(process.argv.slice(2));
const BATCHES = numArg(args, 'batches', 200);
const SIZES = [1, 16, 64, 256];
const MRS = 1000;

function binding(i: number, round: number): Binding {
  return {
    hoa: `2001:db8:ffff::${(0x1000 + i).toString(16)}`,
    coa: `2001:db8:a::${(i % 200) + 2}`,
    prefixes: [`2001:db8:${(0x1000 + i).toString(16)}::/64`],
    sequence: round + 1,
    lifetimeSeconds: 400,
    expiresAt: Date.now() + 400_000,
    mode: 'explicit',
    lastTimestamp: ntpTimestamp(Date.now() + round),
    id: i + 1,
    registeredAt: Date.now(),
    updatedAt: Date.now(),
  };
}

const q = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;

async function measure(name: string, store: BindingStoreLike): Promise<void> {
  await store.load();
  let round = 0;
  let next = 0;
  for (const size of SIZES) {
    const ms: number[] = [];
    for (let k = 0; k < BATCHES; k++) {
      const ops = Array.from({ length: size }, () => ({
        op: 'put' as const,
        binding: binding(next++ % MRS, round++),
      }));
      // One op per home address in a batch, as etcd needs (the store coalesces; here they are distinct).
      const t0 = performance.now();
      await store.write(ops);
      ms.push(performance.now() - t0);
    }
    ms.sort((a, b) => a - b);
    const mean = ms.reduce((a, b) => a + b, 0) / ms.length;
    console.log(
      `${name.padEnd(6)} batch ${String(size).padStart(3)}: p50 ${q(ms, 0.5).toFixed(2)} ms, p99 ${q(ms, 0.99).toFixed(2)} ms, ${Math.round((size * 1000) / mean)} BU/s`,
    );
  }
  await store.close();
}

const dir = mkdtempSync(join(tmpdir(), 'offlink-bench-commit-'));
const cluster = await EtcdCluster.start(3, ['--max-txn-ops=4096']);
try {
  await measure('sqlite', new BindingStore(join(dir, 'ha.sqlite')));
  await measure(
    'etcd',
    new EtcdBindingStore({ endpoints: cluster.endpoints, prefix: '/bench/', maxTxnOps: 4096 }),
  );
} finally {
  await cluster.stop();
  rmSync(dir, { recursive: true, force: true });
}
