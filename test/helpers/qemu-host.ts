// One host of the qemu driver's namespace tests: its guest bridge (GuestLink, radvd-capable) and a
// QemuDriver running QEMU in the host's namespace.
import { join } from 'node:path';
import { systemClock } from '../../src/clock.ts';
import { Iproute2Kernel } from '../../src/dataplane/iproute2.ts';
import type { GuestNetwork } from '../../src/hypervisor/driver.ts';
import { QemuDriver } from '../../src/hypervisor/qemu/driver.ts';
import type { GuestImage } from '../../src/hypervisor/qemu/guest-image.ts';
import type { QemuDriverOptions } from '../../src/hypervisor/qemu/types.ts';
import { silentLogger } from '../../src/log.ts';
import { GuestLink } from '../../src/mobilerouter/guestlink.ts';
import { netnsSpawner } from '../../src/system/process.ts';
import { ExecRunner } from '../../src/system/runner.ts';

export interface QemuHost<N extends string = string> {
  name: N;
  ns: string;
  uplink: string;
  link: GuestLink;
  driver: QemuDriver;
}

export interface QemuHostOptions {
  dir: string;
  image: GuestImage;
  network: GuestNetwork;
  /** The network's prefixes (radvd advertises them when the test starts advertising). */
  prefixes: string[];
  /** The one guest: name → MAC. */
  guest: { name: string; mac: string };
  peerResumedAt?: QemuDriverOptions['peerResumedAt'];
}

export function qemuHost<N extends string>(
  name: N,
  ns: string,
  uplink: string,
  o: QemuHostOptions,
): QemuHost<N> {
  const runner = new ExecRunner({ netns: ns });
  const kernel = new Iproute2Kernel({ runner, spawner: netnsSpawner(ns) });
  const link = new GuestLink(
    { kernel, spawner: netnsSpawner(ns), clock: systemClock, logger: silentLogger() },
    {
      network: o.network.name,
      bridge: o.network.bridge,
      prefixes: o.prefixes,
      runDir: join(o.dir, name, 'radvd'),
    },
  );
  const driver = new QemuDriver({
    host: name,
    netns: ns,
    runDir: join(o.dir, name),
    guests: { [o.guest.name]: { mac: o.guest.mac, memoryMiB: 128 } },
    incomingAddress: () => uplink,
    runner: new ExecRunner(),
    image: async () => o.image,
    ...(o.peerResumedAt ? { peerResumedAt: o.peerResumedAt } : {}),
    logger: silentLogger(),
  });
  return { name, ns, uplink, link, driver };
}

/** Kill the hosts' QEMUs and remove their bridges (in `finally`; a host never built is skipped). */
export async function closeQemuHosts(hosts: { a: QemuHost; b: QemuHost } | undefined): Promise<void> {
  for (const h of hosts ? [hosts.a, hosts.b] : []) {
    await h.driver.close();
    await h.link.destroy().catch(() => {});
  }
}
