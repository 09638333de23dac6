// The home agent's core without the kernel and without UDP, in this process: the real HomeAgent (BU
// processing, binding cache, SQLite store with synchronous=FULL, the bpf data plane's JavaScript with a
// runner and bpf(2) calls that do nothing, logging to /dev/null), fed prebuilt BUs. Measures CPU per BU and retained heap
// per binding with far less noise than the full benchmark, for before/after ratios of optimizations.
//
//   node --expose-gc --import tsx bench/ha/core.ts [--mrs 100000] [--batch 25] [--rounds 2] [--json FILE]
//                                                 [--snapshot PREFIX]  (heap snapshots before and after registration)
import { mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeHeapSnapshot } from 'node:v8';
import { systemClock } from '../../src/clock.ts';
import { BpfHomeAgentDataplane } from '../../src/dataplane/bpf/ha.ts';
import type { BpfSyscalls } from '../../src/dataplane/bpf/syscall.ts';
import { Iproute2Kernel } from '../../src/dataplane/iproute2.ts';
import type { HomeAgentConfig } from '../../src/homeagent/config.ts';
import { HomeAgent } from '../../src/homeagent/daemon.ts';
import { createLogger } from '../../src/log.ts';
import { buildBindingUpdate } from '../../src/mobilerouter/messages.ts';
import type { Datagram, UdpTransport } from '../../src/signaling/udp.ts';
import type { CommandRunner } from '../../src/system/runner.ts';
import { describeMachine, finishMachineInfo, machineInfo } from '../lib/machine.ts';
import { numArg, parseArgs, writeResult } from '../lib/results.ts';
import { coaOf, HA_ADDRESS, member } from './fleet.ts';

const args = parseArgs(process.argv.slice(2));
const MRS = numArg(args, 'mrs', 100_000);
const BATCH = numArg(args, 'batch', 25);
const ROUNDS = numArg(args, 'rounds', 2);
const COAS = 1000;

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

function heapMiB(): number {
  gc!();
  gc!();
  return process.memoryUsage().heapUsed / 2 ** 20;
}

/** A runner that succeeds at everything and reports an empty kernel. */
const nullRunner: CommandRunner = {
  async run(argv) {
    if (argv[0] === 'readlink') return { stdout: 'net:[1]\n', stderr: '', exitCode: 0 };
    return { stdout: '', stderr: '', exitCode: 0 };
  },
};

/** bpf(2) that keeps nothing: what the data plane's JavaScript costs, without the kernel's share. */
const nullBpf: BpfSyscalls = {
  objGet: () => 3,
  objPin: () => {},
  mapGetFdById: () => 3,
  progGetFdById: () => 3,
  progNextId: () => null,
  progInfo: () => ({ id: 1, type: 0, name: '', tag: '', mapIds: [] }),
  mapInfo: () => ({ id: 1, type: 0, keySize: 0, valueSize: 0, maxEntries: 0, flags: 0, name: '' }),
  mapLookup: () => null,
  mapUpdate: () => {},
  mapDelete: () => true,
  mapNextKey: () => null,
  mapUpdateBatch: (_fd, _k, _v, count) => count,
  isBpffs: () => true,
  mountBpffs: () => {},
  unmount: () => {},
  unpin: () => {},
  pinned: () => [],
  close: () => {},
  adjustRoomProbe: () => 0,
};

class NullTransport {
  sent = 0;
  port = 4191;
  async listen(_a: string, _p: number, onMessage: (d: Datagram) => void): Promise<void> {
    this.deliver = onMessage;
  }
  deliver: (d: Datagram) => void = () => {};
  async send(): Promise<void> {
    this.sent++;
  }
  async close(): Promise<void> {}
}

async function main(): Promise<void> {
  const machine = machineInfo();
  const dir = mkdtempSync(join(tmpdir(), 'offlink-bench-core-'));
  const heap0 = heapMiB();
  const members = Array.from({ length: MRS }, (_, i) => member(i));
  const config: HomeAgentConfig = {
    homeAgent: {
      address: HA_ADDRESS,
      uplink: 'lo',
      listen: { address: HA_ADDRESS, port: 4191 },
      status: undefined,
      database: join(dir, 'ha.sqlite'),
      runDir: '/run/offlink',
      dataplane: { backend: 'bpf', table: 200, mss: 1400 },
      maxLifetimeSeconds: 3600,
      refreshAdviceSeconds: undefined,
      replayWindowSeconds: 7,
      retainOnStop: true,
    },
    mobileRouters: members.map((m) => ({
      name: m.name,
      homeAddress: m.hoa,
      prefixes: [m.prefix],
      spi: m.spi,
      key: m.key,
      algorithm: 'hmac-sha1' as const,
    })),
  };
  const transport = new NullTransport();
  const ha = new HomeAgent(
    {
      clock: systemClock,
      logger: createLogger('ha', { destination: openSync('/dev/null', 'w') }),
      dataplane: new BpfHomeAgentDataplane(
        { kernel: new Iproute2Kernel({ runner: nullRunner }), sys: nullBpf, object: '/dev/null' },
        {
          haAddress: HA_ADDRESS,
          uplink: 'lo',
          table: 200,
          mss: 1400,
          runDir: dir,
          // as `offlink ha` does: every configured prefix and home address routed once, aggregated
          tunnelled: members.flatMap((m) => [m.prefix, `${m.hoa}/128`]),
        },
      ),
      transport: transport as unknown as UdpTransport,
    },
    config,
  );
  await ha.start();
  const heapConfigured = heapMiB();
  const snapshot = args.get('snapshot');
  if (snapshot) writeHeapSnapshot(`${snapshot}-configured.heapsnapshot`);
  const seq = new Uint16Array(MRS);
  const build = (i: number): Datagram => {
    const m = members[i]!;
    const coa = coaOf(i % COAS);
    seq[i] = (seq[i]! + 1) & 0xffff;
    const data = buildBindingUpdate({
      hoa: m.hoa,
      haAddress: HA_ADDRESS,
      coa,
      sa: { spi: m.spi, key: m.key, algorithm: 'hmac-sha1' },
      mode: 'explicit',
      prefixes: [m.prefix],
      sequence: seq[i]!,
      lifetimeSeconds: 3600,
      timestampMs: Date.now(),
    });
    return { data: Buffer.from(data), address: coa, port: 40000 + (i % COAS) };
  };
  /** Feed all MRs in groups of `group`, waiting for the HA to answer each group; CPU of the HA only. */
  const phase = async (group: number) => {
    let cpuUs = 0;
    let wallMs = 0;
    const before = transport.sent;
    for (let i = 0; i < MRS; i += 2048) {
      const datagrams = Array.from({ length: Math.min(2048, MRS - i) }, (_, j) => build(i + j));
      for (let j = 0; j < datagrams.length; j += group) {
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        for (const d of datagrams.slice(j, j + group)) transport.deliver(d);
        await ha.idle();
        wallMs += performance.now() - t0;
        const c = process.cpuUsage(c0);
        cpuUs += c.user + c.system;
      }
    }
    const answered = transport.sent - before;
    return { group, answered, cpuUsPerBu: cpuUs / MRS, wallUsPerBu: (1000 * wallMs) / MRS };
  };
  const register = await phase(2048);
  const heapBound = heapMiB();
  if (snapshot) writeHeapSnapshot(`${snapshot}-bound.heapsnapshot`);
  const refreshes = [];
  for (let r = 0; r < ROUNDS; r++) refreshes.push(await phase(BATCH));
  const heapAfter = heapMiB();
  await ha.stop();
  rmSync(dir, { recursive: true, force: true });
  const result = {
    bench: 'ha-core',
    machine: finishMachineInfo(machine),
    params: { mrs: MRS, batch: BATCH, rounds: ROUNDS },
    bindings: ha.cache.size,
    register,
    refreshes,
    heapMiB: { empty: heap0, configured: heapConfigured, bound: heapBound, afterRefresh: heapAfter },
    bytesPerMr: ((heapConfigured - heap0) * 2 ** 20) / MRS,
    bytesPerBinding: ((heapBound - heapConfigured) * 2 ** 20) / MRS,
  };
  console.log(`HA core — ${describeMachine(result.machine)}`);
  console.log(`registration (groups of 2048): ${register.cpuUsPerBu.toFixed(1)} µs CPU/BU`);
  for (const r of refreshes)
    console.log(`refresh (groups of ${r.group}): ${r.cpuUsPerBu.toFixed(1)} µs CPU/BU`);
  console.log(
    `heap: ${result.bytesPerMr.toFixed(0)} B per configured MR, ${result.bytesPerBinding.toFixed(0)} B per binding (${heapBound.toFixed(0)} MiB at ${MRS})`,
  );
  const out = writeResult(args.get('json'), 'ha-core', result);
  console.error(`wrote ${out}`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
