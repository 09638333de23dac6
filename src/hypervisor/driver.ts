// The hypervisor side of a migration, as one small interface (STYLE: wireguard-go's tun.Device). The
// migration procedure (src/migration/) and the agent depend only on this; drivers: netns (lab guests),
// qemu (QMP), libvirt (virsh; Xen through libvirt's libxl driver).
//
// Guests are named by the names in the agent's config, never by hypervisor ids (the report's §7.3: Xen's
// VMID limit and renumbering on the destination). A driver maps a name to whatever its hypervisor uses.
import { OfflinkError } from '../errors.ts';

/** The part of a mobile network a driver needs: its guests and the guest bridge they attach to. */
export interface GuestNetwork {
  name: string;
  /** The network's guest bridge on this host (same name on every host that may hold the network). */
  bridge: string;
  /** Guest names (config names) that belong to this network. */
  guests: readonly string[];
}

export type GuestState =
  /** Running here and attached to the network's bridge. */
  | 'running'
  /** Present here but not (fully) attached: a half-done move or a hand-made guest. */
  | 'detached'
  /** Paused here (e.g. a VM stopped at switchover). */
  | 'paused';

export interface GuestInfo {
  name: string;
  network: string;
  state: GuestState;
  /** Driver-specific words for humans (`offlink status`). */
  detail?: string;
}

/**
 * What the destination's driver tells the source's driver about how to reach it, returned by
 * `prepareIncoming` and carried in the control API's prepare reply: plain JSON, driver-specific
 * (netns: the destination bridge's ifindex; qemu: the incoming migration URI).
 */
export type IncomingSpec = { readonly [key: string]: string | number | boolean };

export interface DriverCallOptions {
  signal?: AbortSignal;
}

export interface PrepareIncomingOptions extends DriverCallOptions {
  network: GuestNetwork;
  /** Host name of the source. */
  source: string;
}

export interface MigrationDestination {
  /** Host name of the destination (a key of the agent config's peers). */
  host: string;
  /** What the destination's `prepareIncoming` returned for this guest. */
  incoming: IncomingSpec;
}

/** Driver-level progress, for the live display; the procedure adds its own phases around it. */
export interface DriverProgress {
  guest: string;
  phase: 'start' | 'transfer' | 'switchover' | 'resumed' | 'rollback';
  /** Bytes sent so far, where the driver knows. */
  transferredBytes?: number;
  /** Guest RAM still to send (QEMU: ram.remaining), where the driver knows. */
  remainingBytes?: number;
  /** Guest RAM size (QEMU: ram.total), where the driver knows. */
  totalBytes?: number;
  /** How fast the guest dirties its memory, bytes per second (QEMU: dirty-pages-rate × page-size). */
  dirtyBytesPerSecond?: number;
}

export interface DriverMigrateOptions extends DriverCallOptions {
  network: GuestNetwork;
  /**
   * Called once, at the moment the guest stops running on the source and before it runs on the
   * destination (QEMU: at pause-before-switchover; netns: just before the veth moves). The procedure
   * uses it to start the handover so it overlaps the final stop-and-copy. The driver waits for it.
   * If it throws, the driver rolls back and the migration fails.
   */
  onSwitchover?: () => Promise<void>;
  onProgress?: (progress: DriverProgress) => void;
}

export interface DriverMigrationResult {
  /** Wall time of the whole hypervisor step on the source. */
  hypervisorMs: number;
  /** How long the guest was stopped (switchover to running on the destination), where the driver knows. */
  downtimeMs?: number;
  /** Bytes of guest state sent, where the driver knows (the netns driver copies none: 0). */
  transferredBytes?: number;
  /**
   * The guest's pause as the hypervisor's own event clocks saw it (QEMU: the destination's RESUME event
   * minus the source's STOP event), where the driver can see both ends.
   */
  pausedMs?: number;
  /**
   * The hypervisor's own figures by name, for logs and reports (QEMU: totalTimeMs, downtimeMs,
   * setupTimeMs, transferredBytes, …). `downtimeMs` above is the hypervisor's own figure where it has one.
   */
  figures?: Readonly<Record<string, number>>;
}

export interface Driver {
  /** `netns`, `qemu`, … */
  readonly kind: string;
  /** The guests of `network` that are on this host now. */
  listGuests(network: GuestNetwork, options?: DriverCallOptions): Promise<GuestInfo[]>;
  /**
   * On the destination, before a migration: check this host can take `guest` (bridge present, no
   * name clash, …) and ready whatever must wait for it. Throws HypervisorError when it cannot.
   */
  prepareIncoming(guest: string, options: PrepareIncomingOptions): Promise<IncomingSpec>;
  /** On the destination, after a failed or abandoned migration: undo `prepareIncoming`. Idempotent. */
  cancelIncoming(guest: string, options: PrepareIncomingOptions): Promise<void>;
  /**
   * On the source: move `guest` to `destination`, live. On failure the guest is left running on the
   * source, attached as before, and the error is a HypervisorError.
   */
  migrate(
    guest: string,
    destination: MigrationDestination,
    options: DriverMigrateOptions,
  ): Promise<DriverMigrationResult>;
  /** On the destination, after the guest runs there: let the guest's link learn where it is now. */
  announce(guest: string, options: { network: GuestNetwork } & DriverCallOptions): Promise<void>;
  /** Release whatever the driver holds (sockets, helper processes). */
  close?(): Promise<void>;
}

/** A driver step failed. `code` names what: `ERR_HYPERVISOR` (the step), `ERR_HYPERVISOR_CONFIG`. */
export class HypervisorError extends OfflinkError {
  readonly guest: string | undefined;
  constructor(code: string, message: string, options: { guest?: string; cause?: unknown } = {}) {
    super(code, message, { cause: options.cause });
    this.guest = options.guest;
  }
}
