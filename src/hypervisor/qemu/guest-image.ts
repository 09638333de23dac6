// The QEMU guests' image, built at run time and cached by content hash: Debian's kernel (vmlinuz as it
// is) and a busybox initramfs whose /init (guest/init.sh) mounts proc/sys/devtmpfs, loads the
// virtio-net modules in the order that works (notes/qemu-guest.md), brings eth0 up, takes its address
// by SLAAC from the network's router advertisements (or from offlink.addr= on the kernel command line),
// and runs guest/oflguest.c (compiled with gcc -static here): UDP echo, the lab's probe/stream
// endpoint, a TCP line service with a counter that keeps counting.
//
// The initramfs is written as a newc cpio archive directly (below) rather than through cpio(1): it
// needs a /dev/console node, which cpio can only copy from a real node (mknod, root), and a writer of
// our own gives the same bytes for the same inputs, so the cache key is the content hash.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import {
  formatIPv6,
  ipv4Number,
  isIPv4Text,
  parseIPv4Destination,
  parseIPv6,
  parsePrefix,
} from '../../protocol/address.ts';
import { HypervisorError } from '../driver.ts';

const execFileP = promisify(execFile);

/** Insmod order that works (virtio fails with "unknown symbol" unless virtio_ring is first). */
export const GUEST_MODULES = [
  'virtio_ring',
  'virtio',
  'virtio_pci_modern_dev',
  'virtio_pci_legacy_dev',
  'virtio_pci',
  'failover',
  'net_failover',
  'virtio_net',
] as const;

/** The guest's services (guest/oflguest.c). */
export const GUEST_PORTS = { udpEcho: 7, control: 5000, probe: 40001, stream: 40000 } as const;

/** What the guest prints on its console once its services listen (the driver waits for it). */
export const GUEST_READY = /offlink-guest: ready boot ([0-9a-f]+)/;

/** Where the bootstrap script puts the kernel extracted from linux-image-amd64's .deb. */
export const KERNEL_CACHE = '/var/cache/offlink/kernel';

export interface GuestKernel {
  version: string;
  vmlinuz: string;
  /** Directory holding kernel/drivers/… for this version (…/lib/modules/<version>). */
  modulesDir: string;
}

export interface GuestImage {
  kernel: string;
  initrd: string;
  kernelVersion: string;
  /** Content hash of the initramfs inputs (the cache key). */
  hash: string;
  /** True when this call built it; false when it came from the cache. */
  built: boolean;
  buildMs: number;
}

export interface GuestImageOptions {
  /** Default: $OFFLINK_CACHE_DIR, else /var/cache/offlink as root, else $XDG_CACHE_HOME/offlink. */
  cacheDir?: string;
  kernel?: GuestKernel;
  /** Default: busybox from PATH (must be the static build: it runs in the guest). */
  busybox?: string;
  gcc?: string;
}

function imageError(message: string, cause?: unknown): HypervisorError {
  return new HypervisorError('ERR_HYPERVISOR_IMAGE', message, cause === undefined ? {} : { cause });
}

export function defaultCacheDir(): string {
  const env = process.env['OFFLINK_CACHE_DIR'];
  if (env) return env;
  if (process.getuid?.() === 0) return '/var/cache/offlink';
  return join(process.env['XDG_CACHE_HOME'] || join(homedir(), '.cache'), 'offlink');
}

/** Find a guest kernel with its virtio-net modules: the bootstrap's cache first, then /boot. */
export function findGuestKernel(roots: readonly string[] = [KERNEL_CACHE, '/']): GuestKernel {
  for (const root of roots) {
    const boot = join(root, 'boot');
    let names: string[] = [];
    try {
      names = readdirSync(boot).filter((n) => n.startsWith('vmlinuz-'));
    } catch {
      continue;
    }
    for (const name of names.sort().reverse()) {
      const version = name.slice('vmlinuz-'.length);
      const modulesDir = join(root, 'lib', 'modules', version);
      if (existsSync(join(modulesDir, 'kernel', 'drivers', 'net', 'virtio_net.ko'))) {
        return { version, vmlinuz: join(boot, name), modulesDir };
      }
    }
  }
  throw imageError(
    `no guest kernel with virtio-net modules in ${roots.map((r) => join(r, 'boot')).join(' or ')}: run scripts/bootstrap (it extracts linux-image-amd64 into ${KERNEL_CACHE})`,
  );
}

/** Path of one module inside a Debian kernel tree. */
function modulePath(modulesDir: string, name: string): string {
  const where: Record<string, string> = {
    failover: 'kernel/net/core',
    net_failover: 'kernel/drivers/net',
    virtio_net: 'kernel/drivers/net',
  };
  return join(modulesDir, where[name] ?? 'kernel/drivers/virtio', `${name}.ko`);
}

async function which(cmd: string): Promise<string> {
  for (const dir of (process.env['PATH'] ?? '/usr/bin:/bin').split(':')) {
    const p = join(dir, cmd);
    if (existsSync(p)) return p;
  }
  throw imageError(
    `${cmd} not found: run scripts/bootstrap (Debian package ${cmd === 'busybox' ? 'busybox-static' : cmd})`,
  );
}

const here = new URL('./guest/', import.meta.url);

/** Build the guest image unless the cache holds one for the same inputs. */
export async function buildGuestImage(options: GuestImageOptions = {}): Promise<GuestImage> {
  const t0 = performance.now();
  const kernel = options.kernel ?? findGuestKernel();
  const busybox = options.busybox ?? (await which('busybox'));
  const gcc = options.gcc ?? 'gcc';
  const source = readFileSync(new URL('oflguest.c', here));
  const init = readFileSync(new URL('init.sh', here), 'utf8').replace('MODULES', GUEST_MODULES.join(' '));
  const busyboxBytes = readFileSync(busybox);
  if (!isStatic(busyboxBytes))
    throw imageError(`${busybox} is dynamically linked; the guest needs busybox-static`);
  const modules = GUEST_MODULES.map((m) => {
    const path = modulePath(kernel.modulesDir, m);
    try {
      return { name: m, bytes: readFileSync(path) };
    } catch (err) {
      throw imageError(`guest kernel ${kernel.version}: module ${path} missing`, err);
    }
  });
  const hash = createHash('sha256');
  hash.update('offlink guest image v1\0').update(init).update(source).update(busyboxBytes);
  for (const m of modules) hash.update(m.name).update(m.bytes);
  const key = hash.digest('hex').slice(0, 16);

  const dir = join(options.cacheDir ?? defaultCacheDir(), 'guest');
  const initrd = join(dir, `initrd-${key}.cpio.gz`);
  const result = { kernel: kernel.vmlinuz, initrd, kernelVersion: kernel.version, hash: key };
  if (existsSync(initrd)) return { ...result, built: false, buildMs: performance.now() - t0 };

  mkdirSync(dir, { recursive: true });
  const work = mkdtempSync(join(tmpdir(), 'offlink-guest-'));
  try {
    const src = join(work, 'oflguest.c');
    writeFileSync(src, source);
    const bin = join(work, 'oflguest');
    try {
      await execFileP(gcc, ['-static', '-Os', '-s', '-o', bin, src]);
    } catch (err) {
      throw imageError(
        `compiling the guest's services failed: ${(err as { stderr?: string }).stderr ?? err}`,
        err,
      );
    }
    const cpio = new NewcWriter();
    for (const d of [
      'bin',
      'sbin',
      'usr',
      'usr/bin',
      'usr/sbin',
      'dev',
      'proc',
      'sys',
      'tmp',
      'run',
      'lib',
      'lib/modules',
    ])
      cpio.dir(d);
    cpio.node('dev/console', 0o020600, 5, 1);
    cpio.file('init', 0o755, Buffer.from(init));
    cpio.file('bin/busybox', 0o755, busyboxBytes);
    cpio.file('bin/oflguest', 0o755, readFileSync(bin));
    for (const m of modules) cpio.file(`lib/modules/${m.name}.ko`, 0o644, m.bytes);
    const tmp = `${initrd}.${process.pid}.tmp`;
    writeFileSync(tmp, gzipSync(cpio.end(), { level: 6 }));
    renameSync(tmp, initrd);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return { ...result, built: true, buildMs: performance.now() - t0 };
}

/** A static ELF has no PT_INTERP program header. */
function isStatic(elf: Buffer): boolean {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2) return true; // not ELF64: let it be
  const phoff = Number(elf.readBigUInt64LE(32));
  const phentsize = elf.readUInt16LE(54);
  const phnum = elf.readUInt16LE(56);
  for (let i = 0; i < phnum; i++) {
    if (elf.readUInt32LE(phoff + i * phentsize) === 3) return false; // PT_INTERP
  }
  return true;
}

/**
 * A dual-stack guest's static IPv4 side (RFC 5555 networks): its address with the subnet's length and
 * its default gateway (the network's IPv4 gateway on the bridge, the same on every host).
 */
export interface GuestIpv4 {
  /** `10.1.0.10/24` */
  address: string;
  /** `10.1.0.1`, inside the address's subnet */
  gateway: string;
}

/** What is wrong with `v` as a guest's IPv4 side (the key and one sentence), or undefined when nothing is. */
export function guestIpv4Problem(v: GuestIpv4): { key: 'address' | 'gateway'; why: string } | undefined {
  const address = String(v.address);
  const gateway = String(v.gateway);
  const bad = (key: 'address' | 'gateway', why: string) => ({ key, why });
  if (!isIPv4Text(address)) return bad('address', `${address}: not an IPv4 address (10.1.0.10/24)`);
  const slash = address.indexOf('/');
  if (slash < 0) return bad('address', `${address}: needs its subnet's length (10.1.0.10/24)`);
  let net: { address: string; length: number };
  try {
    net = parseIPv4Destination(address);
  } catch (err) {
    return bad('address', (err as Error).message.replace(/^invalid IPv4 prefix "([^"]*)"/, '$1'));
  }
  if (net.length < 1 || net.length > 30) return bad('address', `${address}: the length must be 1..30`);
  const host = ipv4Number(address.slice(0, slash));
  const base = ipv4Number(net.address);
  const size = 2 ** (32 - net.length);
  if (host === base || host === base + size - 1)
    return bad('address', `${address}: the subnet's network or broadcast address`);
  if (gateway.includes('/')) return bad('gateway', `${gateway}: an address, without a length`);
  try {
    parseIPv4Destination(gateway);
  } catch {
    return bad('gateway', `${gateway}: not a dotted-quad IPv4 address`);
  }
  const gw = ipv4Number(gateway);
  if (gw < base || gw >= base + size)
    return bad('gateway', `${gateway}: not in the address's subnet ${net.address}/${net.length}`);
  if (gw === host) return bad('gateway', `${gateway}: the guest's own address`);
  return undefined;
}

export interface GuestCmdlineOptions {
  /** Static address (CIDR) instead of SLAAC. */
  address?: string;
  gateway?: string;
  /** A static IPv4 address and gateway beside the IPv6 ones (dual-stack guests); none by default. */
  ipv4?: GuestIpv4;
  mtu?: number;
  /** Seconds to wait for a SLAAC address. */
  slaacWaitS?: number;
  /** Extra kernel parameters. */
  extra?: readonly string[];
}

/**
 * The guest kernel's command line. `init_on_free=1` zeroes freed pages, which shrinks the RAM a
 * migration sends (73 → 56 MB in the notes) and with it the downtime.
 */
export function guestCmdline(options: GuestCmdlineOptions = {}): string {
  const params: string[] = [];
  if (options.address) params.push(`offlink.addr=${options.address}`);
  if (options.gateway) params.push(`offlink.gw=${options.gateway}`);
  if (options.ipv4) {
    const problem = guestIpv4Problem(options.ipv4);
    if (problem) throw imageError(`ipv4.${problem.key}: ${problem.why}`);
    params.push(`offlink.addr4=${options.ipv4.address}`, `offlink.gw4=${options.ipv4.gateway}`);
  }
  if (options.mtu) params.push(`offlink.mtu=${options.mtu}`);
  if (options.slaacWaitS !== undefined) params.push(`offlink.wait=${options.slaacWaitS}`);
  params.push(...(options.extra ?? []));
  for (const p of params) {
    if (p === '' || /\s/.test(p))
      throw imageError(`kernel parameter ${JSON.stringify(p)} is empty or contains whitespace`);
  }
  return ['console=ttyS0', 'quiet', 'panic=-1', 'init_on_free=1', ...params].join(' ');
}

/**
 * The address a guest takes by SLAAC on `prefix` (a /64) with NIC `mac`: modified EUI-64 (RFC 4291
 * §2.5.1), which is what the guest kernel uses by default (addr_gen_mode eui64).
 */
export function slaacAddress(prefix: string, mac: string): string {
  const bytes = parseIPv6(parsePrefix(prefix).address);
  const m = mac.split(':').map((h) => Number.parseInt(h, 16));
  if (m.length !== 6 || m.some((b) => !Number.isInteger(b) || b < 0 || b > 255))
    throw imageError(`"${mac}" is not a MAC address`);
  bytes.set([m[0]! ^ 0x02, m[1]!, m[2]!, 0xff, 0xfe, m[3]!, m[4]!, m[5]!], 8);
  return formatIPv6(bytes);
}

/** Writer of the "newc" cpio format the kernel unpacks (linux Documentation/driver-api/early-userspace). */
export class NewcWriter {
  private readonly chunks: Buffer[] = [];
  private ino = 1;

  dir(name: string, mode = 0o755): this {
    return this.entry(name, 0o040000 | mode, Buffer.alloc(0), 0, 0, 2);
  }

  file(name: string, mode: number, data: Buffer): this {
    return this.entry(name, 0o100000 | mode, data, 0, 0, 1);
  }

  /** A device node; `mode` includes the type bits (0o020000 char, 0o060000 block). */
  node(name: string, mode: number, major: number, minor: number): this {
    return this.entry(name, mode, Buffer.alloc(0), major, minor, 1);
  }

  end(): Buffer {
    this.entry('TRAILER!!!', 0, Buffer.alloc(0), 0, 0, 1, 0);
    return Buffer.concat(this.chunks);
  }

  private entry(
    name: string,
    mode: number,
    data: Buffer,
    rdevMajor: number,
    rdevMinor: number,
    nlink: number,
    ino = this.ino++,
  ): this {
    const nameBytes = Buffer.from(`${name}\0`);
    const fields = [ino, mode, 0, 0, nlink, 0, data.length, 0, 0, rdevMajor, rdevMinor, nameBytes.length, 0];
    const header = Buffer.from(`070701${fields.map((f) => f.toString(16).padStart(8, '0')).join('')}`);
    this.chunks.push(header, nameBytes, pad(header.length + nameBytes.length), data, pad(data.length));
    return this;
  }
}

function pad(len: number): Buffer {
  return Buffer.alloc((4 - (len % 4)) % 4);
}
