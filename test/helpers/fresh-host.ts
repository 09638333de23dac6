// A "fresh machine" for tests that install and run offlink as an operator would (test/deploy.test.ts):
// a network namespace plus a private mount namespace in which /etc, /usr and /var are overlays of this
// machine's (every write lands in the test's directory) and /run/offlink is a tmpfs of its own. A package
// installed there, its config, its database and its units exist only there; this machine is left as it
// was. A holder process (`sleep`, renamed offlink-fresh-host-<test pid>) keeps the mount namespace; the
// next run kills holders whose test process is gone.
//
// systemd is not PID 1 here, so `systemctl enable --now UNIT` is played by `startUnit`: it reads the
// installed unit and does what systemd would for it — creates its StateDirectory and RuntimeDirectory,
// runs ExecStartPre, then ExecStart with the unit's CapabilityBoundingSet and NoNewPrivileges (setpriv) —
// and `systemctl reload UNIT` sends SIGHUP. Any other systemctl command fails, so a guide cannot lean on
// one the test does not play.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { pidAlive } from '../../src/lab/netns.ts';

const HOLDER = 'offlink-fresh-host';

/** Kill holders left by test processes that no longer exist (a crashed run). */
export function removeStaleHolders(): number {
  let killed = 0;
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    const m = new RegExp(`^${HOLDER}-(\\d+)\\0`).exec(cmdline);
    if (m && !pidAlive(Number(m[1]))) {
      try {
        process.kill(Number(pid), 'SIGKILL');
        killed++;
      } catch {}
    }
  }
  return killed;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

const PRELUDE = fileURLToPath(new URL('./fresh-host.sh', import.meta.url));

export class FreshHost {
  private constructor(
    readonly name: string,
    readonly netns: string,
    /** This machine's directory: overlays (`upper/etc`, …), unit logs and pid files. */
    readonly dir: string,
    private readonly hostsDir: string,
    private readonly holder: ChildProcess,
  ) {}

  /** Make machine `name` on network namespace `netns`; its files go to `<hostsDir>/<name>/`. */
  static async open(name: string, netns: string, hostsDir: string): Promise<FreshHost> {
    const dir = join(hostsDir, name);
    mkdirSync(dir, { recursive: true });
    const script = `set -e
for d in etc usr var; do
  mkdir -p "$H/upper/$d" "$H/work/$d"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$H/upper/$d,workdir=$H/work/$d" "/$d"
done
mkdir -p /run/offlink
mount -t tmpfs tmpfs /run/offlink
echo ready
exec -a "${HOLDER}-${process.pid}" sleep infinity`;
    const holder = spawn('unshare', ['--mount', '--propagation', 'private', 'bash', '-c', script], {
      env: { ...process.env, H: dir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    holder.stderr?.on('data', (d) => (stderr += d));
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: holder.stdout! }).on('line', (l) => l === 'ready' && resolve());
      holder.once('exit', (code) => reject(new Error(`fresh host ${name}: setup exited ${code}: ${stderr}`)));
    });
    return new FreshHost(name, netns, dir, hostsDir, holder);
  }

  /** Run a bash script (-eu -o pipefail) on this machine, in `cwd`, with the prelude's functions. */
  run(script: string, options: { cwd?: string; input?: string } = {}): Promise<RunResult> {
    const child = spawn(
      'nsenter',
      [
        `--mount=/proc/${this.holder.pid}/ns/mnt`,
        '--',
        'ip',
        'netns',
        'exec',
        this.netns,
        'bash',
        '-euo',
        'pipefail',
        '-c',
        `source ${JSON.stringify(PRELUDE)}\ncd ${JSON.stringify(options.cwd ?? '/')}\n${script}`,
      ],
      {
        env: { ...process.env, OFFLINK_HOST_DIR: this.dir, OFFLINK_HOSTS_DIR: this.hostsDir },
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.stdin.end(options.input ?? '');
    return new Promise((resolve) =>
      child.once('close', (code) => resolve({ code: code ?? -1, stdout, stderr })),
    );
  }

  /** Write `text` to `path` on this machine (as an editor would). */
  async writeFile(path: string, text: string): Promise<RunResult> {
    return this.run(`mkdir -p "$(dirname ${JSON.stringify(path)})"\ncat > ${JSON.stringify(path)}`, {
      input: text,
    });
  }

  /** Pid of a unit started by `systemctl enable --now`, if any. */
  unitPid(unit: string): number | undefined {
    try {
      return Number(readFileSync(join(this.dir, 'units', `${unit}.pid`), 'utf8'));
    } catch {
      return undefined;
    }
  }

  unitLog(unit: string): string {
    try {
      return readFileSync(join(this.dir, 'units', `${unit}.log`), 'utf8');
    } catch {
      return '';
    }
  }

  /** Stop its units and let its mount namespace go. */
  async close(): Promise<void> {
    let units: string[] = [];
    try {
      units = readdirSync(join(this.dir, 'units')).filter((f) => f.endsWith('.pid'));
    } catch {}
    for (const f of units) {
      const pid = this.unitPid(f.slice(0, -4));
      if (pid === undefined) continue;
      try {
        process.kill(pid, 'SIGTERM');
      } catch {}
      for (let i = 0; i < 100 && pidAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
      if (pidAlive(pid)) process.kill(pid, 'SIGKILL');
    }
    if (this.holder.exitCode === null && this.holder.signalCode === null) {
      const gone = new Promise((r) => this.holder.once('exit', r));
      this.holder.kill('SIGKILL');
      await gone;
    }
  }
}
