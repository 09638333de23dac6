// The qemu driver's configuration types (driver.ts uses them; index.ts maps the agent config onto them).

import type { Logger } from '../../log.ts';
import type { CommandRunner } from '../../system/runner.ts';
import type { MigrationTls } from '../tls.ts';
import type { AccelChoice, AccelProbeDeps } from './accel.ts';
import type { GuestImage, GuestIpv4 } from './guest-image.ts';

export interface QemuGuestConfig {
  /** The guest NIC's MAC, the same on every host (e.g. 52:54:00:xx:xx:xx). */
  mac: string;
  /** Guest RAM, MiB (default 128). */
  memoryMiB?: number;
  /** Tap name on each host (default `qt-<guest>`, at most 15 characters). */
  tap?: string;
  /**
   * A static IPv4 side for a dual-stack network (RFC 5555): `{ address: "10.1.0.10/24", gateway:
   * "10.1.0.1" }`, passed on the default command line (not with `append`). Default: IPv6 only.
   */
  ipv4?: GuestIpv4;
  /** Kernel, initrd and command line; default: the image guest-image.ts builds, SLAAC. */
  kernel?: string;
  initrd?: string;
  append?: string;
  /**
   * When the guest is booted: a regular expression (its source text) its serial console prints when
   * ready, the first group being a boot id if any; `false`: as soon as QEMU runs it. Default: the
   * offlink image's line (GUEST_READY) with the default image, `false` with a `kernel`/`initrd` of
   * one's own (its console says nothing offlink knows).
   */
  ready?: string | false;
  extraArgs?: readonly string[];
}

export interface QemuMigrationSettings {
  /** QEMU downtime-limit, ms (QEMU's default is 300). */
  downtimeLimitMs?: number;
  /** QEMU max-bandwidth, bytes/s (QEMU 7.2's default is 128 MiB/s; more made pauses longer here). */
  maxBandwidth?: number;
  /** Run the switchover hook while QEMU waits at pre-switchover (default true). */
  overlap?: boolean;
  /**
   * TLS for the migration stream (QEMU's tls-creds-x509, both ends, peers verified); every host of the
   * cluster must have it or none (a destination says which in its prepare reply). Default: plain TCP.
   */
  tls?: MigrationTls;
  /** Give up and cancel after this long (default 120 s). */
  timeoutMs?: number;
  progressIntervalMs?: number;
}

export interface QemuDriverOptions {
  /** This host's name (as in the agent config). */
  host: string;
  /** This host's network namespace, when the driver runs outside it. */
  netns?: string;
  /** QMP sockets and serial logs go here. */
  runDir: string;
  guests: Readonly<Record<string, QemuGuestConfig>>;
  /** Where incoming migrations listen: this host's address the source can reach (its care-of address). */
  incomingAddress: () => string | undefined | Promise<string | undefined>;
  runner: CommandRunner;
  /** QEMU binary (default qemu-system-x86_64). */
  qemu?: string;
  /** The default guest image (default: buildGuestImage(), built once per driver). */
  image?: () => Promise<GuestImage>;
  /** How long a guest may take to boot (default 120 s: TCG on 2 busy cores). */
  bootTimeoutMs?: number;
  /** What every guest prints when ready, overriding each guest's `ready`; null: do not wait. */
  ready?: RegExp | null;
  /** KVM or TCG, or `auto` (default): KVM when it works here (accel.ts). */
  accel?: AccelChoice;
  /** The CPU model (`-cpu`); default `host` with KVM, QEMU's own default with TCG (accel.ts says why). */
  cpu?: string;
  /** The accelerator probe's seams (default: the real /dev/kvm and QEMU). */
  accelProbe?: AccelProbeDeps;
  /** How long the KVM probe waits for the guest kernel's first line (default 5 s). */
  accelProbeTimeoutMs?: number;
  migration?: QemuMigrationSettings;
  /**
   * The destination's RESUME time (epoch ms) for a guest, for the measured pause. Only possible where the
   * destination's driver is reachable in-process (tests, a single-process lab); agents log it instead.
   */
  peerResumedAt?: (host: string, guest: string) => Promise<number | undefined>;
  logger?: Logger;
}
