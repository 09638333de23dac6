// A real etcd cluster (Debian's etcd-server) of 3 members: for the etcd binding store's tests on loopback
// (unique ports, data in a temp dir named after this process, every member killed by `stop()`; a crashed
// run's leftovers, its members and dir, are removed by the next run: the dir records the pids), and for
// `offlink lab --home-agents 2` and the HA cluster rig inside a namespace (members on that namespace's
// loopback addresses, data in a directory the caller gives; the lab's `lab down` kills them with the
// namespace and removes its state directory).
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

const TAG = 'offlink-etcd-';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Kill the members of runs whose test process is gone, and remove their dirs. */
function removeLeftovers(): void {
  for (const name of readdirSync(tmpdir())) {
    const m = new RegExp(`^${TAG}(\\d+)-`).exec(name);
    if (!m || alive(Number(m[1]))) continue;
    const dir = join(tmpdir(), name);
    const pids = join(dir, 'pids');
    if (existsSync(pids)) {
      for (const pid of readFileSync(pids, 'utf8').split('\n').filter(Boolean).map(Number)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {}
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

interface Member {
  name: string;
  client: string;
  peer: string;
  proc: ChildProcess | undefined;
  /** The tail of its stderr (or of its log file, with `logDir`). */
  log: string;
}

/** Members inside a network namespace, member i on `hosts[i]` (an address the namespace has). */
export interface EtcdNetns {
  netns: string;
  hosts: readonly string[];
}

/** Where a cluster keeps its data and logs, and whether it outlives this process. */
export interface EtcdPlace {
  /** Data directory (member i in DIR/m<i>); default a temp dir of this process, removed by `stop()`. */
  dir?: string;
  /** Each member's stderr to DIR/etcd-m<i>.log rather than kept in memory. */
  logDir?: string;
  /** Members keep running after this process exits (`offlink lab up`). */
  detached?: boolean;
}

export class EtcdCluster {
  readonly members: Member[] = [];
  private constructor(
    readonly dir: string,
    private readonly extraArgs: readonly string[],
    private readonly netns: string | undefined,
    private readonly place: EtcdPlace = {},
  ) {}

  /**
   * Start `size` members (each with `extraArgs` too) and wait until the cluster answers: on loopback, or
   * in a namespace (`at`), where other namespaces reach them through its routes.
   */
  static async start(
    size = 3,
    extraArgs: readonly string[] = [],
    at?: EtcdNetns,
    place: EtcdPlace = {},
  ): Promise<EtcdCluster> {
    let dir = place.dir;
    if (dir) mkdirSync(dir, { recursive: true, mode: 0o700 });
    else {
      removeLeftovers();
      dir = mkdtempSync(join(tmpdir(), `${TAG}${process.pid}-`));
    }
    const cluster = new EtcdCluster(dir, extraArgs, at?.netns, place);
    try {
      for (let i = 0; i < size; i++) {
        const host = at ? `[${at.hosts[i]}]` : '127.0.0.1';
        cluster.members.push({
          name: `m${i}`,
          client: `http://${host}:${at ? 2379 : await freePort()}`,
          peer: `http://${host}:${at ? 2380 : await freePort()}`,
          proc: undefined,
          log: '',
        });
      }
      for (let i = 0; i < size; i++) cluster.startMember(i);
      await cluster.healthy();
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  get endpoints(): string[] {
    return this.members.map((m) => m.client);
  }

  /** (Re)start member i on its data dir. */
  startMember(i: number): void {
    const m = this.members[i]!;
    const initial = this.members.map((x) => `${x.name}=${x.peer}`).join(',');
    const dataDir = join(this.dir, m.name);
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const argv = [
      'etcd',
      `--name=${m.name}`,
      `--data-dir=${dataDir}`,
      `--listen-client-urls=${m.client}`,
      `--advertise-client-urls=${m.client}`,
      `--listen-peer-urls=${m.peer}`,
      `--initial-advertise-peer-urls=${m.peer}`,
      `--initial-cluster=${initial}`,
      '--initial-cluster-state=new',
      `--initial-cluster-token=${TAG}${process.pid}`,
      '--log-level=warn',
      '--logger=zap',
      ...this.extraArgs,
    ];
    // `ip netns exec` execs etcd: the pid is the member's.
    const logFile = this.place.logDir ? join(this.place.logDir, `etcd-${m.name}.log`) : undefined;
    const fd = logFile ? openSync(logFile, 'a') : undefined;
    let proc: ChildProcess;
    try {
      proc = spawn(
        this.netns ? 'ip' : argv[0]!,
        this.netns ? ['netns', 'exec', this.netns, ...argv] : argv.slice(1),
        { stdio: ['ignore', 'ignore', fd ?? 'pipe'], detached: this.place.detached ?? false },
      );
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
    proc.on('error', () => {});
    if (this.place.detached) proc.unref();
    if (logFile) m.log = `see ${logFile}`;
    else
      proc.stderr!.on('data', (d) => {
        m.log = (m.log + d).slice(-4000);
      });
    m.proc = proc;
    writeFileSync(
      join(this.dir, 'pids'),
      this.members
        .map((x) => x.proc?.pid)
        .filter(Boolean)
        .join('\n'),
    );
  }

  /** Index of the member that is the raft leader now. */
  async leader(): Promise<number> {
    for (const m of this.members) {
      if (!m.proc) continue;
      const status = (await this.request(`${m.client}/v3/maintenance/status`, '{}')) as {
        header: { member_id: string };
        leader: string;
      };
      if (status.header.member_id === status.leader) return this.members.indexOf(m);
    }
    throw new Error('no etcd leader');
  }

  /** Freeze (SIGSTOP) or thaw (SIGCONT) member i: a member that holds connections and answers nothing. */
  pauseMember(i: number, paused: boolean): void {
    this.members[i]!.proc?.kill(paused ? 'SIGSTOP' : 'SIGCONT');
  }

  /** SIGKILL member i (its data stays). */
  async killMember(i: number): Promise<void> {
    const proc = this.members[i]!.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGKILL');
    await exited;
    this.members[i]!.proc = undefined;
  }

  /** Until every running member reports healthy (it has a leader and quorum). */
  async healthy(timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (const m of this.members) {
      if (!m.proc) continue;
      for (;;) {
        try {
          if (((await this.request(`${m.client}/health`)) as { health?: string }).health === 'true') break;
        } catch {}
        if (m.proc.exitCode !== null) throw new Error(`etcd ${m.name} exited: ${m.log}`);
        if (Date.now() > deadline) throw new Error(`etcd ${m.name} not healthy: ${m.log}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /** GET (or POST `body`) a member's JSON, from the namespace the members are in. */
  async request(url: string, body?: string): Promise<unknown> {
    if (!this.netns) {
      const res = await fetch(url, {
        signal: AbortSignal.timeout(1000),
        ...(body === undefined ? {} : { method: 'POST', body }),
      });
      return res.json();
    }
    const { stdout } = await execFileP('ip', [
      'netns',
      'exec',
      this.netns,
      'curl',
      '-sf',
      '-m',
      '1',
      ...(body === undefined ? [] : ['-d', body]),
      url,
    ]);
    return JSON.parse(stdout);
  }

  /** Kill every member and remove the data directory. */
  async stop(): Promise<void> {
    for (let i = 0; i < this.members.length; i++) await this.killMember(i);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
