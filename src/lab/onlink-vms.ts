// The on-link baseline with a QEMU guest: ordinary same-subnet live migration, nothing else. Both hosts'
// guest bridges (br-lan) are ports of one L2 segment (topology.ts, buildOnLink), the guest has a static
// address on that segment's prefix, and a migration is QEMU's own: the destination's QEMU waits with
// `-incoming`, the source migrates over QMP, and QEMU's self-announce (at RESUME, then `announce-self`)
// teaches the segment's switch where the guest's MAC is now. No home agent, no mobile router, no agent:
// the lab process drives the same qemu driver (src/hypervisor/qemu/driver.ts) the agents use off-link, so
// the two differ only in what offlink adds.
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { DriverMigrationResult, GuestNetwork } from '../hypervisor/driver.ts';
import { QemuDriver } from '../hypervisor/qemu/driver.ts';
import { guestCmdline } from '../hypervisor/qemu/guest-image.ts';
import type { Logger } from '../log.ts';
import type { CommandRunner } from '../system/runner.ts';
import { guestIpv4, type HostName, type Topology } from './topology.ts';

/** Guests the lab process itself migrates on-link (QEMU: OnLinkVms; libvirt: libvirt-guest.ts). */
export interface OnLinkGuests {
  /** Live-migrate every guest; the hypervisor's own figures in `phases` (downtimeMs, pausedMs). */
  migrate(
    from: HostName,
    to: HostName,
    signal?: AbortSignal,
  ): Promise<{ hypervisorMs: number; phases: Record<string, number> }>;
  close(): Promise<void>;
}

export class OnLinkVms implements OnLinkGuests {
  private readonly drivers: Record<HostName, QemuDriver>;
  private readonly network: GuestNetwork;

  constructor(
    private readonly topo: Topology,
    runner: CommandRunner,
    runDir: string,
    logger?: Logger,
  ) {
    const g = topo.guests[0]!;
    this.network = { name: g.network, bridge: g.bridge, guests: topo.guests.map((x) => x.name) };
    const guests = Object.fromEntries(
      topo.guests.map((x) => [
        x.name,
        // The segment has no router advertisements for the guest: a static address, gateway fe80::1
        // (ofl-inet's side of the segment).
        {
          mac: x.mac,
          memoryMiB: 128,
          append: guestCmdline({
            address: `${x.address}/64`,
            ...(x.ipv4 ? { ipv4: guestIpv4(x.ipv4) } : {}),
          }),
        },
      ]),
    );
    const peers: Partial<Record<string, QemuDriver>> = {};
    const driver = (h: Topology['hosts'][number]) =>
      new QemuDriver({
        host: h.name,
        netns: h.ns,
        runDir: join(runDir, h.name),
        guests,
        // The migration stream crosses the routed network host to host, as off-link.
        incomingAddress: () => topo.careOf[h.name],
        runner,
        peerResumedAt: (host, guest) => peers[host]?.resumedAt(guest) ?? Promise.resolve(undefined),
        ...(logger ? { logger: logger.child({ host: h.name }) } : {}),
      });
    const [a, b] = topo.hosts;
    this.drivers = { [a.name]: driver(a), [b.name]: driver(b) } as Record<HostName, QemuDriver>;
    Object.assign(peers, this.drivers);
  }

  /** Boot the guests on host A; resolves when each says it is ready. */
  async boot(signal?: AbortSignal): Promise<void> {
    const a = this.drivers[this.topo.hosts[0].name];
    for (const g of this.topo.guests)
      await a.startGuest(g.name, { network: this.network, ...(signal ? { signal } : {}) });
  }

  /**
   * Live-migrate every guest from `from` to `to`. Returns QEMU's figures beside the wall times (downtime
   * as QEMU reports it; the pause between the source's STOP and the destination's RESUME where seen).
   * Timed as the agents time it off-link: starting the destination's QEMU is `prepareMs`, the driver's
   * migrate (until the guest runs there) `hypervisorMs`. On failure the guest runs on `from` still (the
   * driver's promise).
   */
  async migrate(
    from: HostName,
    to: HostName,
    signal?: AbortSignal,
  ): Promise<{ hypervisorMs: number; phases: Record<string, number> }> {
    const src = this.drivers[from];
    const dst = this.drivers[to];
    const results: DriverMigrationResult[] = [];
    const sig = signal ? { signal } : {};
    let prepareMs = 0;
    let hypervisorMs = 0;
    for (const g of this.topo.guests) {
      const options = { network: this.network, source: from, ...sig };
      const t0 = performance.now();
      const incoming = await dst.prepareIncoming(g.name, options);
      const t1 = performance.now();
      try {
        results.push(await src.migrate(g.name, { host: to, incoming }, { network: this.network, ...sig }));
      } catch (err) {
        await dst.cancelIncoming(g.name, options);
        throw err;
      }
      prepareMs += t1 - t0;
      hypervisorMs += performance.now() - t1;
      await dst.announce(g.name, { network: this.network });
    }
    const phases: Record<string, number> = { prepareMs, hypervisorMs };
    const max = (pick: (r: DriverMigrationResult) => number | undefined) => {
      const v = results.map(pick).filter((x): x is number => x !== undefined);
      return v.length > 0 ? Math.max(...v) : undefined;
    };
    const downtime = max((r) => r.downtimeMs);
    const paused = max((r) => r.pausedMs);
    if (downtime !== undefined) phases['downtimeMs'] = downtime;
    if (paused !== undefined) phases['pausedMs'] = paused;
    return { hypervisorMs, phases };
  }

  /** Stop every QEMU (they are this process's children) and remove their taps. */
  async close(): Promise<void> {
    await Promise.all(Object.values(this.drivers).map((d) => d.close()));
  }
}
