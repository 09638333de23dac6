// The report's traffic (docs/lab.md): the guest streams UDP to the correspondent (520 kbit/s, 1316-byte
// payloads ≈ 49.4 packets/s) and both ends send sequence-numbered probes at 1 kHz to each other; with
// dual-stack addresses, IPv4 probes at 1 kHz each way as well (the stream stays IPv6). Each
// end is its own process (endpoint.ts) inside its namespace; this side starts them, relays their
// progress and collects what they recorded.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { EndpointOptions, EndpointProgress, EndpointResult } from './endpoint.ts';
import { LabError } from './netns.ts';

export interface TrafficOptions {
  /** `vm`: a QEMU guest, whose endpoint runs inside the VM, driven from the correspondent's namespace. */
  guest: { ns: string; address: string; address4?: string; vm?: boolean };
  /** `address4` on both ends: IPv4 probes too (dual-stack). */
  cn: { ns: string; address: string; address4?: string };
  /** Where the endpoints write their results. */
  dir: string;
  probeRate?: number;
  streamKbps?: number;
  streamPayload?: number;
  onProgress?: (p: TrafficProgress) => void;
}

export interface TrafficProgress {
  role: 'guest' | 'cn';
  progress: EndpointProgress;
}

export type ProbeFamily = 'ipv6' | 'ipv4';

/** One probe direction: send time of each sequence number and its arrival time (NaN: never arrived). */
export interface ProbeSeries {
  /** `guest→cn`, `cn→guest` (IPv6), `guest→cn IPv4`, `cn→guest IPv4`. */
  name: string;
  family: ProbeFamily;
  sendTimes: Float64Array;
  arrivals: Float64Array;
  sendErrors: number;
  /** Probes the receiver's kernel dropped at a full socket buffer (receiver overload, not the network). */
  rcvbufErrors: number;
}

export interface TrafficResult {
  probeRate: number;
  /** IPv6 both ways, then (dual-stack) IPv4 both ways. */
  directions: ProbeSeries[];
  stream: { kbps: number; payload: number; sent: number; received: number; receivedBytes: number };
}

export const TRAFFIC_DEFAULTS = { probeRate: 1000, streamKbps: 520, streamPayload: 1316 } as const;
const PROBE_PORT = 40001;
const STREAM_PORT = 40000;

const ENDPOINT = fileURLToPath(new URL('./endpoint.ts', import.meta.url));
const VM_ENDPOINT = fileURLToPath(new URL('./vm-endpoint.ts', import.meta.url));

interface Running {
  role: 'guest' | 'cn';
  child: ChildProcess;
  out: string;
  done: Promise<void>;
}

export class Traffic {
  private running: Running[] = [];
  constructor(private readonly options: TrafficOptions) {}

  /** Start the correspondent, then the guest; resolves when both are sending. */
  async start(): Promise<void> {
    const options = this.options;
    const common = {
      probePort: PROBE_PORT,
      streamPort: STREAM_PORT,
      probeRate: options.probeRate ?? TRAFFIC_DEFAULTS.probeRate,
      streamPayload: options.streamPayload ?? TRAFFIC_DEFAULTS.streamPayload,
      graceMs: 400,
    };
    const v4 = this.dualStack();
    await this.startOne('cn', options.cn.ns, {
      ...common,
      role: 'cn',
      bind: options.cn.address,
      peer: options.guest.address,
      ...(v4 ? { bind4: v4.cn, peer4: v4.guest } : {}),
      streamKbps: 0,
      out: join(options.dir, 'traffic-cn.json'),
    });
    await this.startOne('guest', options.guest.vm ? options.cn.ns : options.guest.ns, {
      ...common,
      role: 'guest',
      bind: options.guest.address,
      peer: options.cn.address,
      ...(v4 ? { bind4: v4.guest, peer4: v4.cn } : {}),
      streamKbps: options.streamKbps ?? TRAFFIC_DEFAULTS.streamKbps,
      out: join(options.dir, 'traffic-guest.json'),
    });
  }

  /** Both ends' IPv4 addresses when the probes run over IPv4 too (a VM's own services send them from its address4). */
  private dualStack(): { guest: string; cn: string } | undefined {
    const { guest, cn } = this.options;
    if (!guest.address4 || !cn.address4) return undefined;
    return { guest: guest.address4, cn: cn.address4 };
  }

  private async startOne(role: 'guest' | 'cn', ns: string, eo: EndpointOptions): Promise<void> {
    const tsx = import.meta.resolve('tsx');
    const script = role === 'guest' && this.options.guest.vm ? VM_ENDPOINT : ENDPOINT;
    const child = spawn(
      'ip',
      ['netns', 'exec', ns, process.execPath, '--import', tsx, script, JSON.stringify(eo)],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr!.on('data', (d) => {
      stderr += d;
    });
    child.stdin!.on('error', () => {});
    const done = new Promise<void>((resolve) => child.once('close', () => resolve()));
    this.running.push({ role, child, out: eo.out, done });
    const ready = new Promise<void>((resolve, reject) => {
      const lines = createInterface({ input: child.stdout! });
      lines.on('line', (line) => {
        let msg: { type?: string } | undefined;
        try {
          msg = JSON.parse(line) as { type?: string };
        } catch {
          return;
        }
        if (msg.type === 'ready') resolve();
        else if (msg.type === 'progress')
          this.options.onProgress?.({ role, progress: msg as EndpointProgress });
      });
      child.once('close', (code) =>
        reject(
          new LabError('ERR_LAB_TRAFFIC', `traffic endpoint in ${ns} exited (${code}): ${stderr.trim()}`),
        ),
      );
    });
    await ready;
  }

  /** Stop both ends (they wait for packets in flight) and return what they recorded. */
  async stop(): Promise<TrafficResult> {
    for (const r of this.running) r.child.stdin!.end('stop\n');
    await Promise.all(
      this.running.map((r) =>
        Promise.race([r.done, new Promise((res) => setTimeout(res, 10_000))]).then(() => {
          if (r.child.exitCode === null) r.child.kill('SIGKILL');
        }),
      ),
    );
    const read = (role: 'guest' | 'cn'): EndpointResult => {
      const r = this.running.find((x) => x.role === role);
      if (!r) throw new LabError('ERR_LAB_TRAFFIC', `traffic endpoint ${role} was not started`);
      if (!existsSync(r.out))
        throw new LabError(
          'ERR_LAB_TRAFFIC',
          `the ${role} traffic endpoint wrote no result (it did not stop within 10 s and was killed)`,
        );
      return JSON.parse(readFileSync(r.out, 'utf8')) as EndpointResult;
    };
    const guest = read('guest');
    const cn = read('cn');
    this.running = [];
    return {
      probeRate: this.options.probeRate ?? TRAFFIC_DEFAULTS.probeRate,
      directions: [
        series('guest→cn', guest, cn),
        series('cn→guest', cn, guest),
        ...(guest.ipv4 && cn.ipv4
          ? [
              series('guest→cn IPv4', guest.ipv4, cn.ipv4, 'ipv4'),
              series('cn→guest IPv4', cn.ipv4, guest.ipv4, 'ipv4'),
            ]
          : []),
      ],
      stream: {
        kbps: this.options.streamKbps ?? TRAFFIC_DEFAULTS.streamKbps,
        payload: this.options.streamPayload ?? TRAFFIC_DEFAULTS.streamPayload,
        sent: guest.stream.sent,
        received: cn.stream.received,
        receivedBytes: cn.stream.receivedBytes,
      },
    };
  }

  /** Kill the endpoints without collecting anything (teardown after a failure). */
  kill(): void {
    for (const r of this.running) if (r.child.exitCode === null) r.child.kill('SIGKILL');
    this.running = [];
  }
}

/** Join the sender's send times with the receiver's arrivals (first arrival of each sequence number). */
export function series(
  name: string,
  sender: Pick<EndpointResult, 'probe'>,
  receiver: Pick<EndpointResult, 'received' | 'rcvbufErrors'>,
  family: ProbeFamily = 'ipv6',
): ProbeSeries {
  const sendTimes = Float64Array.from(sender.probe.sendTimes);
  const arrivals = new Float64Array(sendTimes.length).fill(Number.NaN);
  const { seq, at } = receiver.received;
  for (let i = 0; i < seq.length; i++) {
    const s = seq[i]!;
    if (s < arrivals.length && Number.isNaN(arrivals[s]!)) arrivals[s] = at[i]!;
  }
  return {
    name,
    family,
    sendTimes,
    arrivals,
    sendErrors: sender.probe.sendErrors,
    rcvbufErrors: receiver.rcvbufErrors ?? 0,
  };
}
