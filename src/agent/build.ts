// The one place where a host agent's object graph is made from its config: command runner, care-of
// address tracking, data plane, per network a signaling socket + guest link + mobile router, the
// hypervisor driver, and the peers' control API clients.
import { type Clock, systemClock } from '../clock.ts';
import { type Backend, createMobileRouterDataplane, Iproute2Kernel } from '../dataplane/index.ts';
import type { Driver } from '../hypervisor/driver.ts';
import { createLibvirtDriver, LibvirtDriver } from '../hypervisor/libvirt/index.ts';
import { NetnsDriver } from '../hypervisor/netns.ts';
import { bootGuestsHere, createQemuDriver, QemuDriver } from '../hypervisor/qemu/index.ts';
import type { Logger } from '../log.ts';
import { CoaTracker, StaticCoaSource } from '../mobilerouter/coa.ts';
import { GuestLink } from '../mobilerouter/guestlink.ts';
import { MobileRouter } from '../mobilerouter/mobilerouter.ts';
import { UdpTransport } from '../signaling/udp.ts';
import { nodeSpawner } from '../system/process.ts';
import type { CommandRunner } from '../system/runner.ts';
import { ExecRunner } from '../system/runner.ts';
import { Agent, type ManagedRouter } from './agent.ts';
import { ControlClient, peerOf } from './client.ts';
import type { AgentConfig } from './config.ts';
import type { AgentReloadResult } from './reload.ts';

export interface RunningAgent {
  agent: Agent;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Apply a reloaded config: peers here, the rest in Agent.reload (refused there before anything changes). */
  reload(next: AgentConfig): AgentReloadResult;
}

export function buildAgent(
  config: AgentConfig,
  options: { logger: Logger; backend: Backend; clock?: Clock; runner?: CommandRunner },
): RunningAgent {
  const clock = options.clock ?? systemClock;
  const logger = options.logger;
  const runner = options.runner ?? new ExecRunner();
  const kernel = new Iproute2Kernel({ runner, spawner: nodeSpawner });
  const coa =
    config.careOfAddress !== undefined
      ? new StaticCoaSource(config.careOfAddress)
      : new CoaTracker({ kernel, clock, logger }, { uplink: config.mobileRouter.uplink });
  const dataplane = createMobileRouterDataplane(
    options.backend,
    { runner, logger, spawner: nodeSpawner, clock },
    { mss: config.dataplane.mss, runDir: config.runDir },
  );
  const routers = new Map<string, ManagedRouter>();
  const guestLinks: GuestLink[] = [];
  const guestLinkOf = new Map<string, GuestLink>();
  for (const network of config.networks) {
    const guestLink = new GuestLink(
      { kernel, spawner: nodeSpawner, clock, logger },
      {
        network: network.name,
        bridge: network.bridge,
        prefixes: network.prefixes,
        runDir: config.runDir,
        ...(network.dhcp4 ? { dhcp4: network.dhcp4 } : {}),
      },
    );
    guestLinks.push(guestLink);
    guestLinkOf.set(network.name, guestLink);
    routers.set(
      network.name,
      new MobileRouter(
        { clock, logger, transport: new UdpTransport(), dataplane, guestLink, coa },
        { network, host: config.mobileRouter },
      ),
    );
  }
  const driver: Driver =
    config.hypervisor.driver === 'qemu'
      ? createQemuDriver(config.hypervisor, { host: config.host, runDir: config.runDir, runner, logger, coa })
      : config.hypervisor.driver === 'libvirt'
        ? createLibvirtDriver(config.hypervisor, { host: config.host, runner, spawner: nodeSpawner, logger })
        : new NetnsDriver({
            host: config.host,
            namespaces: config.hypervisor.namespaces,
            guests: config.hypervisor.guests,
            runner,
          });
  const peersOf = (c: AgentConfig) =>
    new Map(
      Object.entries(c.peers).map(([host, url]) => [
        host,
        peerOf(host, new ControlClient(url, { key: c.control.key, clock })),
      ]),
    );
  let peers = peersOf(config);
  const agent = new Agent(
    { clock, logger, driver, routers, peer: (host) => peers.get(host), dataplane },
    config,
  );
  return {
    agent,
    async start() {
      if (coa instanceof CoaTracker) await coa.start();
      if (driver instanceof QemuDriver && config.hypervisor.driver === 'qemu') {
        // QEMU guests live in this process: boot this host's before the agent looks for them.
        for (const link of guestLinks) await link.ensure();
        await bootGuestsHere(
          driver,
          config.hypervisor,
          config.host,
          config.networks.map((n) => ({ name: n.name, bridge: n.bridge, guests: n.guests })),
        );
      }
      if (driver instanceof LibvirtDriver) {
        // A libvirt domain attaches to its network's bridge by name, when it starts and when it migrates
        // in (libvirt's Prepare makes its tap): the bridges must exist on every host beforehand.
        for (const link of guestLinks) await link.ensure();
        driver.start();
      }
      await agent.start();
    },
    async stop() {
      await agent.stop();
      if (coa instanceof CoaTracker) await coa.stop();
    },
    reload(next) {
      const result = agent.reload(next);
      peers = peersOf(next);
      // DHCPv4 settings: the guest link rewrites dnsmasq's reservations (or restarts it) in the background
      for (const name of result.dhcp4) {
        const n = next.networks.find((x) => x.name === name);
        const link = guestLinkOf.get(name);
        if (!n || !link) continue;
        link
          .setDhcp4(n.dhcp4)
          .then((done) => logger.info({ network: name, dhcp4: done }, 'DHCPv4 settings applied'))
          .catch((err) => logger.error({ err, network: name }, 'DHCPv4 settings not applied'));
      }
      return result;
    },
  };
}
