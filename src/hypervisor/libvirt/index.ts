// Entry points of the libvirt driver for the agent (config section → driver).
//
// Agent config (hypervisor section); guests are libvirt domains that already exist (defined or started
// by the operator), named like the guests unless `domain` says otherwise:
//   hypervisor:
//     driver: libvirt
//     uri: "qemu+tcp://[2001:db8:a::2]/system"          # this host's libvirtd
//     peers: { host-b: "qemu+tcp://[2001:db8:b::2]/system" }   # each peer's, as this host reaches it
//     guests: { guest-1: {}, guest-2: { domain: web-2 } }
//     migration: { overlap: true, p2p: false, persistent: false, tls: false, bandwidthMiBs: 1000, timeoutSeconds: 120 }
// Xen hosts use the same section with xen:// URIs (libvirt's libxl driver); docs/libvirt.md.

import type { Logger } from '../../log.ts';
import type { ProcessSpawner } from '../../system/process.ts';
import type { CommandRunner } from '../../system/runner.ts';
import { LibvirtDriver } from './driver.ts';

export { LibvirtDriver, type LibvirtDriverOptions, type LibvirtMigrationSettings } from './driver.ts';
export { type DomainEvent, EventLineParser, VirshEvents } from './events.ts';
export { Virsh } from './virsh.ts';

/** The agent config's `hypervisor` section for the libvirt driver (validated by src/agent/config.ts). */
export interface LibvirtHypervisorConfig {
  driver: 'libvirt';
  uri: string;
  peers: Record<string, string>;
  guests: Record<string, { domain?: string | undefined }>;
  migration?:
    | {
        overlap?: boolean | undefined;
        p2p?: boolean | undefined;
        persistent?: boolean | undefined;
        tls?: boolean | undefined;
        bandwidthMiBs?: number | undefined;
        timeoutSeconds?: number | undefined;
      }
    | undefined;
  virsh?: string | undefined;
}

export interface LibvirtDriverComponents {
  host: string;
  runner: CommandRunner;
  spawner: ProcessSpawner;
  logger?: Logger;
}

/** The driver an agent builds from its config. */
export function createLibvirtDriver(
  config: LibvirtHypervisorConfig,
  components: LibvirtDriverComponents,
): LibvirtDriver {
  const m = config.migration;
  return new LibvirtDriver({
    host: components.host,
    uri: config.uri,
    peers: config.peers,
    guests: config.guests,
    runner: components.runner,
    spawner: components.spawner,
    ...(config.virsh ? { virsh: config.virsh } : {}),
    ...(m
      ? {
          migration: {
            ...(m.overlap !== undefined ? { overlap: m.overlap } : {}),
            ...(m.p2p !== undefined ? { p2p: m.p2p } : {}),
            ...(m.persistent !== undefined ? { persistent: m.persistent } : {}),
            ...(m.tls !== undefined ? { tls: m.tls } : {}),
            ...(m.bandwidthMiBs !== undefined ? { bandwidthMiBs: m.bandwidthMiBs } : {}),
            ...(m.timeoutSeconds !== undefined ? { timeoutMs: m.timeoutSeconds * 1000 } : {}),
          },
        }
      : {}),
    ...(components.logger ? { logger: components.logger } : {}),
  });
}
