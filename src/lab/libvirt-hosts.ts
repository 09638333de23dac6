// libvirt "hosts" on one machine (root), for `offlink lab --guest libvirt` and the integration tests: one
// libvirtd per host network namespace, each in its own mount and UTS namespace (libvirtd-host.sh) with its
// own config, run, lib, log and cache directories under one directory and its own host_uuid, listening for
// qemu+tcp on the host's address. Guests are QEMU (TCG). docs/libvirt.md explains the settings.
//
// The directory is the caller's (the lab: <state dir>/libvirt; `lab down` calls killLibvirtIn on it), or a
// test's `<tmpdir>/offlink-libvirt-<tag>-…` where the tag starts with `t<pid>-` (the NetnsLab's):
// `removeStaleLibvirt()` finds the directories of runs whose process is gone and kills what they left
// (QEMUs by libvirt's pid files, libvirtd by its own), so a crashed run leaves nothing running.
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExecRunner } from '../system/runner.ts';
import { LabError, pidAlive, spawnInNamespace } from './netns.ts';

const SCRIPT = new URL('./libvirtd-host.sh', import.meta.url).pathname;
/** libvirt's compiled-in directories, bind-mounted per host (they must exist as mount points). */
const MOUNT_POINTS = [
  '/etc/libvirt',
  '/run/libvirt',
  '/var/lib/libvirt',
  '/var/log/libvirt',
  '/var/cache/libvirt',
];
const PREFIX = 'offlink-libvirt-';

export interface LibvirtHostSpec {
  /** Host name (also the UTS hostname libvirtd sees). */
  name: string;
  /** Network namespace (full name). */
  ns: string;
  /** The host's address: libvirtd listens on it, and incoming migrations arrive on it. */
  address: string;
  /** qemu.conf's migrate_tls_x509_cert_dir (for `virsh migrate --tls`); default: none. */
  tlsDir?: string;
}

export interface LibvirtHost extends LibvirtHostSpec {
  uri: string;
  uuid: string;
  /** This host's libvirt directories (etc, run, lib, log, cache). */
  dir: string;
  daemon: ChildProcess;
  /** Milliseconds from start to the first answer (mostly QEMU's capabilities probe). */
  readyMs: number;
}

export function qemuTcpUri(address: string): string {
  return `qemu+tcp://[${address}]/system`;
}

export interface LibvirtHostsOptions {
  /** Keep the libvirtds running after this process exits (`lab up`). */
  detached?: boolean;
}

export class LibvirtHosts {
  readonly hosts = new Map<string, LibvirtHost>();
  private readonly runner = new ExecRunner({ timeoutMs: 120_000 });

  /** `dir` holds one directory per host (made here); the caller removes it (close() does). */
  constructor(
    readonly dir: string,
    private readonly options: LibvirtHostsOptions = {},
  ) {
    mkdirSync(dir, { recursive: true });
  }

  /** A test's hosts under `<tmpdir>/offlink-libvirt-<tag>-…`; `tag` must start with `t<pid>-` (a NetnsLab's). */
  static temporary(tag: string): LibvirtHosts {
    return new LibvirtHosts(mkdtempSync(join(tmpdir(), `${PREFIX}${tag}-`)));
  }

  host(name: string): LibvirtHost {
    const h = this.hosts.get(name);
    if (!h) throw new LabError('ERR_LAB_LIBVIRTD', `no libvirt host ${name}`);
    return h;
  }

  /** Start one libvirtd per spec, in parallel; resolves when every one answers. */
  async start(specs: readonly LibvirtHostSpec[], timeoutMs = 90_000): Promise<void> {
    for (const m of MOUNT_POINTS) mkdirSync(m, { recursive: true });
    await Promise.all(specs.map((s) => this.startOne(s, timeoutMs)));
  }

  private async startOne(spec: LibvirtHostSpec, timeoutMs: number): Promise<void> {
    const dir = join(this.dir, spec.name);
    const uuid = randomUUID();
    for (const d of ['etc', 'run', 'lib', 'log/qemu', 'cache']) mkdirSync(join(dir, d), { recursive: true });
    writeFileSync(join(dir, 'etc', 'libvirtd.conf'), libvirtdConf(spec.address, uuid));
    writeFileSync(join(dir, 'etc', 'qemu.conf'), qemuConf(spec.address, spec.tlsDir));
    const t0 = performance.now();
    const output = join(dir, 'libvirtd.out');
    const daemon = spawnInNamespace(spec.ns, ['unshare', '--uts', 'sh', SCRIPT, dir, spec.name], {
      logFile: output,
      detached: this.options.detached ?? false,
    });
    const host: LibvirtHost = { ...spec, uri: qemuTcpUri(spec.address), uuid, dir, daemon, readyMs: 0 };
    this.hosts.set(spec.name, host);
    let exited = false;
    daemon.once('exit', () => {
      exited = true;
    });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.virsh(spec.name, ['version'], { allowFailure: true });
      if (r.exitCode === 0) break;
      if (exited || Date.now() > deadline) {
        throw new LabError(
          'ERR_LAB_LIBVIRTD',
          `libvirtd on ${spec.name} ${exited ? 'exited' : 'did not answer'}: ${r.stderr.trim()}\n${readTail(output)}\n${readTail(join(dir, 'log', 'libvirtd.log'))}`,
        );
      }
      await new Promise((res) => setTimeout(res, 200));
    }
    host.readyMs = performance.now() - t0;
  }

  /** `virsh -c <host's URI> …`, run inside the host's namespace. */
  virsh(host: string, args: readonly string[], options: { allowFailure?: boolean; input?: string } = {}) {
    const h = this.host(host);
    return this.runner.run(['ip', 'netns', 'exec', h.ns, 'virsh', '-q', '-c', h.uri, ...args], options);
  }

  /** A file of this host's libvirt log directory (`qemu/<domain>.log`, `libvirtd.log`). */
  logFile(host: string, name: string): string {
    return join(this.host(host).dir, 'log', name);
  }

  /** Kill the QEMUs and the libvirtds, then remove the directory. */
  async close(): Promise<void> {
    await killLibvirtIn(this.dir);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Kill what runs from a hosts directory: the QEMUs (libvirt's pid files; a QEMU outlives its libvirtd),
 * then each libvirtd (its own pid file). Their bind mounts live in the libvirtds' private mount
 * namespaces and go with the last process in them.
 */
export async function killLibvirtIn(dir: string): Promise<void> {
  await killLeftovers(dir);
  for (const host of safeReaddir(dir)) await killPidFile(join(dir, host, 'libvirtd.pid'), 'libvirtd');
}

/** Kill what the labs of processes that no longer exist left running, and remove their directories. */
export async function removeStaleLibvirt(): Promise<string[]> {
  const stale = readdirSync(tmpdir()).filter((n) => {
    const m = new RegExp(`^${PREFIX}t(\\d+)-`).exec(n);
    return m !== null && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]));
  });
  for (const n of stale) {
    const dir = join(tmpdir(), n);
    await killLibvirtIn(dir);
    rmSync(dir, { recursive: true, force: true });
  }
  return stale;
}

/** QEMUs by the pid files libvirt writes in each host's run/qemu (a QEMU outlives its libvirtd). */
async function killLeftovers(dir: string): Promise<void> {
  for (const host of safeReaddir(dir)) {
    const run = join(dir, host, 'run', 'qemu');
    for (const f of safeReaddir(run).filter((f) => f.endsWith('.pid')))
      await killPidFile(join(run, f), 'qemu-system');
  }
}

/** Kill the process a pid file names if its command line still says `what` (pids get reused). */
async function killPidFile(file: string, what: string): Promise<void> {
  if (!existsSync(file)) return;
  const pid = Number(readFileSync(file, 'utf8').trim());
  if (!Number.isInteger(pid) || pid <= 1 || !pidAlive(pid)) return;
  let cmdline = '';
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return;
  }
  if (!cmdline.includes(what)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {}
  for (let i = 0; i < 100 && pidAlive(pid); i++) await new Promise((r) => setTimeout(r, 20));
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function readTail(file: string): string {
  try {
    return readFileSync(file, 'utf8').slice(-3000);
  } catch {
    return '';
  }
}

/** Lab only: plain TCP without authentication, on the host's address. */
function libvirtdConf(address: string, uuid: string): string {
  return `listen_tls = 0
listen_tcp = 1
listen_addr = "${address}"
auth_tcp = "none"
auth_unix_rw = "none"
host_uuid = "${uuid}"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
`;
}

/**
 * QEMU as root with no security driver, namespaces or cgroups (nothing the tests need), guest output to
 * files (no virtlogd). migration_host is what the destination puts in the migration URI it hands the
 * source, migration_address where its QEMU listens: both this host's address (the default would be the
 * hostname, which resolves nowhere).
 */
function qemuConf(address: string, tlsDir?: string): string {
  const tls = tlsDir ? `migrate_tls_x509_cert_dir = "${tlsDir}"\nmigrate_tls_x509_verify = 1\n` : '';
  return `${tls}user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = [ ]
cgroup_controllers = [ ]
stdio_handler = "file"
migration_host = "${address}"
migration_address = "${address}"
`;
}
