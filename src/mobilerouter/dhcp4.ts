// DHCPv4 on a dual-stack network's guest link (RFC 5555 networks; docs/dataplane.md): Debian's dnsmasq,
// DHCP only (no DNS), bound to the bridge, running only while the network is active on this host — as
// radvd does for IPv6. It serves reservations only (each guest's address by its MAC, from the config), so
// every host that may hold the network hands out the same address to the same guest: a guest that
// migrated renews its lease with the new host's dnsmasq and keeps its address, with no lease state carried
// between hosts. `--dhcp-authoritative` makes dnsmasq answer a renewal it has no record of (the lease was
// granted by the previous host) with an ACK instead of ignoring it. The reservations are on its command
// line: an agent reload that changes them restarts dnsmasq, which loses nothing (no lease state is kept:
// the reservations are the state). A hosts file re-read on SIGHUP would spare the restart, but dnsmasq
// reads it as its unprivileged user, who cannot be assumed to reach the agent's run directory.

import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import { parseIPv4Destination } from '../protocol/address.ts';
import type { ProcessSpawner } from '../system/process.ts';
import { SupervisedChild } from '../system/supervised.ts';
import type { Dhcp4Config } from './config.ts';

export interface Dhcp4Input {
  bridge: string;
  /** The network's IPv4 prefixes (CIDR): one static range each, gateway .1 (on the bridge) as router. */
  prefixes: readonly string[];
  /** The guest link's MTU, sent as the interface MTU option (26). */
  mtu: number;
  config: Dhcp4Config;
}

/** A prefix length as a dotted netmask (24 → 255.255.255.0). */
function netmask(length: number): string {
  const n = length === 0 ? 0 : (0xffffffff << (32 - length)) >>> 0;
  return [24, 16, 8, 0].map((s) => (n >>> s) & 0xff).join('.');
}

/** dnsmasq's command line for one guest link; pure. */
export function dnsmasqArgv(input: Dhcp4Input, files: { pidFile: string }): string[] {
  const { config } = input;
  return [
    'dnsmasq',
    '--keep-in-foreground',
    '--conf-file=/dev/null',
    // DHCP only: no DNS server, no resolv.conf or /etc/hosts
    '--port=0',
    '--no-resolv',
    '--no-hosts',
    `--interface=${input.bridge}`,
    '--bind-interfaces',
    '--except-interface=lo',
    '--dhcp-authoritative',
    // reservations only: nothing to remember between restarts or hosts
    '--leasefile-ro',
    `--pid-file=${files.pidFile}`,
    '--log-facility=-',
    '--log-dhcp',
    ...input.prefixes.map((p) => {
      const { address, length } = parseIPv4Destination(p);
      return `--dhcp-range=${address},static,${netmask(length)},${config.leaseSeconds}`;
    }),
    ...config.hosts.map((h) => `--dhcp-host=${h.mac},${h.address}`),
    `--dhcp-option=option:mtu,${input.mtu}`,
    ...(config.dns?.length ? [`--dhcp-option=option:dns-server,${config.dns.join(',')}`] : []),
  ];
}

/** One dnsmasq for one guest link. start/stop are idempotent. */
export class Dhcp4Server {
  private readonly child: SupervisedChild;
  readonly pidPath: string;
  private input: Dhcp4Input & { runDir: string };

  constructor(
    components: { spawner: ProcessSpawner; clock: Clock; logger: Logger },
    input: Dhcp4Input & { runDir: string },
  ) {
    this.input = input;
    this.child = new SupervisedChild(components, 'dnsmasq');
    this.pidPath = join(input.runDir, `dnsmasq-${input.bridge}.pid`);
  }

  get running(): boolean {
    return this.child.running;
  }

  async start(): Promise<void> {
    this.child.want();
    if (this.child.running) return;
    await mkdir(this.input.runDir, { recursive: true, mode: 0o755 });
    await rm(this.pidPath, { force: true });
    this.child.run(dnsmasqArgv(this.input, { pidFile: this.pidPath }));
  }

  /**
   * New settings (an agent reload): a running dnsmasq restarts with them; on standby they are kept for
   * the next start.
   */
  async update(config: Dhcp4Config): Promise<'unchanged' | 'stored' | 'restarted'> {
    const was = this.input.config;
    this.input = { ...this.input, config };
    if (isDeepStrictEqual(was, config)) return 'unchanged';
    if (!this.child.running) return 'stored';
    await this.stop();
    await this.start();
    return 'restarted';
  }

  async stop(): Promise<void> {
    await this.child.stop();
    await rm(this.pidPath, { force: true });
  }
}
