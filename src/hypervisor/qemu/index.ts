// Entry points of the qemu driver for the agent (config section → driver), the lab and tests.
//
// Agent config (hypervisor section), one entry per guest, the same on every host:
//   hypervisor:
//     driver: qemu
//     guests:
//       guest-1: { mac: "52:54:00:00:00:01", memoryMiB: 128, bootOn: host-a }
//       guest-2: { mac: "52:54:00:00:00:02", ipv4: { address: "10.1.0.10/24", gateway: "10.1.0.1" } }
//       guest-3: { mac: "52:54:00:00:00:03", kernel: /srv/vmlinuz, initrd: /srv/initrd, ready: "login:" }
//     accel: auto                  # kvm | tcg | auto (KVM when it works here)
//     cpu: host                    # default: host with KVM, QEMU's default with TCG
//     migration: { downtimeLimitMs: 300, overlap: true, tls: { dir: /etc/pki/qemu } }
// `bootOn` names the host whose agent boots the guest when it starts (before it decides which networks
// are here, so the network registers there).

import type { Logger } from '../../log.ts';
import type { CommandRunner } from '../../system/runner.ts';
import type { GuestInfo, GuestNetwork } from '../driver.ts';
import type { AccelChoice } from './accel.ts';
import { QemuDriver } from './driver.ts';
import type { QemuGuestConfig, QemuMigrationSettings } from './types.ts';

export { QemuDriver } from './driver.ts';
export {
  buildGuestImage,
  findGuestKernel,
  GUEST_PORTS,
  GUEST_READY,
  type GuestImage,
  guestCmdline,
  slaacAddress,
} from './guest-image.ts';
export { QmpClient, QmpDisconnectedError, QmpError, type QmpEvent } from './qmp.ts';
export type { QemuDriverOptions, QemuGuestConfig, QemuMigrationSettings } from './types.ts';

/** The agent config's `hypervisor` section for the qemu driver (validated by src/agent/config.ts). */
export interface QemuHypervisorConfig {
  driver: 'qemu';
  guests: Record<string, QemuGuestConfig & { bootOn?: string | undefined }>;
  migration?: QemuMigrationSettings | undefined;
  /** QEMU binary (default qemu-system-x86_64 from PATH). */
  qemu?: string | undefined;
  /** `auto` (default): KVM when it works here, else TCG (accel.ts). */
  accel?: AccelChoice | undefined;
  /** `-cpu` for every guest; default `host` with KVM, QEMU's default with TCG. */
  cpu?: string | undefined;
  bootTimeoutSeconds?: number | undefined;
}

export interface QemuDriverComponents {
  host: string;
  /** Sockets and serial logs go to `<runDir>/qemu`. */
  runDir: string;
  runner: CommandRunner;
  logger?: Logger;
  /** This host's care-of address (incoming migrations listen on it). */
  coa: { readonly coa: string | undefined };
}

/** The driver an agent builds from its config. */
export function createQemuDriver(config: QemuHypervisorConfig, components: QemuDriverComponents): QemuDriver {
  const guests: Record<string, QemuGuestConfig> = {};
  for (const [name, { bootOn: _bootOn, ...g }] of Object.entries(config.guests)) guests[name] = g;
  const driver = new QemuDriver({
    host: components.host,
    runDir: `${components.runDir}/qemu`,
    guests,
    incomingAddress: () => components.coa.coa,
    runner: components.runner,
    ...(config.qemu ? { qemu: config.qemu } : {}),
    ...(config.bootTimeoutSeconds ? { bootTimeoutMs: config.bootTimeoutSeconds * 1000 } : {}),
    ...(config.migration ? { migration: config.migration } : {}),
    ...(config.accel ? { accel: config.accel } : {}),
    ...(config.cpu ? { cpu: config.cpu } : {}),
    ...(components.logger ? { logger: components.logger } : {}),
  });
  // Probe KVM now, at agent start, not in the first migration's prepare (it may take seconds).
  void driver.accelerator();
  return driver;
}

/**
 * Boot the guests whose `bootOn` is this host, each on its network's bridge. The bridges must exist
 * (the guest links' `ensure()`); guests already running here are left alone.
 */
export async function bootGuestsHere(
  driver: QemuDriver,
  config: QemuHypervisorConfig,
  host: string,
  networks: readonly GuestNetwork[],
  signal?: AbortSignal,
): Promise<GuestInfo[]> {
  const booted: GuestInfo[] = [];
  for (const network of networks) {
    const running = new Set((await driver.listGuests(network)).map((g) => g.name));
    for (const guest of network.guests) {
      if (config.guests[guest]?.bootOn !== host || running.has(guest)) continue;
      booted.push(await driver.startGuest(guest, { network, ...(signal ? { signal } : {}) }));
    }
  }
  return booted;
}
