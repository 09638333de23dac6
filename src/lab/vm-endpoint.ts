// The lab's guest traffic endpoint for a QEMU guest. Same command line, stdin/stdout conversation and
// result file as src/lab/endpoint.ts (`ip netns exec <ns> node --import tsx vm-endpoint.ts '<json>'`,
// ready/progress/done lines, "stop" on stdin, EndpointResult in `out`), but the packets are sent and
// received inside the VM by its own services (guest/oflguest.c), which this process drives over the
// guest's TCP line service from a namespace that routes to the guest (the correspondent's).
//
// The guest records its times on its own clock; this process samples that clock against ours over the
// same TCP connection and converts every time before writing the result (guest-clock.ts), so the lab's
// measurement sees one clock. The TCP connection stays open through every migration: if it breaks,
// the result says so (tcpBroken) — it must not; and `guestState` shows the guest's boot id and counter
// over the run (one boot id, a counter that never went back: the guest moved, it did not restart).
import { writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { GUEST_PORTS } from '../hypervisor/qemu/guest-image.ts';
import { type ClockSample, clockSegments, toHostTimes } from './guest-clock.ts';

export interface GuestEndpointOptions {
  role: 'guest';
  /** The guest's address (its services listen there). */
  bind: string;
  /** Where the guest sends its probes and stream (the correspondent). */
  peer: string;
  /** Dual-stack: the correspondent's IPv4 address; the guest sends a second probe sequence there. */
  peer4?: string;
  probeRate: number;
  streamKbps: number;
  streamPayload: number;
  graceMs: number;
  out: string;
  /** How long to keep trying to reach the guest (it may still be taking its address), ms. */
  connectTimeoutMs?: number;
  /** Clock samples, ms between. */
  sampleMs?: number;
}

/** One family's probes in the guest's `dump` (times on the guest's clock). */
interface GuestProbes {
  probe: { sent: number; sendErrors: number; sendTimes: number[] };
  received: { seq: number[]; at: number[] };
}

/** What the guest's `dump` returns: its IPv6 probes, `ipv4` when it ran them (dual-stack). */
interface GuestDump extends GuestProbes {
  role: 'guest';
  now: number;
  ipv4?: GuestProbes;
  stream: { sent: number; received: number; receivedBytes: number };
}

const now = () => performance.timeOrigin + performance.now();
const emit = (message: unknown) => process.stdout.write(`${JSON.stringify(message)}\n`);

/**
 * A guest that sends nothing this long while a question waits is taken as gone: a migration pauses it for
 * well under a second, and an endpoint waiting forever would write no result at all.
 */
const ANSWER_TIMEOUT_MS = 5000;

/**
 * A line conversation over one TCP connection: `ask` sends a line and resolves with the next line.
 * `answerTimeoutMs` without a byte while a question waits breaks the conversation (every waiter is
 * rejected, and every later ask).
 */
export class LineConn {
  private buffer = '';
  private waiters: Array<{ resolve(line: string): void; reject(err: Error): void }> = [];
  private timer: NodeJS.Timeout | undefined;
  closed: Error | undefined;

  constructor(
    readonly socket: Socket,
    private readonly answerTimeoutMs = ANSWER_TIMEOUT_MS,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (d) => {
      this.buffer += String(d);
      for (let nl = this.buffer.indexOf('\n'); nl >= 0; nl = this.buffer.indexOf('\n')) {
        const line = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 1);
        this.waiters.shift()?.resolve(line);
      }
      // any byte is progress (a long answer, the dump, arrives in many pieces)
      this.arm();
    });
    socket.on('error', (err) => this.end(err));
    socket.on('close', () => this.end(new Error('connection to the guest closed')));
  }

  private end(err: Error): void {
    this.closed ??= err;
    clearTimeout(this.timer);
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  /** (Re)start the silence timer while questions wait. */
  private arm(): void {
    clearTimeout(this.timer);
    if (this.waiters.length === 0) return;
    this.timer = setTimeout(() => {
      this.end(new Error(`the guest sent nothing for ${this.answerTimeoutMs} ms while asked`));
      this.socket.destroy();
    }, this.answerTimeoutMs);
  }

  ask(line: string): Promise<string> {
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      if (this.waiters.length === 1) this.arm();
      this.socket.write(`${line}\n`);
    });
  }
}

async function connectGuest(address: string, timeoutMs: number): Promise<LineConn> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      const socket = await new Promise<Socket>((resolve, reject) => {
        const s = connect({ host: address, port: GUEST_PORTS.control, timeout: 2000 });
        s.once('connect', () => {
          s.setTimeout(0);
          resolve(s);
        });
        s.once('timeout', () => {
          s.destroy();
          reject(new Error('connect timeout'));
        });
        s.once('error', reject);
      });
      return new LineConn(socket);
    } catch (err) {
      if (performance.now() > deadline)
        throw new Error(`guest ${address}:${GUEST_PORTS.control} unreachable: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

const COUNT =
  /^counter (\d+) boot (\w+) .*now ([\d.]+) sent (\d+) recv (\d+) ssent (\d+) srecv (\d+)(?: sent4 (\d+) recv4 (\d+))?/;

/** Proof the guest was moved, not restarted: its boot id never changes and its counter never goes back. */
interface GuestState {
  bootIds: string[];
  counterFirst: number;
  counterLast: number;
  monotonic: boolean;
}

export async function runGuestEndpoint(options: GuestEndpointOptions): Promise<void> {
  const conn = await connectGuest(options.bind, options.connectTimeoutMs ?? 90_000);
  const samples: ClockSample[] = [];
  let last = { sent: 0, recv: 0, ssent: 0, srecv: 0, recv4: 0 };
  const state: GuestState = { bootIds: [], counterFirst: -1, counterLast: -1, monotonic: true };
  const sample = async () => {
    const t1 = now();
    const line = await conn.ask('count');
    const t2 = now();
    const m = COUNT.exec(line);
    if (!m) return;
    const [counter, boot] = [Number(m[1]), m[2]!];
    if (state.bootIds.at(-1) !== boot) state.bootIds.push(boot);
    if (state.counterFirst < 0) state.counterFirst = counter;
    if (counter < state.counterLast) state.monotonic = false;
    state.counterLast = counter;
    samples.push({ guest: Number(m[3]), host: (t1 + t2) / 2, rtt: t2 - t1 });
    last = {
      sent: Number(m[4]),
      recv: Number(m[5]),
      ssent: Number(m[6]),
      srecv: Number(m[7]),
      recv4: Number(m[9] ?? 0),
    };
  };
  for (let i = 0; i < 5; i++) await sample();
  const ok = await conn.ask(
    `traffic ${options.peer} ${options.probeRate} ${options.streamKbps} ${options.streamPayload}${options.peer4 ? ` ${options.peer4}` : ''}`,
  );
  if (!ok.startsWith('ok')) throw new Error(`guest refused the traffic: ${ok}`);

  let sampling = false;
  const sampler = setInterval(() => {
    if (sampling || conn.closed) return;
    sampling = true;
    sample()
      .catch(() => {})
      .finally(() => {
        sampling = false;
      });
  }, options.sampleMs ?? 200);
  const progress = setInterval(() => {
    emit({
      type: 'progress',
      t: now(),
      probesSent: last.sent,
      probesReceived: last.recv,
      ...(options.peer4 ? { probesReceived4: last.recv4 } : {}),
      streamSent: last.ssent,
      streamReceived: last.srecv,
    });
  }, 1000);
  emit({ type: 'ready', t: now() });

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    clearInterval(sampler);
    while (sampling) await new Promise((r) => setTimeout(r, 5));
    let result: unknown;
    try {
      await conn.ask('stop');
      await new Promise((r) => setTimeout(r, options.graceMs));
      for (let i = 0; i < 5; i++) await sample();
      const dump = JSON.parse(await conn.ask('dump')) as GuestDump;
      const segments = clockSegments(samples, dump.received.at);
      const onHostClock = (p: GuestProbes) => ({
        probe: { ...p.probe, sendTimes: toHostTimes(p.probe.sendTimes, segments) },
        received: { seq: p.received.seq, at: toHostTimes(p.received.at, segments) },
      });
      result = {
        role: 'guest',
        ...onHostClock(dump),
        ...(dump.ipv4 ? { ipv4: { ...onHostClock(dump.ipv4), rcvbufErrors: 0 } } : {}),
        stream: dump.stream,
        rcvbufErrors: 0,
        clock: { samples: samples.length, segments },
        guestState: state,
        tcpBroken: false,
      };
    } catch (err) {
      result = {
        role: 'guest',
        probe: { sent: last.sent, sendErrors: 0, sendTimes: [] },
        received: { seq: [], at: [] },
        stream: { sent: last.ssent, received: last.srecv, receivedBytes: 0 },
        rcvbufErrors: 0,
        guestState: state,
        tcpBroken: true,
        error: `the guest's TCP connection broke: ${(err as Error).message}`,
      };
    }
    clearInterval(progress);
    writeFileSync(options.out, JSON.stringify(result));
    conn.socket.end();
    process.stdout.write(`${JSON.stringify({ type: 'done' })}\n`, () => process.exit(0));
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
  process.stdin.on('data', (d) => {
    if (String(d).includes('stop')) void stop();
  });
  process.stdin.on('end', () => void stop());
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await runGuestEndpoint(JSON.parse(process.argv[2] ?? '{}') as GuestEndpointOptions);
}
