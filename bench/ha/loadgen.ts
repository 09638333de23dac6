// The HA scale benchmark's load generator: a separate process (inside its own network namespace) that
// plays `mrs` mobile routers from `coas` care-of addresses. Every BU is real: built by the mobile router's
// own code (signed MN-HA hmac-sha1, replay-protected, explicit MNP option) and sent over UDP to the home
// agent daemon. Driven by run.ts over stdin/stdout, one JSON object a line each way.
//
// BAs are matched by home address + sequence without verifying them (that would double this process's
// CPU on a 2-core machine); one BA in 997 is fully decoded and its MN-HA authenticator checked, so a
// wrong or unsigned answer would show up as `verifyFailed`.
import { createSocket, type Socket } from 'node:dgram';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { buildBindingUpdate } from '../../src/mobilerouter/messages.ts';
import { decodeSignalingPacket, verifyPacketAuth } from '../../src/protocol/packet.ts';
import type { SecurityAssociation } from '../../src/protocol/types.ts';
import { Samples } from '../lib/stats.ts';
import { coaOf, HA_ADDRESS, indexOfHoa, member } from './fleet.ts';

interface Init {
  mrs: number;
  coas: number;
  port: number;
  lifetimeSeconds: number;
}

interface MR {
  hoa: string;
  prefixes: readonly string[];
  sa: SecurityAssociation;
}

let cfg: Init;
let mrs: MR[] = [];
let sockets: Socket[] = [];
let seq: Uint16Array;
let sentAt: Float64Array; // performance.now() of the outstanding BU, 0 = none outstanding
let outstanding = 0;
// per-phase counters
let latencies = new Samples();
let statuses = new Map<number, number>();
let received = 0;
let unmatched = 0;
let verified = 0;
let verifyFailed = 0;
let sendErrors = 0;
let lastBaAt = 0;
let onAnswer: (() => void) | undefined;

function resetCounters(): void {
  latencies = new Samples();
  statuses = new Map();
  received = unmatched = verified = verifyFailed = sendErrors = 0;
}

function send(i: number, now = performance.now()): void {
  const m = mrs[i]!;
  const k = i % cfg.coas;
  seq[i] = (seq[i]! + 1) & 0xffff;
  const bytes = buildBindingUpdate({
    hoa: m.hoa,
    haAddress: HA_ADDRESS,
    coa: coaOf(k),
    sa: m.sa,
    mode: 'explicit',
    prefixes: m.prefixes,
    sequence: seq[i]!,
    lifetimeSeconds: cfg.lifetimeSeconds,
    timestampMs: Date.now(),
  });
  if (sentAt[i] === 0) outstanding++;
  sentAt[i] = now;
  sockets[k]!.send(bytes, cfg.port, HA_ADDRESS, (err) => {
    if (err) sendErrors++;
  });
}

function onMessage(data: Buffer, k: number): void {
  const now = performance.now();
  // inner IPv6 (40) + MH: proto, len, type, reserved, checksum(2), status, flags, sequence(2), lifetime(2)
  if (data.length < 52 || data[6] !== 135 || data[42] !== 6) {
    unmatched++;
    return;
  }
  const i = indexOfHoa(data, 24);
  if (i < 0 || i >= mrs.length || sentAt[i] === 0 || data.readUInt16BE(48) !== seq[i]) {
    unmatched++;
    return;
  }
  const status = data[46]!;
  latencies.push(now - sentAt[i]!);
  sentAt[i] = 0;
  outstanding--;
  received++;
  lastBaAt = now;
  statuses.set(status, (statuses.get(status) ?? 0) + 1);
  if (received % 997 === 0) {
    const m = mrs[i]!;
    const packet = decodeSignalingPacket(data);
    if (verifyPacketAuth(packet, m.sa, coaOf(k), m.hoa)) verified++;
    else verifyFailed++;
  }
  onAnswer?.();
}

async function init(c: Init): Promise<unknown> {
  cfg = c;
  mrs = [];
  for (let i = 0; i < c.mrs; i++) {
    const m = member(i);
    mrs.push({ hoa: m.hoa, prefixes: [m.prefix], sa: { spi: m.spi, key: m.key, algorithm: 'hmac-sha1' } });
  }
  seq = new Uint16Array(c.mrs);
  sentAt = new Float64Array(c.mrs);
  sockets = await Promise.all(
    Array.from({ length: c.coas }, async (_, k) => {
      const s = createSocket({ type: 'udp6', ipv6Only: true, recvBufferSize: 4 << 20 });
      s.on('message', (d) => onMessage(d, k));
      s.on('error', () => sendErrors++);
      await new Promise<void>((resolve) => s.bind({ address: coaOf(k), port: 0 }, resolve));
      return s;
    }),
  );
  return { mrs: c.mrs, coas: c.coas };
}

/** Register every MR: at most `window` BUs in flight; a BU unanswered for `retransmitMs` is sent again. */
async function register(o: { window: number; retransmitMs: number }): Promise<unknown> {
  resetCounters();
  const t0 = performance.now();
  const perSecond: number[] = [];
  let next = 0;
  let retransmissions = 0;
  const fill = () => {
    while (next < mrs.length && outstanding < o.window) send(next++);
  };
  const done = new Promise<void>((resolve) => {
    onAnswer = () => {
      const s = Math.floor((performance.now() - t0) / 1000);
      perSecond[s] = (perSecond[s] ?? 0) + 1;
      fill();
      if (next >= mrs.length && outstanding === 0) resolve();
    };
  });
  const retransmit = setInterval(() => {
    const now = performance.now();
    for (let i = 0; i < next; i++) {
      if (sentAt[i] !== 0 && now - sentAt[i]! > o.retransmitMs) {
        retransmissions++;
        send(i, now);
      }
    }
  }, 250);
  fill();
  await done;
  clearInterval(retransmit);
  onAnswer = undefined;
  const ms = performance.now() - t0;
  return {
    ms,
    answered: received,
    retransmissions,
    statuses: Object.fromEntries(statuses),
    latencyMs: latencies.summary(),
    perSecond: Array.from(perSecond, (v) => v ?? 0),
    verified,
    verifyFailed,
    unmatched,
    sendErrors,
  };
}

/**
 * Refresh at a steady `rate` for `seconds` (open loop: BUs leave on schedule whether or not the HA keeps
 * up), MRs in turn. A BU without a BA after `lossTimeoutMs` counts as lost.
 */
async function refresh(o: { rate: number; seconds: number; lossTimeoutMs: number }): Promise<unknown> {
  resetCounters();
  let lost = 0;
  let skipped = 0;
  let sent = 0;
  let cursor = 0;
  const startNs = process.hrtime.bigint();
  const t0 = performance.now();
  const end = t0 + o.seconds * 1000;
  const expire = (now: number) => {
    for (let i = 0; i < mrs.length; i++) {
      if (sentAt[i] !== 0 && now - sentAt[i]! > o.lossTimeoutMs) {
        sentAt[i] = 0;
        outstanding--;
        lost++;
      }
    }
  };
  const reaper = setInterval(() => expire(performance.now()), 500);
  // This process's own stalls (GC, the CPU it shares): a BA that arrives meanwhile is timed late, so the
  // latency it reports includes them (bench/profiles/ha-i19.md)
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      const due = Math.floor((o.rate * (Math.min(now, end) - t0)) / 1000);
      while (sent < due) {
        const i = cursor;
        cursor = (cursor + 1) % mrs.length;
        sent++;
        if (sentAt[i] !== 0) {
          skipped++; // still waiting for this MR's previous BA
          continue;
        }
        send(i, now);
      }
      if (now >= end) resolve();
      else setTimeout(tick, 1);
    };
    tick();
  });
  const sendEndNs = process.hrtime.bigint();
  const sendMs = performance.now() - t0;
  while (outstanding > 0 && performance.now() - end < o.lossTimeoutMs + 100)
    await new Promise((r) => setTimeout(r, 20));
  clearInterval(reaper);
  loop.disable();
  expire(Number.POSITIVE_INFINITY);
  return {
    loadgenLoopDelayMs: {
      p50: loop.percentile(50) / 1e6,
      p99: loop.percentile(99) / 1e6,
      max: loop.max / 1e6,
    },
    rate: o.rate,
    seconds: o.seconds,
    sent: sent - skipped,
    skipped,
    offeredPerSecond: (sent - skipped) / (sendMs / 1000),
    answered: received,
    answeredPerSecond: received / ((lastBaAt - t0) / 1000),
    lost,
    statuses: Object.fromEntries(statuses),
    latencyMs: latencies.summary(),
    verified,
    verifyFailed,
    unmatched,
    sendErrors,
    startNs: String(startNs),
    sendEndNs: String(sendEndNs),
    endNs: String(process.hrtime.bigint()),
  };
}

const handlers: Record<string, (arg: never) => Promise<unknown>> = { init, register, refresh };

createInterface({ input: process.stdin }).on('line', async (line) => {
  const { id, op, ...arg } = JSON.parse(line) as { id: number; op: string };
  try {
    const result = await handlers[op]!(arg as never);
    process.stdout.write(`${JSON.stringify({ id, result })}\n`);
  } catch (err) {
    process.stdout.write(`${JSON.stringify({ id, error: String((err as Error).stack ?? err) })}\n`);
  }
});
process.stdin.on('end', () => process.exit(0));
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
