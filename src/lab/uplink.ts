// Traffic on each host's uplink over time (the report's Fig. 6), sampled at 10 Hz or faster.
//
// /proc/<pid>/net/dev shows the network namespace of process <pid>, so one idle process parked in each
// host's namespace lets this process read that namespace's byte counters with a plain file read: no
// command is spawned per sample (`ip netns exec … cat` costs milliseconds, too slow at 10 Hz).
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { LabError, waitInNamespace } from './netns.ts';

export interface UplinkTarget {
  /** Legend of the series, e.g. "host A". */
  label: string;
  ns: string;
  dev: string;
}

export interface UplinkPoint {
  /** Wall-clock ms at the end of the interval. */
  t: number;
  rxKbps: number;
  txKbps: number;
}

export interface UplinkSeries extends UplinkTarget {
  intervalMs: number;
  points: UplinkPoint[];
}

export interface Counters {
  rxBytes: number;
  txBytes: number;
}

/** Byte counters per interface from the text of /proc/net/dev. */
export function parseNetDev(text: string): Map<string, Counters> {
  const out = new Map<string, Counters>();
  for (const line of text.split('\n')) {
    const m = /^\s*([^:\s]+):\s*(.*)$/.exec(line);
    if (!m) continue;
    const f = m[2]!.trim().split(/\s+/).map(Number);
    if (f.length < 9) continue;
    out.set(m[1]!, { rxBytes: f[0]!, txBytes: f[8]! });
  }
  return out;
}

/** kbit/s between two readings of a counter (bytes) taken `ms` apart; a counter reset reads as 0. */
export function rateKbps(before: number, after: number, ms: number): number {
  if (ms <= 0 || after < before) return 0;
  return Math.round((((after - before) * 8) / ms) * 10) / 10;
}

const now = () => performance.timeOrigin + performance.now();

interface Probe {
  target: UplinkTarget;
  holder: ChildProcess;
  last: (Counters & { t: number }) | undefined;
  points: UplinkPoint[];
}

export class UplinkSampler {
  private probes: Probe[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly targets: readonly UplinkTarget[],
    private readonly intervalMs = 100,
  ) {}

  async start(): Promise<void> {
    for (const target of this.targets) {
      const holder = spawn('ip', ['netns', 'exec', target.ns, 'sleep', 'infinity'], { stdio: 'ignore' });
      holder.on('error', () => {});
      this.probes.push({ target, holder, last: undefined, points: [] });
      await waitInNamespace(holder.pid!, target.ns);
    }
    for (const p of this.probes) {
      this.read(p);
      if (!p.last) throw new LabError('ERR_LAB_UPLINK', `no interface ${p.target.dev} in ${p.target.ns}`);
    }
    this.timer = setInterval(() => {
      for (const p of this.probes) this.read(p);
    }, this.intervalMs);
  }

  private read(p: Probe): void {
    let counters: Counters | undefined;
    try {
      counters = parseNetDev(readFileSync(`/proc/${p.holder.pid}/net/dev`, 'utf8')).get(p.target.dev);
    } catch {
      return;
    }
    if (!counters) return;
    const t = now();
    if (p.last) {
      p.points.push({
        t,
        rxKbps: rateKbps(p.last.rxBytes, counters.rxBytes, t - p.last.t),
        txKbps: rateKbps(p.last.txBytes, counters.txBytes, t - p.last.t),
      });
    }
    p.last = { ...counters, t };
  }

  /** The series so far (the sampler keeps running). */
  series(): UplinkSeries[] {
    return this.probes.map((p) => ({ ...p.target, intervalMs: this.intervalMs, points: [...p.points] }));
  }

  stop(): UplinkSeries[] {
    clearInterval(this.timer);
    for (const p of this.probes) if (p.holder.exitCode === null) p.holder.kill('SIGKILL');
    const out = this.series();
    this.probes = [];
    return out;
  }
}
