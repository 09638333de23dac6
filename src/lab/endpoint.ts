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
  /** Dual-stack: IPv4 probes beside the IPv6 ones, same port and rate, from `bind4` to `peer4`. */
  bind4?: string;
  peer4?: string;
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
  /** Dual-stack: the IPv4 probes, as `probe`, `received` and `rcvbufErrors` are the IPv6 ones. */
  ipv4?: {
    probe: { sent: number; sendErrors: number; sendTimes: number[] };
    received: { seq: number[]; at: number[] };
    rcvbufErrors: number;
  };
}

export interface EndpointProgress {
  type: 'progress';
  t: number;
  probesSent: number;
  probesReceived: number;
  /** Dual-stack: IPv4 probes received (`probesReceived` counts the IPv6 ones). */
  probesReceived4?: number;
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
  const socket = createSocket(address.includes(':') ? { type: 'udp6', ipv6Only: true } : { type: 'udp4' });
  // While the guest's link is down (mid-migration) sends fail; bindSocket makes that a lost probe.
  await bindSocket(socket, address, port);
  // A receiver descheduled for a few hundred ms on a busy machine must not drop 1 kHz probes in its
  // socket buffer (the kernel caps this at net.core.rmem_max).
  try {
    socket.setRecvBufferSize(4 << 20);
  } catch {}
  return socket;
}

/** UDP receive errors of this namespace (/proc/net/snmp6, snmp): drops at full socket buffers. */
export function udpRcvbufErrors(family: 'ipv6' | 'ipv4' = 'ipv6'): number {
  try {
    if (family === 'ipv6') {
      const m = /^Udp6RcvbufErrors\s+(\d+)/m.exec(readFileSync('/proc/self/net/snmp6', 'utf8'));
      return m ? Number(m[1]) : 0;
    }
    return snmpCounter(readFileSync('/proc/self/net/snmp', 'utf8'), 'Udp', 'RcvbufErrors');
  } catch {
    return 0;
  }
}

/** One counter of /proc/net/snmp, whose protocols are a header line of names and a line of values. */
export function snmpCounter(text: string, protocol: string, name: string): number {
  const lines = text.split('\n').filter((l) => l.startsWith(`${protocol}: `));
  const names = lines[0]?.split(/\s+/) ?? [];
  const values = lines[1]?.split(/\s+/) ?? [];
  const i = names.indexOf(name);
  return i > 0 && values[i] !== undefined ? Number(values[i]) : 0;
}

/** Sequence-numbered probes over one socket: what it sent, what arrived from the peer. */
class ProbeFlow {
  readonly probe = { sent: 0, sendErrors: 0, sendTimes: [] as number[] };
  readonly received = { seq: [] as number[], at: [] as number[] };
  readonly schedule: Schedule;

  constructor(
    readonly socket: Socket,
    peer: string,
    port: number,
    rate: number,
  ) {
    socket.on('message', (msg) => {
      const at = now();
      if (msg.length < 16 || msg.readUInt32BE(0) !== PROBE_MAGIC) return;
      this.received.seq.push(msg.readUInt32BE(4));
      this.received.at.push(at);
    });
    const onSendError = (err: Error | null) => {
      if (err) this.probe.sendErrors++;
    };
    this.schedule = new Schedule(rate, (seq) => {
      const buf = Buffer.alloc(16);
      buf.writeUInt32BE(PROBE_MAGIC, 0);
      buf.writeUInt32BE(seq, 4);
      const t = now();
      buf.writeDoubleBE(t, 8);
      this.probe.sendTimes.push(t);
      socket.send(buf, port, peer, onSendError);
    });
  }
}

export async function runEndpoint(options: EndpointOptions): Promise<void> {
  const probes = new ProbeFlow(
    await bind(options.bind, options.probePort),
    options.peer,
    options.probePort,
    options.probeRate,
  );
  const probes4 =
    options.bind4 && options.peer4
      ? new ProbeFlow(
          await bind(options.bind4, options.probePort),
          options.peer4,
          options.probePort,
          options.probeRate,
        )
      : undefined;
  const streamSocket = await bind(options.bind, options.streamPort);
  const result: EndpointResult = {
    role: options.role,
    probe: probes.probe,
    received: probes.received,
    stream: { sent: 0, received: 0, receivedBytes: 0 },
    rcvbufErrors: 0,
  };
  const rcvbufErrorsAtStart = udpRcvbufErrors('ipv6');
  const rcvbufErrors4AtStart = udpRcvbufErrors('ipv4');
  streamSocket.on('message', (msg) => {
    if (msg.length < 4 || msg.readUInt32BE(0) !== STREAM_MAGIC) return;
    result.stream.received++;
    result.stream.receivedBytes += msg.length;
  });

  const payload = Buffer.alloc(options.streamPayload, 0x5a);
  payload.writeUInt32BE(STREAM_MAGIC, 0);
  const stream = new Schedule((options.streamKbps * 1000) / (options.streamPayload * 8), (n) => {
    payload.writeUInt32BE(n, 4);
    streamSocket.send(payload, options.streamPort, options.peer, () => {});
  });
  const startAt = performance.now();
  probes.schedule.start(startAt);
  probes4?.schedule.start(startAt);
  if (options.streamKbps > 0) stream.start();

  const progress = setInterval(() => {
    const p: EndpointProgress = {
      type: 'progress',
      t: now(),
      probesSent: probes.schedule.count,
      probesReceived: result.received.seq.length,
      ...(probes4 ? { probesReceived4: probes4.received.seq.length } : {}),
      streamSent: stream.count,
      streamReceived: result.stream.received,
    };
    process.stdout.write(`${JSON.stringify(p)}\n`);
  }, 1000);

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    probes.schedule.stop();
    probes4?.schedule.stop();
    stream.stop();
    setTimeout(() => {
      clearInterval(progress);
      result.probe.sent = probes.schedule.count;
      result.stream.sent = stream.count;
      result.rcvbufErrors = udpRcvbufErrors('ipv6') - rcvbufErrorsAtStart;
      if (probes4) {
        probes4.probe.sent = probes4.schedule.count;
        result.ipv4 = {
          probe: probes4.probe,
          received: probes4.received,
          rcvbufErrors: udpRcvbufErrors('ipv4') - rcvbufErrors4AtStart,
        };
      }
      writeFileSync(options.out, JSON.stringify(result));
      probes.socket.close();
      probes4?.socket.close();
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
