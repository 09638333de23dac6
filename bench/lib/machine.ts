// What every result records about the machine it ran on: this machine is shared, so a figure without the
// load it was measured under means little (bench/README.md).
import { execFileSync } from 'node:child_process';
import { cpus, loadavg, totalmem } from 'node:os';

export interface MachineInfo {
  date: string;
  kernel: string;
  nproc: number;
  cpu: string;
  memMiB: number;
  node: string;
  /** 1-minute load average when the run started and when it ended. */
  loadStart: number;
  loadEnd?: number;
}

export function machineInfo(): MachineInfo {
  return {
    date: new Date().toISOString(),
    kernel: execFileSync('uname', ['-r']).toString().trim(),
    nproc: Number(execFileSync('nproc').toString().trim()),
    cpu: cpus()[0]?.model ?? 'unknown',
    memMiB: Math.round(totalmem() / 2 ** 20),
    node: process.version,
    loadStart: loadavg()[0]!,
  };
}

export function finishMachineInfo(m: MachineInfo): MachineInfo {
  return { ...m, loadEnd: loadavg()[0]! };
}

export function describeMachine(m: MachineInfo): string {
  const load =
    m.loadEnd === undefined ? m.loadStart.toFixed(1) : `${m.loadStart.toFixed(1)}→${m.loadEnd.toFixed(1)}`;
  return `${m.date.slice(0, 16).replace('T', ' ')}Z, kernel ${m.kernel}, ${m.nproc} CPUs, node ${m.node}, load ${load}`;
}
