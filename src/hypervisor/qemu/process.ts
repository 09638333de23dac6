// One QEMU process: its command line, the child process (never -daemonize: a daemonized QEMU is
// re-parented and lingers), its QMP connection and its serial console log.
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readSync, rmSync } from 'node:fs';
import { HypervisorError } from '../driver.ts';
import { type Accel, accelArgs } from './accel.ts';
import { QmpClient, QmpDisconnectedError } from './qmp.ts';

export interface QemuMachine {
  /** Guest RAM in MiB (notes: 128 comfortable, 96 works, 80 never brought its network up). */
  memoryMiB: number;
  kernel: string;
  initrd: string;
  append: string;
  /** The guest NIC's MAC: the same wherever the guest runs. */
  mac: string;
  accel: Accel;
  /** `-cpu` (default: accel.ts's choice for the accelerator). */
  cpu?: string;
  /** Anything else for QEMU's command line (identical on source and destination). */
  extraArgs?: readonly string[];
}

export interface QemuProcessPaths {
  qmp: string;
  serial: string;
  tap: string;
}

/** QEMU's command line for `machine`. */
export function qemuArgs(name: string, m: QemuMachine, p: QemuProcessPaths, incoming?: 'defer'): string[] {
  return [
    '-name',
    name,
    '-nodefaults',
    '-no-user-config',
    '-machine',
    'q35',
    ...accelArgs(m.accel, m.cpu),
    '-smp',
    '1',
    '-m',
    String(m.memoryMiB),
    '-kernel',
    m.kernel,
    '-initrd',
    m.initrd,
    '-append',
    m.append,
    '-netdev',
    `tap,id=n0,ifname=${p.tap},script=no,downscript=no`,
    '-device',
    `virtio-net-pci,netdev=n0,mac=${m.mac},romfile=`,
    '-display',
    'none',
    '-serial',
    `file:${p.serial}`,
    '-monitor',
    'none',
    '-qmp',
    `unix:${p.qmp},server=on,wait=off`,
    '-no-reboot',
    ...(m.extraArgs ?? []),
    ...(incoming ? ['-incoming', incoming] : []),
  ];
}

export interface QemuSpawnOptions {
  /** QEMU binary (default qemu-system-x86_64 from PATH). */
  binary: string;
  /** Run inside this network namespace (`ip netns exec`), where the tap and bridge are. */
  netns?: string;
  args: readonly string[];
  paths: QemuProcessPaths;
  guest: string;
  /** Kill QEMU when this process dies (default true; needs util-linux setpriv). */
  dieWithParent?: boolean;
}

const SETPRIV = '/usr/bin/setpriv';

/** A running QEMU. `exited` settles when the process is gone (never rejects). */
export class QemuProcess {
  readonly qmp: QmpClient;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private stderr = '';
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;

  private constructor(
    private readonly child: ChildProcess,
    readonly options: QemuSpawnOptions,
  ) {
    this.qmp = new QmpClient(`offlink-${options.guest}`);
    child.stderr?.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-4000);
    });
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get alive(): boolean {
    return this.exitInfo === undefined;
  }

  /** What QEMU said on stderr lately (its errors: "could not open…", "load of migration failed…"). */
  get errors(): string {
    return this.stderr.trim();
  }

  describeExit(): string {
    const e = this.exitInfo;
    if (!e) return 'running';
    const how = e.signal ? `killed by ${e.signal}` : `exited with status ${e.code}`;
    return this.errors ? `${how}: ${this.errors.split('\n').slice(-3).join('; ')}` : how;
  }

  /** Spawn QEMU and connect to its QMP socket (retried until the socket exists, QEMU exits, or timeout). */
  static async start(options: QemuSpawnOptions, signal?: AbortSignal): Promise<QemuProcess> {
    rmSync(options.paths.qmp, { force: true });
    const argv = [
      ...(options.netns ? ['ip', 'netns', 'exec', options.netns] : []),
      // QEMU dies with us (the guests are the agent's children; none is left spinning after a crash).
      ...(options.dieWithParent !== false && existsSync(SETPRIV)
        ? [SETPRIV, '--pdeathsig', 'KILL', '--']
        : []),
      options.binary,
      ...options.args,
    ];
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    const proc = new QemuProcess(child, options);
    const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
    try {
      await proc.connect(spawnError, signal);
    } catch (err) {
      await proc.kill();
      throw err;
    }
    return proc;
  }

  private async connect(spawnError: Promise<Error>, signal?: AbortSignal): Promise<void> {
    const g = this.options.guest;
    let failed: Error | undefined;
    void spawnError.then((e) => {
      failed = e;
    });
    const deadline = performance.now() + 15_000;
    for (;;) {
      signal?.throwIfAborted();
      if (failed) {
        const missing = (failed as NodeJS.ErrnoException).code === 'ENOENT';
        throw new HypervisorError(
          'ERR_HYPERVISOR',
          missing
            ? `guest ${g}: ${this.options.netns ? 'ip (iproute2)' : this.options.binary} not found: install qemu-system-x86 (scripts/bootstrap)`
            : `guest ${g}: starting QEMU failed: ${failed.message}`,
          { guest: g, cause: failed },
        );
      }
      if (!this.alive) {
        const notFound =
          /No such file|not found/i.test(this.errors) && this.errors.includes(this.options.binary);
        throw new HypervisorError(
          'ERR_HYPERVISOR',
          notFound
            ? `guest ${g}: ${this.options.binary} not found: install qemu-system-x86 (scripts/bootstrap)`
            : `guest ${g}: QEMU ${this.describeExit()}`,
          { guest: g },
        );
      }
      try {
        await this.qmp.connect(this.options.paths.qmp, { timeoutMs: 5_000, ...(signal ? { signal } : {}) });
        return;
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        const retry = err instanceof QmpDisconnectedError && /ENOENT|ECONNREFUSED/.test(err.message);
        if (!retry || performance.now() > deadline) {
          throw new HypervisorError(
            'ERR_HYPERVISOR',
            `guest ${g}: no QMP connection: ${(err as Error).message}`,
            {
              guest: g,
              cause: err,
            },
          );
        }
      }
      await new Promise((r) => setTimeout(r, 30));
    }
  }

  /**
   * Wait until the serial console shows `pattern` (the guest's "ready" line). Fails early when QEMU
   * exits, and after `timeoutMs`.
   */
  async waitForConsole(pattern: RegExp, timeoutMs: number, signal?: AbortSignal): Promise<RegExpExecArray> {
    const deadline = performance.now() + timeoutMs;
    const reader = new TailReader(this.options.paths.serial);
    try {
      for (;;) {
        const m = pattern.exec(reader.read());
        if (m) return m;
        signal?.throwIfAborted();
        if (!this.alive)
          throw new HypervisorError(
            'ERR_HYPERVISOR',
            `guest ${this.options.guest}: QEMU ${this.describeExit()} before the guest booted`,
            { guest: this.options.guest },
          );
        if (performance.now() > deadline)
          throw new HypervisorError(
            'ERR_HYPERVISOR_BOOT',
            `guest ${this.options.guest}: not booted after ${Math.round(timeoutMs / 1000)} s (no ${pattern.source} on its console ${this.options.paths.serial})`,
            { guest: this.options.guest },
          );
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      reader.close();
    }
  }

  /** Ask QEMU to quit over QMP; kill it when that fails or takes longer than `graceMs`. */
  async quit(graceMs = 5_000): Promise<void> {
    if (!this.alive) return;
    await this.qmp.execute('quit').catch(() => {});
    const gone = await within(
      this.exited.then(() => true),
      graceMs,
      false,
    );
    if (!gone) await this.kill();
    await this.qmp.close();
  }

  /** SIGKILL, and wait until it is gone. */
  async kill(): Promise<void> {
    if (this.alive) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
    await this.qmp.close();
  }
}

/** `p`, or `fallback` after `ms` (the timer is cleared either way, so it holds no process open). */
export async function within<T, F>(p: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<F>((r) => (timer = setTimeout(() => r(fallback), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Reads what was appended to a file since the last read (the whole file on the first). */
class TailReader {
  private fd: number | undefined;
  private text = '';
  private pos = 0;

  constructor(private readonly path: string) {}

  read(): string {
    try {
      this.fd ??= openSync(this.path, 'r');
    } catch {
      return this.text;
    }
    const buf = Buffer.alloc(65536);
    for (;;) {
      const n = readSync(this.fd, buf, 0, buf.length, this.pos);
      if (n <= 0) break;
      this.pos += n;
      this.text = (this.text + buf.subarray(0, n).toString('latin1')).slice(-65536);
    }
    return this.text;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
