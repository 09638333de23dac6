// One end of the lab's traffic, run inside the guest's or the correspondent's namespace as its own
// process: `ip netns exec <ns> node --import tsx src/lab/endpoint.ts '<json options>'`.
//
// It sends sequence-numbered probes at `probeRate` to the peer and (guest only) the report's stream,
// records when each probe and stream packet from the peer arrives, and prints one JSON line a second
// on stdout. On "stop" (stdin) or SIGTERM it stops sending, waits `graceMs` for packets in flight,
// writes everything to `out` and exits. Times are wall-clock milliseconds with sub-millisecond
// resolution (performance.timeOrigin + performance.now()), comparable between processes on one machine.
import { createSocket, type Socket } from 'node:dgram';
import { readFileSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { bindSocket } from '../signaling/udp.ts';

export interface EndpointOptions {
  role: 'guest' | 'cn';
  bind: string;
  peer: string;
  probePort: number;
  streamPort: number;
  /** Probes per second to the peer. */
  probeRate: number;
  /** Stream to the peer's streamPort, or 0 for none. */
  streamKbps: number;
  streamPayload: number;
  graceMs: number;
  out: string;
}

/** What an endpoint writes at the end; times in wall-clock ms. */
export interface EndpointResult {
  role: 'guest' | 'cn';
  probe: { sent: number; sendErrors: number; sendTimes: number[] };
  received: { seq: number[]; at: number[] };
  stream: { sent: number; received: number; receivedBytes: number };
  /** Packets the kernel dropped because a socket buffer of this namespace was full (should be 0). */
  rcvbufErrors: number;
}

export interface EndpointProgress {
  type: 'progress';
  t: number;
  probesSent: number;
  probesReceived: number;
  streamSent: number;
  streamReceived: number;
}

/** Probe payload: magic "OFLP", u32 seq, f64 send time. Stream packets start with "OFLS". */
const PROBE_MAGIC = 0x4f464c50;
const STREAM_MAGIC = 0x4f464c53;

const now = () => performance.timeOrigin + performance.now();

/**
 * Calls `send(n)` for each packet due at `rate` per second since `start`, catching up after a late
 * timer so the count never drifts behind the schedule (Node's timers fire ≥ 1 ms late).
 */
export class Schedule {
  count = 0;
  private timer: NodeJS.Timeout | undefined;
  constructor(
    private readonly rate: number,
    private readonly send: (n: number) => void,
  ) {}

  start(at = performance.now()): void {
    const tick = () => {
      const due = Math.floor(((performance.now() - at) * this.rate) / 1000) + 1;
      while (this.count < due) this.send(this.count++);
      const next = at + (this.count * 1000) / this.rate;
      this.timer = setTimeout(tick, Math.max(0, next - performance.now()));
    };
    tick();
  }

  stop(): void {
    clearTimeout(this.timer);
  }
}

async function bind(address: string, port: number): Promise<Socket> {
  const socket = createSocket({ type: 'udp6', ipv6Only: true });
  // While the guest's link is down (mid-migration) sends fail; bindSocket makes that a lost probe.
  await bindSocket(socket, address, port);
  // A receiver descheduled for a few hundred ms on a busy machine must not drop 1 kHz probes in its
  // socket buffer (the kernel caps this at net.core.rmem_max).
  try {
    socket.setRecvBufferSize(4 << 20);
  } catch {}
  return socket;
}

/** UDP receive errors of this namespace (/proc/net/snmp6): drops at full socket buffers. */
export function udpRcvbufErrors(): number {
  try {
    const m = /^Udp6RcvbufErrors\s+(\d+)/m.exec(readFileSync('/proc/self/net/snmp6', 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

export async function runEndpoint(options: EndpointOptions): Promise<void> {
  const probeSocket = await bind(options.bind, options.probePort);
  const streamSocket = await bind(options.bind, options.streamPort);
  const result: EndpointResult = {
    role: options.role,
    probe: { sent: 0, sendErrors: 0, sendTimes: [] },
    received: { seq: [], at: [] },
    stream: { sent: 0, received: 0, receivedBytes: 0 },
    rcvbufErrors: 0,
  };
  const rcvbufErrorsAtStart = udpRcvbufErrors();
  probeSocket.on('message', (msg) => {
    const at = now();
    if (msg.length < 16 || msg.readUInt32BE(0) !== PROBE_MAGIC) return;
    result.received.seq.push(msg.readUInt32BE(4));
    result.received.at.push(at);
  });
  streamSocket.on('message', (msg) => {
    if (msg.length < 4 || msg.readUInt32BE(0) !== STREAM_MAGIC) return;
    result.stream.received++;
    result.stream.receivedBytes += msg.length;
  });

  const onSendError = (err: Error | null) => {
    if (err) result.probe.sendErrors++;
  };
  const probes = new Schedule(options.probeRate, (seq) => {
    const buf = Buffer.alloc(16);
    buf.writeUInt32BE(PROBE_MAGIC, 0);
    buf.writeUInt32BE(seq, 4);
    const t = now();
    buf.writeDoubleBE(t, 8);
    result.probe.sendTimes.push(t);
    probeSocket.send(buf, options.probePort, options.peer, onSendError);
  });
  const payload = Buffer.alloc(options.streamPayload, 0x5a);
  payload.writeUInt32BE(STREAM_MAGIC, 0);
  const stream = new Schedule((options.streamKbps * 1000) / (options.streamPayload * 8), (n) => {
    payload.writeUInt32BE(n, 4);
    streamSocket.send(payload, options.streamPort, options.peer, () => {});
  });
  probes.start();
  if (options.streamKbps > 0) stream.start();

  const progress = setInterval(() => {
    const p: EndpointProgress = {
      type: 'progress',
      t: now(),
      probesSent: probes.count,
      probesReceived: result.received.seq.length,
      streamSent: stream.count,
      streamReceived: result.stream.received,
    };
    process.stdout.write(`${JSON.stringify(p)}\n`);
  }, 1000);

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    probes.stop();
    stream.stop();
    setTimeout(() => {
      clearInterval(progress);
      result.probe.sent = probes.count;
      result.stream.sent = stream.count;
      result.rcvbufErrors = udpRcvbufErrors() - rcvbufErrorsAtStart;
      writeFileSync(options.out, JSON.stringify(result));
      probeSocket.close();
      streamSocket.close();
      process.stdout.write(`${JSON.stringify({ type: 'done' })}\n`, () => process.exit(0));
    }, options.graceMs);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdin.on('data', (d) => {
    if (String(d).includes('stop')) stop();
  });
  process.stdin.on('end', stop);
  process.stdout.write(`${JSON.stringify({ type: 'ready', t: now() })}\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await runEndpoint(JSON.parse(process.argv[2] ?? '{}') as EndpointOptions);
}
