// The lab's libvirt guest (`--guest libvirt`): one libvirtd per host (libvirt-hosts.ts) and one transient
// domain, created on host A before anything else looks for it, built from the QEMU driver's guest image
// (Debian's kernel, a busybox initramfs with oflguest: the same services, probes and counter as the lab's
// QEMU guests, dual-stack like them). Off-link the agents migrate it (`hypervisor.driver: libvirt`, configs.ts); on-link the lab
// process does, with plain `virsh migrate --live` between the two libvirtds through the same libvirt driver
// the agents use (OnLinkLibvirt), so the two topologies differ only in what offlink adds.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { GuestNetwork } from '../hypervisor/driver.ts';
import { LibvirtDriver } from '../hypervisor/libvirt/driver.ts';
import { buildGuestImage, findGuestKernel, guestCmdline } from '../hypervisor/qemu/guest-image.ts';
import type { Logger } from '../log.ts';
import { netnsSpawner } from '../system/process.ts';
import { type CommandRunner, ExecRunner } from '../system/runner.ts';
import { LibvirtHosts, qemuTcpUri } from './libvirt-hosts.ts';
import { LabError } from './netns.ts';
import type { OnLinkGuests } from './onlink-vms.ts';
import { type GuestPlan, guestIpv4, type HostName, type Topology } from './topology.ts';

/** What the libvirt guest needs on this machine, each with the Debian package (scripts/bootstrap) that gives it. */
const REQUIRED = [
  { path: '/usr/sbin/libvirtd', pkg: 'libvirt-daemon and libvirt-daemon-driver-qemu' },
  {
    path: '/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so',
    pkg: 'libvirt-daemon-driver-qemu',
  },
  { path: '/usr/bin/virsh', pkg: 'libvirt-clients' },
  { path: '/usr/bin/qemu-system-x86_64', pkg: 'qemu-system-x86' },
  { path: '/usr/bin/busybox', pkg: 'busybox-static' },
] as const;

/** Throws a LabError naming what is missing for `--guest libvirt` and how to get it. */
export function checkLibvirtRequirements(exists: (path: string) => boolean = existsSync): void {
  for (const { path, pkg } of REQUIRED) {
    if (!exists(path))
      throw new LabError(
        'ERR_LAB_MISSING_PACKAGE',
        `--guest libvirt needs ${path} (Debian package ${pkg}): run scripts/bootstrap`,
      );
  }
  if (!/^libvirt-qemu:/m.test(readFileSync('/etc/passwd', 'utf8')))
    throw new LabError(
      'ERR_LAB_MISSING_PACKAGE',
      "--guest libvirt needs the libvirt-qemu user (libvirtd's QEMU driver will not start without it): run scripts/bootstrap",
    );
  try {
    findGuestKernel();
  } catch (err) {
    throw new LabError('ERR_LAB_MISSING_PACKAGE', `--guest libvirt: ${(err as Error).message}`);
  }
}

export interface DomainSpec {
  name: string;
  kernel: string;
  initrd: string;
  cmdline: string;
  bridge: string;
  mac: string;
  memoryMiB?: number;
}

/**
 * A TCG domain with direct kernel boot and a virtio NIC on `bridge`; its serial console goes to
 * `/var/log/libvirt/qemu/<name>.serial.log` (the host's own log directory, as libvirtd sees it).
 */
export function domainXml(d: DomainSpec): string {
  return `<domain type='qemu'>
  <name>${d.name}</name>
  <memory unit='MiB'>${d.memoryMiB ?? 128}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>${d.kernel}</kernel>
    <initrd>${d.initrd}</initrd>
    <cmdline>${d.cmdline}</cmdline>
  </os>
  <cpu mode='custom' match='exact'><model fallback='forbid'>qemu64</model></cpu>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <interface type='bridge'>
      <source bridge='${d.bridge}'/>
      <mac address='${d.mac}'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'><source path='/var/log/libvirt/qemu/${d.name}.serial.log'/><target port='0'/></serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
`;
}

/** The lab guest's libvirt domain name. */
export const domainName = (g: GuestPlan) => `ofl-${g.name}`;

/** The lab's two libvirtds and its domain. */
export class LabLibvirt {
  readonly hosts: LibvirtHosts;

  constructor(
    private readonly topo: Topology,
    dir: string,
    options: { detached?: boolean } = {},
  ) {
    this.hosts = new LibvirtHosts(dir, options);
  }

  uri(host: HostName): string {
    return qemuTcpUri(this.topo.careOf[host]);
  }

  /**
   * Start both libvirtds (each listening on its host's care-of address) and create the domain on host A,
   * on its guest bridge (off-link the lab makes that bridge first; the agent adopts it).
   */
  async start(runner: CommandRunner, signal?: AbortSignal): Promise<void> {
    const topo = this.topo;
    const [image] = await Promise.all([
      buildGuestImage(),
      this.hosts.start(topo.hosts.map((h) => ({ name: h.name, ns: h.ns, address: topo.careOf[h.name] }))),
    ]);
    signal?.throwIfAborted();
    const a = topo.hosts[0];
    const offLink = topo.kind === 'off-link';
    for (const g of topo.guests) {
      if (offLink) {
        await runner.run(['ip', '-n', a.ns, 'link', 'add', g.bridge, 'type', 'bridge']);
        await runner.run(['ip', '-n', a.ns, 'link', 'set', g.bridge, 'mtu', '1460', 'up']);
      }
      const xml = join(this.hosts.dir, `${domainName(g)}.xml`);
      writeFileSync(
        xml,
        domainXml({
          name: domainName(g),
          kernel: image.kernel,
          initrd: image.initrd,
          // the addresses the plan gives (IPv6: the SLAAC one off-link), static so no router advertisement
          // is waited for; dual-stack: the IPv4 address and gateway too
          cmdline: guestCmdline({
            address: `${g.address}/64`,
            ...(g.ipv4 ? { ipv4: guestIpv4(g.ipv4) } : {}),
            ...(offLink ? { mtu: 1460 } : {}),
          }),
          bridge: g.bridge,
          mac: g.mac,
        }),
      );
      await this.hosts.virsh(a.name, ['create', xml]);
    }
  }

  /** Where a host's libvirt logs are (libvirtd.log, qemu/<domain>.log and .serial.log). */
  logDir(host: HostName): string {
    return join(this.hosts.host(host).dir, 'log');
  }

  close(): Promise<void> {
    return this.hosts.close();
  }
}

/**
 * The on-link baseline with a libvirt guest: `virsh migrate --live` from one libvirtd to the other on one
 * segment, nothing else. The lab process drives the agents' libvirt driver, one per host, its virsh run
 * inside that host's namespace (the libvirtds listen on the hosts' addresses).
 */
export class OnLinkLibvirt implements OnLinkGuests {
  private readonly drivers: Record<HostName, LibvirtDriver>;
  private readonly network: GuestNetwork;

  constructor(
    private readonly topo: Topology,
    lv: LabLibvirt,
    logger?: Logger,
  ) {
    const g = topo.guests[0]!;
    this.network = { name: g.network, bridge: g.bridge, guests: topo.guests.map((x) => x.name) };
    const guests = Object.fromEntries(topo.guests.map((x) => [x.name, { domain: domainName(x) }]));
    const driver = (h: Topology['hosts'][number]) => {
      const peer = topo.hosts.find((p) => p.name !== h.name)!;
      return new LibvirtDriver({
        host: h.name,
        uri: lv.uri(h.name),
        peers: { [peer.name]: lv.uri(peer.name) },
        guests,
        runner: new ExecRunner({ netns: h.ns, timeoutMs: 180_000 }),
        spawner: netnsSpawner(h.ns),
        ...(logger ? { logger: logger.child({ host: h.name }) } : {}),
      });
    };
    const [a, b] = topo.hosts;
    this.drivers = { [a.name]: driver(a), [b.name]: driver(b) } as Record<HostName, LibvirtDriver>;
    for (const d of Object.values(this.drivers)) d.start();
  }

  /** libvirt's figures beside the wall time: `downtimeMs` as libvirt reports it, `pausedMs` from its events. */
  async migrate(
    from: HostName,
    to: HostName,
    signal?: AbortSignal,
  ): Promise<{ hypervisorMs: number; phases: Record<string, number> }> {
    const phases: Record<string, number> = {};
    const t0 = performance.now();
    for (const g of this.topo.guests) {
      const options = { network: this.network, source: from, ...(signal ? { signal } : {}) };
      const incoming = await this.drivers[to].prepareIncoming(g.name, options);
      const r = await this.drivers[from].migrate(
        g.name,
        { host: to, incoming },
        { network: this.network, ...(signal ? { signal } : {}) },
      );
      for (const [k, v] of [
        ['downtimeMs', r.downtimeMs],
        ['pausedMs', r.pausedMs],
      ] as const)
        if (v !== undefined) phases[k] = Math.max(phases[k] ?? 0, v);
    }
    const hypervisorMs = performance.now() - t0;
    return { hypervisorMs, phases: { ...phases, hypervisorMs } };
  }

  /** Stop the event watchers; the domain and the libvirtds are LabLibvirt's. */
  async close(): Promise<void> {
    await Promise.all(Object.values(this.drivers).map((d) => d.close()));
  }
}
