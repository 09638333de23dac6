// Memory of a process from /proc (works across namespaces: the pid is in our pid namespace).
import { readFileSync } from 'node:fs';

export interface ProcMemory {
  /** Resident set now, and its peak (VmHWM), in MiB. */
  rssMiB: number;
  hwmMiB: number;
  /** RSS split: anonymous memory (heaps), mapped files (the node binary, libraries), shared memory. */
  anonMiB: number;
  fileMiB: number;
}

export function procMemory(pid: number): ProcMemory | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? Number.NaN);
  return {
    rssMiB: kb('VmRSS') / 1024,
    hwmMiB: kb('VmHWM') / 1024,
    anonMiB: kb('RssAnon') / 1024,
    fileMiB: (kb('RssFile') + kb('RssShmem')) / 1024,
  };
}

/** Samples a process's RSS every `intervalMs`; `max` is the largest seen since `reset()`. */
export class RssSampler {
  max = 0;
  last = 0;
  private timer: NodeJS.Timeout;

  constructor(
    private readonly pid: number,
    intervalMs = 250,
  ) {
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  sample(): number {
    const m = procMemory(this.pid);
    if (m) {
      this.last = m.rssMiB;
      this.max = Math.max(this.max, m.rssMiB);
    }
    return this.last;
  }

  reset(): void {
    this.max = 0;
    this.sample();
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/** CPU time (user + system) a process has used so far, in ms (from /proc/<pid>/stat, 100 Hz ticks). */
export function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return Number.NaN;
  }
}

/**
 * CPU time the hypervisor gave to others while this VM's vCPUs wanted to run ("steal", /proc/stat), in ms
 * per 100 ms window, sampled from `start()` until `stop()`: a vCPU descheduled for 100 ms holds up every
 * process on it, which no process can tell from its own delays.
 */
export class StealSampler {
  private timer: NodeJS.Timeout | undefined;
  private last = 0;
  private first = 0;
  /** Largest steal in one 100 ms window, ms (both vCPUs together). */
  maxMs = 0;
  totalMs = 0;

  private static read(): number {
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/);
    // cpu user nice system idle iowait irq softirq steal …, in USER_HZ (100/s here)
    return Number(cpu[8] ?? 0) * 10;
  }

  start(): void {
    this.first = this.last = StealSampler.read();
    this.maxMs = 0;
    this.timer = setInterval(() => {
      const now = StealSampler.read();
      this.maxMs = Math.max(this.maxMs, now - this.last);
      this.last = now;
    }, 100);
  }

  stop(): { totalMs: number; maxMsPer100Ms: number } {
    clearInterval(this.timer);
    this.totalMs = StealSampler.read() - this.first;
    return { totalMs: this.totalMs, maxMsPer100Ms: this.maxMs };
  }
}
