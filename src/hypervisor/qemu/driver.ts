// The qemu driver: guests are QEMU virtual machines (TCG), one child process each, driven over QMP.
//
// On every host that may hold a network, the network's guest bridge exists (mobilerouter/guestlink.ts:
// same MAC and gateway everywhere). A guest's NIC is a tap made beforehand and attached to that bridge.
// `prepareIncoming` starts the destination QEMU with the guest's command line plus `-incoming defer`,
// then `migrate-incoming tcp:[<this host's address>]:0` (QEMU picks the port; query-migrate tells which),
// so the migration stream crosses the routed network host to host. `migrate` (outgoing.ts) runs on the
// source; when it completes the source QEMU is quit at once, since a QEMU in `postmigrate` still holds
// its tap.
//
// One driver serves one host. `netns` names the host's network namespace when the driver runs outside
// it (tests drive two hosts from one process); an agent running inside its namespace leaves it unset.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  type Driver,
  type DriverCallOptions,
  type DriverMigrateOptions,
  type DriverMigrationResult,
  type GuestInfo,
  type GuestNetwork,
  HypervisorError,
  type IncomingSpec,
  type MigrationDestination,
  type PrepareIncomingOptions,
} from '../driver.ts';
import type { MigrationTls } from '../tls.ts';
import { type Accel, type AccelDecision, cpuModel, decideAccel, realAccelProbe } from './accel.ts';
import {
  buildGuestImage,
  findGuestKernel,
  GUEST_READY,
  type GuestImage,
  guestCmdline,
  guestIpv4Problem,
} from './guest-image.ts';
import { OutgoingMigration } from './outgoing.ts';
import { type QemuMachine, QemuProcess, qemuArgs, within } from './process.ts';
import type { QmpClient } from './qmp.ts';
import { addTlsCreds, TLS_CREDS_ID } from './tls.ts';
import type { QemuDriverOptions, QemuGuestConfig, QemuMigrationSettings } from './types.ts';

type VmRole = 'booting' | 'running' | 'incoming';

interface Vm {
  guest: string;
  network: string;
  role: VmRole;
  proc: QemuProcess;
  tap: string;
  /** The accelerator and CPU model it runs with: both ends of a migration must match. */
  accel: Accel;
  cpu: string;
  bootId?: string;
  source?: string;
  resumed: Promise<number>;
  /** Set when we quit it on purpose (migrated away, stopped). */
  leaving?: boolean;
  /** Settles when the process is gone and its tap removed. */
  gone: Promise<void>;
}

const IFNAME = /^[^/:\s]{1,15}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

/**
 * When a guest counts as booted: the console line to wait for, or null (as soon as QEMU runs it).
 * `override` is the driver-wide option (tests, the lab); then the guest's `ready`; then the default:
 * the offlink image's line with the default image, null with the user's own kernel or initrd.
 */
export function readiness(g: QemuGuestConfig, override?: RegExp | null): RegExp | null {
  if (override !== undefined) return override;
  if (g.ready === false) return null;
  if (g.ready !== undefined) return new RegExp(g.ready);
  return g.kernel === undefined && g.initrd === undefined ? GUEST_READY : null;
}

export class QemuDriver implements Driver {
  readonly kind = 'qemu';
  private readonly vms = new Map<string, Vm>();
  private imagePromise: Promise<GuestImage> | undefined;
  private accelPromise: Promise<AccelDecision> | undefined;
  private migration: QemuMigrationSettings;

  constructor(private readonly options: QemuDriverOptions) {
    mkdirSync(options.runDir, { recursive: true });
    this.migration = { ...options.migration };
  }

  private config(guest: string): QemuGuestConfig {
    const guestConfig = this.options.guests[guest];
    if (!guestConfig)
      throw new HypervisorError(
        'ERR_HYPERVISOR_CONFIG',
        `qemu driver: no guest ${guest} (hypervisor.guests.${guest})`,
        {
          guest,
        },
      );
    if (!MAC.test(guestConfig.mac))
      throw new HypervisorError(
        'ERR_HYPERVISOR_CONFIG',
        `guest ${guest}: mac "${guestConfig.mac}" is not a MAC address`,
        { guest },
      );
    const ipv4Problem = guestConfig.ipv4 && guestIpv4Problem(guestConfig.ipv4);
    if (ipv4Problem)
      throw new HypervisorError(
        'ERR_HYPERVISOR_CONFIG',
        `guest ${guest}: ipv4.${ipv4Problem.key}: ${ipv4Problem.why}`,
        { guest },
      );
    if (guestConfig.ipv4 && guestConfig.append !== undefined)
      throw new HypervisorError(
        'ERR_HYPERVISOR_CONFIG',
        `guest ${guest}: ipv4 goes on the default command line; with append, put offlink.addr4= and offlink.gw4= in it`,
        { guest },
      );
    return guestConfig;
  }

  /**
   * KVM or TCG (accel.ts): probed once, on the first call (the agent calls it when it starts, so the
   * probe's few seconds are not spent in a migration).
   */
  accelerator(): Promise<AccelDecision> {
    this.accelPromise ??= decideAccel(
      this.options.accel ?? 'auto',
      this.options.accelProbe ??
        realAccelProbe({
          qemu: this.options.qemu ?? 'qemu-system-x86_64',
          cpu: this.options.cpu,
          kernel: () =>
            Object.values(this.options.guests).find((g) => g.kernel)?.kernel ?? findGuestKernel().vmlinuz,
          ...(this.options.accelProbeTimeoutMs ? { timeoutMs: this.options.accelProbeTimeoutMs } : {}),
        }),
    ).then((d) => {
      this.options.logger?.info(
        {
          host: this.options.host,
          accel: d.accel,
          cpu: cpuModel(d.accel, this.options.cpu) || 'default',
          why: d.reason,
        },
        'qemu accelerator',
      );
      return d;
    });
    return this.accelPromise;
  }

  tapOf(guest: string): string {
    const tap = this.options.guests[guest]?.tap ?? `qt-${guest}`.slice(0, 15);
    if (!IFNAME.test(tap))
      throw new HypervisorError(
        'ERR_HYPERVISOR_CONFIG',
        `guest ${guest}: tap name "${tap}" is not a valid interface name`,
        {
          guest,
        },
      );
    return tap;
  }

  private async machine(guest: string): Promise<QemuMachine> {
    const guestConfig = this.config(guest);
    let kernel = guestConfig.kernel;
    let initrd = guestConfig.initrd;
    if (kernel === undefined || initrd === undefined) {
      this.imagePromise ??= (this.options.image ?? (() => buildGuestImage()))();
      const image = await this.imagePromise.catch((err: unknown) => {
        this.imagePromise = undefined;
        throw err;
      });
      kernel ??= image.kernel;
      initrd ??= image.initrd;
    }
    const { accel, reason } = await this.accelerator();
    if (accel === 'tcg' && this.options.cpu === 'host')
      throw new HypervisorError(
        'ERR_HYPERVISOR_CONFIG',
        `guest ${guest}: hypervisor.cpu host needs KVM and this host runs TCG (${reason}): set accel: kvm where KVM works, or leave cpu out`,
        { guest },
      );
    return {
      accel,
      ...(this.options.cpu ? { cpu: this.options.cpu } : {}),
      memoryMiB: guestConfig.memoryMiB ?? 128,
      kernel,
      initrd,
      append: guestConfig.append ?? guestCmdline(guestConfig.ipv4 ? { ipv4: guestConfig.ipv4 } : {}),
      mac: guestConfig.mac.toLowerCase(),
      ...(guestConfig.extraArgs ? { extraArgs: guestConfig.extraArgs } : {}),
    };
  }

  private ip(args: readonly string[], signal?: AbortSignal) {
    const argv = ['ip', ...(this.options.netns ? ['-n', this.options.netns] : []), ...args];
    return this.options.runner.run(argv, { allowFailure: true, ...(signal ? { signal } : {}) });
  }

  private async checkBridge(guest: string, bridge: string, signal?: AbortSignal): Promise<void> {
    const r = await this.ip(['-d', '-j', 'link', 'show', 'dev', bridge], signal);
    const link =
      r.exitCode === 0
        ? (JSON.parse(r.stdout) as { linkinfo?: { info_kind?: string }; flags?: string[] }[])[0]
        : undefined;
    if (link?.linkinfo?.info_kind !== 'bridge' || !link.flags?.includes('UP'))
      throw new HypervisorError(
        'ERR_HYPERVISOR',
        `host ${this.options.host} has no bridge ${bridge} that is up`,
        {
          guest,
        },
      );
  }

  /** Make the guest's tap and attach it to the bridge (a leftover tap of a crashed run is replaced). */
  private async makeTap(guest: string, bridge: string): Promise<string> {
    const tap = this.tapOf(guest);
    await this.ip(['link', 'del', 'dev', tap]);
    for (const args of [
      ['tuntap', 'add', 'dev', tap, 'mode', 'tap'],
      ['link', 'set', 'dev', tap, 'master', bridge, 'up'],
    ]) {
      const r = await this.ip(args);
      if (r.exitCode !== 0) {
        await this.ip(['link', 'del', 'dev', tap]);
        throw new HypervisorError(
          'ERR_HYPERVISOR',
          `guest ${guest}: ip ${args.join(' ')}: ${r.stderr.trim()}`,
          { guest },
        );
      }
    }
    return tap;
  }

  private async spawn(guest: string, network: GuestNetwork, role: VmRole, signal?: AbortSignal): Promise<Vm> {
    if (this.vms.has(guest))
      throw new HypervisorError('ERR_HYPERVISOR', `guest ${guest} is already on host ${this.options.host}`, {
        guest,
      });
    const machine = await this.machine(guest);
    await this.checkBridge(guest, network.bridge, signal);
    const tap = await this.makeTap(guest, network.bridge);
    const suffix = role === 'incoming' ? 'in' : 'vm';
    const paths = {
      // The host's name too: agents on one machine (the lab) may share a run directory.
      qmp: join(this.options.runDir, `${guest}.${this.options.host}.${suffix}.qmp`),
      serial: join(this.options.runDir, `${guest}.${this.options.host}.${suffix}.serial.log`),
      tap,
    };
    let proc: QemuProcess;
    try {
      proc = await QemuProcess.start(
        {
          binary: this.options.qemu ?? 'qemu-system-x86_64',
          ...(this.options.netns ? { netns: this.options.netns } : {}),
          args: qemuArgs(guest, machine, paths, role === 'incoming' ? 'defer' : undefined),
          paths,
          guest,
        },
        signal,
      );
    } catch (err) {
      await this.ip(['link', 'del', 'dev', tap]);
      throw err;
    }
    let resolveResumed: (t: number) => void = () => {};
    const vm: Vm = {
      guest,
      network: network.name,
      role,
      proc,
      tap,
      accel: machine.accel,
      cpu: cpuModel(machine.accel, machine.cpu),
      resumed: new Promise<number>((r) => {
        resolveResumed = r;
      }),
      gone: Promise.resolve(),
    };
    proc.qmp.onEvent((e) => {
      if (e.event === 'RESUME') resolveResumed(e.timestamp);
    });
    this.vms.set(guest, vm);
    vm.gone = proc.exited.then(async () => {
      if (this.vms.get(guest) === vm) this.vms.delete(guest);
      await this.ip(['link', 'del', 'dev', tap]).catch(() => {});
      if (!vm.leaving && vm.role !== 'incoming')
        this.options.logger?.warn({ guest, exit: proc.describeExit() }, 'qemu guest exited');
    });
    return vm;
  }

  /** Boot `guest` here, attached to `network`'s bridge; resolves once the guest says it is ready. */
  async startGuest(
    guest: string,
    options: { network: GuestNetwork } & DriverCallOptions,
  ): Promise<GuestInfo> {
    const t0 = performance.now();
    const vm = await this.spawn(guest, options.network, 'booting', options.signal);
    try {
      const ready = readiness(this.config(guest), this.options.ready);
      if (ready) {
        const m = await vm.proc.waitForConsole(ready, this.options.bootTimeoutMs ?? 120_000, options.signal);
        if (m[1]) vm.bootId = m[1];
      }
    } catch (err) {
      vm.leaving = true;
      await vm.proc.kill();
      await vm.gone;
      throw err;
    }
    vm.role = 'running';
    this.options.logger?.info(
      { guest, host: this.options.host, bootMs: Math.round(performance.now() - t0), pid: vm.proc.pid },
      'qemu guest booted',
    );
    return this.info(vm, 'running');
  }

  /** Stop a guest running here (quit over QMP, else kill). */
  async stopGuest(guest: string): Promise<void> {
    const vm = this.vms.get(guest);
    if (!vm) return;
    vm.leaving = true;
    await vm.proc.quit();
    await vm.gone;
  }

  /** Change the migration settings for later migrations (e.g. the overlap flag, to compare). */
  configureMigration(settings: QemuMigrationSettings): void {
    this.migration = { ...this.migration, ...settings };
  }

  /** The QEMU process id of a guest here (incoming ones included). */
  pidOf(guest: string): number | undefined {
    return this.vms.get(guest)?.proc.pid;
  }

  /** The QMP connection of a guest here, for diagnostics and tests. */
  qmpOf(guest: string): QmpClient | undefined {
    return this.vms.get(guest)?.proc.qmp;
  }

  /** The guest's boot id, as printed on its console when it booted (proof it was not rebooted). */
  bootIdOf(guest: string): string | undefined {
    return this.vms.get(guest)?.bootId;
  }

  /** Epoch ms of the RESUME event of a guest that migrated in, waiting up to `timeoutMs`. */
  async resumedAt(guest: string, timeoutMs = 2_000): Promise<number | undefined> {
    const vm = this.vms.get(guest);
    if (!vm) return undefined;
    return within(vm.resumed, timeoutMs, undefined);
  }

  async listGuests(network: GuestNetwork, _options: DriverCallOptions = {}): Promise<GuestInfo[]> {
    const out: GuestInfo[] = [];
    for (const guest of network.guests) {
      const vm = this.vms.get(guest);
      if (!vm || vm.network !== network.name) continue;
      if (vm.role !== 'running') {
        out.push(this.info(vm, 'detached'));
        continue;
      }
      const s = await vm.proc.qmp
        .execute<{ running: boolean; status: string }>('query-status')
        .catch(() => ({ running: false, status: 'unknown (no QMP)' }));
      out.push(this.info(vm, s.running ? 'running' : 'paused', s.status));
    }
    return out;
  }

  private info(vm: Vm, state: GuestInfo['state'], status?: string): GuestInfo {
    const what =
      vm.role === 'incoming'
        ? `incoming migration from ${vm.source ?? '?'}`
        : vm.role === 'booting'
          ? 'booting'
          : `qemu pid ${vm.proc.pid} (${vm.accel}${vm.cpu ? `, -cpu ${vm.cpu}` : ''}), ${status ?? 'running'}`;
    return { name: vm.guest, network: vm.network, state, detail: `${what}; tap ${vm.tap}` };
  }

  async prepareIncoming(guest: string, options: PrepareIncomingOptions): Promise<IncomingSpec> {
    const address = await this.options.incomingAddress();
    if (!address)
      throw new HypervisorError(
        'ERR_HYPERVISOR',
        `host ${this.options.host} has no address to receive ${guest} on`,
        { guest },
      );
    const vm = await this.spawn(guest, options.network, 'incoming', options.signal);
    vm.source = options.source;
    try {
      await vm.proc.qmp.execute('migrate-set-capabilities', {
        capabilities: [{ capability: 'events', state: true }],
      });
      const tls = this.migration.tls;
      if (tls) {
        await addTlsCreds(vm.proc.qmp, tls.dir, 'server');
        await vm.proc.qmp.execute('migrate-set-parameters', { 'tls-creds': TLS_CREDS_ID });
      }
      await vm.proc.qmp.execute('migrate-incoming', { uri: `tcp:[${address}]:0` });
      const info = await vm.proc.qmp.execute<{ 'socket-address'?: { port?: string }[] }>('query-migrate');
      const port = info['socket-address']?.[0]?.port;
      if (!port)
        throw new HypervisorError(
          'ERR_HYPERVISOR',
          `guest ${guest}: QEMU did not say which port it listens on`,
          { guest },
        );
      const done = vm.proc.qmp.listen(['MIGRATION']);
      void done
        .next((e) => e.data['status'] === 'completed')
        .then(() => {
          vm.role = 'running';
          void within(vm.resumed, 2_000, undefined).then((resumedAt) =>
            this.options.logger?.info({ guest, from: vm.source, resumedAt }, 'qemu guest migrated in'),
          );
        })
        .catch(() => {})
        .finally(() => done.close());
      return {
        uri: `tcp:[${address}]:${port}`,
        tap: vm.tap,
        tls: tls !== undefined,
        accel: vm.accel,
        cpu: vm.cpu,
      };
    } catch (err) {
      vm.leaving = true;
      await vm.proc.kill();
      await vm.gone;
      throw err instanceof HypervisorError
        ? err
        : new HypervisorError(
            'ERR_HYPERVISOR',
            `guest ${guest}: preparing the incoming QEMU failed: ${(err as Error).message}`,
            {
              guest,
              cause: err,
            },
          );
    }
  }

  async cancelIncoming(guest: string, _options: PrepareIncomingOptions): Promise<void> {
    const vm = this.vms.get(guest);
    // Only a QEMU still waiting for (or loading) the guest: one that resumed it holds the guest now.
    if (vm?.role !== 'incoming') return;
    vm.leaving = true;
    await vm.proc.kill();
    await vm.gone;
  }

  async migrate(
    guest: string,
    destination: MigrationDestination,
    options: DriverMigrateOptions,
  ): Promise<DriverMigrationResult> {
    const vm = this.vms.get(guest);
    if (vm?.role !== 'running')
      throw new HypervisorError(
        'ERR_HYPERVISOR',
        `guest ${guest} is not running on host ${this.options.host}`,
        {
          guest,
        },
      );
    const uri = destination.incoming['uri'];
    if (typeof uri !== 'string' || !uri.startsWith('tcp:'))
      throw new HypervisorError(
        'ERR_HYPERVISOR',
        `destination ${destination.host} sent no migration URI for ${guest}`,
        { guest },
      );
    const m = this.migration;
    // Both ends must agree, or the stream fails mid-handshake with an error that names neither side.
    const peerTls = destination.incoming['tls'] === true;
    if (peerTls !== (m.tls !== undefined))
      throw new HypervisorError(
        'ERR_HYPERVISOR_CONFIG',
        peerTls
          ? `destination ${destination.host} expects a TLS migration stream and this host has no hypervisor.migration.tls; the guest keeps running here`
          : `this host migrates with TLS (hypervisor.migration.tls) and destination ${destination.host} has none; the guest keeps running here`,
        { guest },
      );
    const { accel, cpu } = destination.incoming;
    // A destination that does not say (an older agent) ran TCG with QEMU's default model.
    const theirs = `${accel ?? 'tcg'}/${cpu || 'default'}`;
    if (theirs !== `${vm.accel}/${vm.cpu || 'default'}`)
      throw new HypervisorError(
        'ERR_HYPERVISOR_CONFIG',
        `destination ${destination.host} would run ${guest} as ${theirs} (accelerator/CPU model) and it runs here as ${vm.accel}/${vm.cpu || 'default'}: set hypervisor.accel and hypervisor.cpu alike on both hosts; the guest keeps running here`,
        { guest },
      );
    const peer = this.options.peerResumedAt;
    const result = await tlsHint(
      m.tls,
      destination.host,
      new OutgoingMigration(vm.proc, {
        guest,
        uri,
        overlap: m.overlap ?? true,
        ...(m.tls ? { tlsDir: m.tls.dir } : {}),
        timeoutMs: m.timeoutMs ?? 120_000,
        ...(m.downtimeLimitMs !== undefined ? { downtimeLimitMs: m.downtimeLimitMs } : {}),
        ...(m.maxBandwidth !== undefined ? { maxBandwidth: m.maxBandwidth } : {}),
        ...(m.progressIntervalMs !== undefined ? { progressIntervalMs: m.progressIntervalMs } : {}),
        ...(options.onSwitchover ? { onSwitchover: options.onSwitchover } : {}),
        ...(options.onProgress ? { onProgress: options.onProgress } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
        ...(peer ? { resumedAt: () => peer(destination.host, guest) } : {}),
        ...(this.options.logger ? { logger: this.options.logger } : {}),
      }).run(),
    );
    // A QEMU in postmigrate still holds its tap: quit it now (before the guest may come back here).
    vm.leaving = true;
    await vm.proc.quit();
    await vm.gone;
    const { info: _info, ...out } = result;
    this.options.logger?.info(
      { guest, to: destination.host, tls: m.tls !== undefined, ...out.figures },
      'qemu migration completed',
    );
    return out;
  }

  async announce(guest: string, _options: { network: GuestNetwork } & DriverCallOptions): Promise<void> {
    // QEMU announces the guest's MAC at RESUME already; once more, for bridges that missed it.
    const vm = this.vms.get(guest);
    if (vm?.proc.alive)
      await vm.proc.qmp
        .execute('announce-self', { initial: 50, max: 550, rounds: 5, step: 100 })
        .catch(() => {});
  }

  /** Kill every QEMU this driver started (they are its children) and remove their taps. */
  async close(): Promise<void> {
    const vms = [...this.vms.values()];
    for (const vm of vms) vm.leaving = true;
    await Promise.all(
      vms.map(async (vm) => {
        await vm.proc.kill();
        await vm.gone;
      }),
    );
    this.vms.clear();
  }
}

/**
 * QEMU reports a refused handshake on the source only as "Cannot write to TLS channel" (the reason is
 * on the destination's stderr): say what to check.
 */
async function tlsHint<T>(tls: MigrationTls | undefined, peer: string, run: Promise<T>): Promise<T> {
  try {
    return await run;
  } catch (err) {
    if (!tls || !(err instanceof HypervisorError) || !/TLS channel/.test(err.message)) throw err;
    throw new HypervisorError(
      err.code,
      `${err.message} (TLS handshake with ${peer} failed: both hosts' certificates in hypervisor.migration.tls.dir must chain to a CA the other trusts, and ${peer}'s server certificate must name its care-of address)`,
      { ...(err.guest ? { guest: err.guest } : {}), cause: err },
    );
  }
}
