// The report's testbed (its Fig. 4/5) in network namespaces (docs/lab.md).
//
// Addressing: documentation prefixes (RFC 3849), one row per link or role.
//
//   link / role                     prefix               addresses
//   ofl-inet ↔ ofl-ha               2001:db8:1::/64      inet ::1, ha ::2
//   HA's virtual home link          2001:db8:f::/64      HA address ::1 (on lo of ofl-ha), HoA of net<i> ::(100+i)
//   ofl-inet ↔ ofl-host-a (uplink)  2001:db8:a::/64      inet ::1, host A by SLAAC (radvd in ofl-inet)
//   ofl-inet ↔ ofl-host-b (uplink)  2001:db8:b::/64      inet ::1, host B by SLAAC
//   ofl-inet ↔ ofl-cn               2001:db8:c::/64      inet ::1, correspondent ::2
//   MNP of net<i> (off-link)        2001:db8:1<i-1>::/64 gateway ::1 + fe80::1 (guest bridge), guest ::10
//   guest segment (on-link)         2001:db8:100::/64    inet ::1 + fe80::1 (router), guest <i> ::(f+i)
//
// Dual-stack (`--family dual`, the default) adds IPv4 (RFC 1918 space, as examples/ and the tests use):
//
//   ofl-inet ↔ ofl-ha               172.16.1.0/24        inet .1, ha .2 (the HA's IPv4 side, routed)
//   ofl-inet ↔ ofl-cn               172.16.3.0/24        inet .1, correspondent .2
//   IPv4 prefix of net<i>           10.1.<i-1>.0/24      gateway .1 (guest bridge, by the agent), guest .10
//   guest segment (on-link)         10.1.0.0/24          inet .1 (router), guest <i> .(9+i)
//
// The hosts need no IPv4: the guests' IPv4 packets travel in the same IPv6 tunnel (RFC 5555), so the
// correspondent reaches a guest's IPv4 address only through the HA, as it does the IPv6 one.
//
// Two home agents (`--home-agents 2`, issue 16): ofl-ha is HA 1, ofl-ha2 HA 2, both with store: etcd on three
// etcd members in ofl-inet and the HA address on their own tun device (anycast); BIRD in ofl-inet and in
// each HA namespace routes the HA address, the home prefix and the MNPs (and IPv4 prefixes) to the HAs by BGP
// (bird.ts), so ofl-inet has no static route to them and ofl-ha no HA address on lo.
//
//   ofl-inet ↔ ofl-ha2              2001:db8:2::/64      inet ::1, ha2 ::2  (IPv4 172.16.2.0/24: .1, .2)
//   etcd members (on ofl-inet's lo) 2001:db8:e::1–3      client port 2379, peer port 2380
//
// Off-link: ofl-inet routes the home prefix and the MNPs to the HA, which tunnels them to the active
// host (NEMO). On-link (the baseline): ofl-lan is one L2 switch joining ofl-inet and both hosts' guest
// bridges, and ofl-inet routes the guest segment directly; no NEMO is involved.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { slaacAddress } from '../hypervisor/qemu/guest-image.ts';
import type { CommandRunner } from '../system/runner.ts';
import {
  type AddressSpec,
  buildNet,
  type NetBridgeSpec,
  type NetSpec,
  type RouteSpec,
  type VethSpec,
} from './netbuild.ts';
import { LabError, spawnInNamespace } from './netns.ts';
import type { GuestKind, LabFamily } from './report.ts';

export type { LabFamily };

export const ADDRESSING = {
  haLink: { prefix: '2001:db8:1::/64', inet: '2001:db8:1::1', ha: '2001:db8:1::2' },
  ha2Link: { prefix: '2001:db8:2::/64', inet: '2001:db8:2::1', ha: '2001:db8:2::2' },
  home: { prefix: '2001:db8:f::/64', haAddress: '2001:db8:f::1' },
  hostA: { prefix: '2001:db8:a::/64', inet: '2001:db8:a::1' },
  hostB: { prefix: '2001:db8:b::/64', inet: '2001:db8:b::1' },
  cn: { prefix: '2001:db8:c::/64', inet: '2001:db8:c::1', cn: '2001:db8:c::2' },
  onLink: { prefix: '2001:db8:100::/64', inet: '2001:db8:100::1' },
} as const;

/** The etcd members of a two-HA lab, on ofl-inet's loopback. */
export const ETCD_HOSTS: readonly string[] = ['2001:db8:e::1', '2001:db8:e::2', '2001:db8:e::3'];

export const ADDRESSING_V4 = {
  haLink: { prefix: '172.16.1.0/24', inet: '172.16.1.1', ha: '172.16.1.2' },
  ha2Link: { prefix: '172.16.2.0/24', inet: '172.16.2.1', ha: '172.16.2.2' },
  cn: { prefix: '172.16.3.0/24', inet: '172.16.3.1', cn: '172.16.3.2' },
  onLink: { prefix: '10.1.0.0/24', inet: '10.1.0.1' },
} as const;

export type TopologyKind = 'off-link' | 'on-link';
export type HostName = 'host-a' | 'host-b';

export interface HostPlan {
  name: HostName;
  label: 'A' | 'B';
  ns: string;
  /** Uplink towards ofl-inet; its address (the care-of address) comes by SLAAC. */
  uplink: string;
  prefix: string;
  /** Fixed MAC, so the SLAAC address is the same on every run. */
  uplinkMac: string;
  /** Interface on ofl-inet's side of the uplink. */
  inetDev: string;
  /** The interface whose counters make the host's line in the report's Fig. 6. */
  trafficDev: string;
}

export interface GuestPlan {
  index: number;
  name: string;
  ns: string;
  /** The mobile network the guest belongs to (off-link: one network per guest). */
  network: string;
  prefix: string;
  address: string;
  gateway: string;
  homeAddress: string;
  /** Guest bridge on each host, and the host-side veth end that migrates between hosts. */
  bridge: string;
  bridgeMac: string;
  port: string;
  /** The guest's interface inside its namespace. */
  dev: string;
  mac: string;
  /** Dual-stack: the network's IPv4 prefix, the guest's static address in it and its default gateway. */
  ipv4?: { prefix: string; address: string; gateway: string };
}

/** One home agent of a cluster (`--home-agents 2`): its namespace and link to ofl-inet. */
export interface HaMemberPlan {
  /** Its name in the cluster (etcd.name) and in BGP. */
  name: 'ha1' | 'ha2';
  ns: string;
  uplink: string;
  /** Its address on the link, and ofl-inet's (and the same over IPv4, dual-stack). */
  linkAddress: string;
  inetAddress: string;
  linkAddress4?: string;
  inetAddress4?: string;
  /** Interface on ofl-inet's side. */
  inetDev: string;
  /** Its config and log: `ha` (ha.yaml, ha.log) for HA 1, `ha2` for HA 2. */
  file: string;
}

/** Two home agents sharing the HA address by BGP anycast, their bindings in etcd. */
export interface HaClusterPlan {
  members: readonly [HaMemberPlan, HaMemberPlan];
  /** The etcd members' addresses (on ofl-inet's loopback). */
  etcdHosts: readonly string[];
  /** The tun device that holds the HA address in each HA namespace (homeAgent.anycast.device). */
  device: string;
}

export interface LabPlan {
  kind: TopologyKind;
  /**
   * netns: guests are namespaces the lab builds; qemu: VMs the host agents boot (no namespace); libvirt:
   * libvirt domains the lab creates on host A (no namespace).
   */
  guestKind: GuestKind;
  family: LabFamily;
  inet: { ns: string };
  /** `linkAddress4`, `address4`: dual-stack only. */
  ha: { ns: string; uplink: string; linkAddress: string; address: string; linkAddress4?: string };
  cn: { ns: string; dev: string; address: string; address4?: string };
  lan: { ns: string; bridge: string } | undefined;
  /** Two home agents (`--home-agents 2`); undefined: one, `ha`. `ha` is then HA 1. */
  cluster?: HaClusterPlan;
  hosts: readonly [HostPlan, HostPlan];
  guests: readonly GuestPlan[];
  /** Every namespace, in creation order. */
  namespaces: readonly string[];
}

/** A built lab: the plan plus what the network gave (the hosts' SLAAC addresses). */
export interface Topology extends LabPlan {
  careOf: Record<HostName, string>;
}

const hex = (n: number) => n.toString(16);

/**
 * A VM guest's IPv4 side as the QEMU guest takes it (hypervisor.guests.*.ipv4, guestCmdline): its address
 * with its subnet's length, and the gateway.
 */
export function guestIpv4(v4: NonNullable<GuestPlan['ipv4']>): { address: string; gateway: string } {
  return { address: `${v4.address}/${v4.prefix.split('/')[1]}`, gateway: v4.gateway };
}

/** Names and addresses of the lab; pure, so the CLI can print them and tests can check them. */
export function planTopology(
  kind: TopologyKind,
  guestCount = 1,
  guestKind: GuestKind = 'netns',
  family: LabFamily = 'dual',
  homeAgents: 1 | 2 = 1,
): LabPlan {
  const dual = family === 'dual';
  if (homeAgents === 2 && kind === 'on-link')
    throw new LabError(
      'ERR_LAB_PLAN',
      'two home agents need the off-link topology (on-link has no home agent)',
    );
  // VM guests (QEMU, libvirt) have no namespace of their own: their addresses come from their MACs
  const vm = guestKind !== 'netns';
  const host = (name: HostName, label: 'A' | 'B', prefix: string, mac: string): HostPlan => ({
    name,
    label,
    ns: `ofl-${name}`,
    uplink: 'up0',
    prefix,
    uplinkMac: mac,
    inetDev: `to-${name}`,
    trafficDev: kind === 'on-link' ? 'lan0' : 'up0',
  });
  const guests: GuestPlan[] = [];
  for (let i = 1; i <= guestCount; i++) {
    const offPrefix = `2001:db8:${hex(0x100 + i - 1)}::`;
    guests.push({
      index: i,
      name: `guest-${i}`,
      ns: `ofl-guest-${i}`,
      network: `net${i}`,
      prefix: kind === 'on-link' ? ADDRESSING.onLink.prefix : `${offPrefix}/64`,
      // A QEMU guest off-link takes its address by SLAAC from its NIC's MAC (no namespace to configure);
      // on-link the same form of address on the segment's prefix, given statically (onlink-vms.ts). A
      // libvirt guest has the same addresses, given statically both ways (libvirt-guest.ts).
      address: vm
        ? slaacAddress(
            kind === 'on-link' ? ADDRESSING.onLink.prefix : `${offPrefix}/64`,
            `02:0f:00:00:02:${hex(i).padStart(2, '0')}`,
          )
        : kind === 'on-link'
          ? `2001:db8:100::${hex(0xf + i)}`
          : `${offPrefix}10`,
      gateway: 'fe80::1',
      homeAddress: `2001:db8:f::${hex(0x100 + i)}`,
      bridge: kind === 'on-link' ? 'br-lan' : `ofl-net${i}`,
      bridgeMac: `02:0f:00:00:01:${hex(i).padStart(2, '0')}`,
      port: `vg-guest-${i}`,
      dev: 'eth0',
      mac: `02:0f:00:00:02:${hex(i).padStart(2, '0')}`,
      ...(dual
        ? {
            ipv4:
              kind === 'on-link'
                ? {
                    prefix: ADDRESSING_V4.onLink.prefix,
                    address: `10.1.0.${9 + i}`,
                    gateway: ADDRESSING_V4.onLink.inet,
                  }
                : { prefix: `10.1.${i - 1}.0/24`, address: `10.1.${i - 1}.10`, gateway: `10.1.${i - 1}.1` },
          }
        : {}),
    });
  }
  const namespaces = [
    'ofl-inet',
    'ofl-ha',
    ...(homeAgents === 2 ? ['ofl-ha2'] : []),
    'ofl-host-a',
    'ofl-host-b',
    'ofl-cn',
  ];
  const member = (
    name: 'ha1' | 'ha2',
    ns: string,
    link: { inet: string; ha: string },
    link4: { inet: string; ha: string },
    inetDev: string,
    file: string,
  ): HaMemberPlan => ({
    name,
    ns,
    uplink: 'up0',
    linkAddress: link.ha,
    inetAddress: link.inet,
    ...(dual ? { linkAddress4: link4.ha, inetAddress4: link4.inet } : {}),
    inetDev,
    file,
  });
  if (kind === 'on-link') namespaces.push('ofl-lan');
  if (guestKind === 'netns') namespaces.push(...guests.map((g) => g.ns));
  return {
    kind,
    guestKind,
    family,
    inet: { ns: 'ofl-inet' },
    ha: {
      ns: 'ofl-ha',
      uplink: 'up0',
      linkAddress: ADDRESSING.haLink.ha,
      address: ADDRESSING.home.haAddress,
      ...(dual ? { linkAddress4: ADDRESSING_V4.haLink.ha } : {}),
    },
    cn: {
      ns: 'ofl-cn',
      dev: 'up0',
      address: ADDRESSING.cn.cn,
      ...(dual ? { address4: ADDRESSING_V4.cn.cn } : {}),
    },
    lan: kind === 'on-link' ? { ns: 'ofl-lan', bridge: 'lan' } : undefined,
    ...(homeAgents === 2
      ? {
          cluster: {
            members: [
              member('ha1', 'ofl-ha', ADDRESSING.haLink, ADDRESSING_V4.haLink, 'to-ha', 'ha'),
              member('ha2', 'ofl-ha2', ADDRESSING.ha2Link, ADDRESSING_V4.ha2Link, 'to-ha2', 'ha2'),
            ],
            etcdHosts: ETCD_HOSTS,
            device: 'offlink-ha',
          },
        }
      : {}),
    hosts: [
      host('host-a', 'A', ADDRESSING.hostA.prefix, '02:0f:00:00:00:0a'),
      host('host-b', 'B', ADDRESSING.hostB.prefix, '02:0f:00:00:00:0b'),
    ],
    guests,
    namespaces,
  };
}

export interface BuildOptions {
  runner: CommandRunner;
  /** Where radvd's config, pid and log go. */
  stateDir: string;
  /**
   * Who creates the hosts' guest bridges. 'lab': plain bridges made here (tests, on-link). 'agent':
   * the agents' guest link code makes them (off-link with daemons); then `attachGuest` is called after.
   */
  bridges: 'lab' | 'agent';
  /** Keep radvd running after this process exits (`lab up`). */
  detached?: boolean;
  signal?: AbortSignal;
}

/**
 * The lab's network as values (netbuild.ts): everything but radvd and what SLAAC gives. The hosts'
 * uplinks stay down, so that their first router solicitation, sent when `buildTopology` brings them up
 * after radvd runs, is answered.
 */
export function labNetSpec(plan: LabPlan, bridges: BuildOptions['bridges']): NetSpec {
  const { inet, ha, cn } = plan;
  const dual = plan.family === 'dual';
  const v4 = (address: string) => (dual ? [address] : []);
  const cluster = plan.cluster;
  const routers = new Set([
    inet.ns,
    ha.ns,
    ...(cluster ? cluster.members.map((m) => m.ns) : []),
    ...plan.hosts.map((h) => h.ns),
  ]);
  const spec = {
    namespaces: plan.namespaces.map((name) => ({
      name,
      forwarding: routers.has(name),
      // the hosts forward the guests' IPv4 into the tunnel, the HA out of it, ofl-inet between links
      ...(dual && routers.has(name) ? { sysctls: ['net.ipv4.ip_forward=1'] } : {}),
    })),
    bridges: [] as NetBridgeSpec[],
    veths: [
      // ofl-inet ↔ ofl-ha; the HA address and home prefix are reached through the HA
      {
        a: {
          ns: inet.ns,
          dev: 'to-ha',
          addresses: [`${ADDRESSING.haLink.inet}/64`, ...v4(`${ADDRESSING_V4.haLink.inet}/24`)],
        },
        b: {
          ns: ha.ns,
          dev: ha.uplink,
          addresses: [`${ha.linkAddress}/64`, ...v4(`${ADDRESSING_V4.haLink.ha}/24`)],
        },
      },
      // HA 2 (--home-agents 2), beside HA 1 (ofl-ha)
      ...(cluster?.members.slice(1) ?? []).map((m) => ({
        a: {
          ns: inet.ns,
          dev: m.inetDev,
          addresses: [`${m.inetAddress}/64`, ...(m.inetAddress4 ? [`${m.inetAddress4}/24`] : [])],
        },
        b: {
          ns: m.ns,
          dev: m.uplink,
          addresses: [`${m.linkAddress}/64`, ...(m.linkAddress4 ? [`${m.linkAddress4}/24`] : [])],
        },
      })),
      {
        a: {
          ns: inet.ns,
          dev: 'to-cn',
          addresses: [`${ADDRESSING.cn.inet}/64`, ...v4(`${ADDRESSING_V4.cn.inet}/24`)],
        },
        b: { ns: cn.ns, dev: cn.dev, addresses: [`${cn.address}/64`, ...v4(`${ADDRESSING_V4.cn.cn}/24`)] },
      },
      // the hosts' uplinks: addresses by SLAAC, fixed MACs so they are the same on every run
      ...plan.hosts.map((h) => ({
        a: { ns: inet.ns, dev: h.inetDev, addresses: [`${h.prefix.replace('::/64', '::1')}/64`] },
        b: { ns: h.ns, dev: h.uplink, mac: h.uplinkMac, up: false, ipv6: { accept_ra: 2, autoconf: 1 } },
      })),
    ] as VethSpec[],
    // One HA: the HA address on its lo, ofl-inet routes the home prefix to it. Two: each HA's tun device
    // holds the address while it serves, and BGP routes the home prefix (bird.ts); etcd on ofl-inet's lo.
    addresses: (cluster
      ? cluster.etcdHosts.map((h) => ({ ns: inet.ns, dev: 'lo', address: `${h}/128` }))
      : [{ ns: ha.ns, dev: 'lo', address: `${ha.address}/128` }]) as AddressSpec[],
    routes: [
      ...(cluster
        ? cluster.members.flatMap((m) => [
            { ns: m.ns, to: 'default', via: m.inetAddress, dev: m.uplink },
            ...(m.inetAddress4 ? [{ ns: m.ns, to: 'default', via: m.inetAddress4, dev: m.uplink }] : []),
          ])
        : [
            { ns: ha.ns, to: 'default', via: ADDRESSING.haLink.inet, dev: ha.uplink },
            { ns: inet.ns, to: ADDRESSING.home.prefix, via: ha.linkAddress },
            ...(dual ? [{ ns: ha.ns, to: 'default', via: ADDRESSING_V4.haLink.inet, dev: ha.uplink }] : []),
          ]),
      { ns: cn.ns, to: 'default', via: ADDRESSING.cn.inet, dev: cn.dev },
      ...(dual ? [{ ns: cn.ns, to: 'default', via: ADDRESSING_V4.cn.inet, dev: cn.dev }] : []),
    ] as RouteSpec[],
  };
  if (plan.kind === 'on-link') {
    // ofl-lan is one switch joining ofl-inet and each host's plain guest bridge (its lan0 port)
    const lan = plan.lan;
    if (!lan) throw new LabError('ERR_LAB_PLAN', 'an on-link plan has a LAN');
    spec.bridges.push({ ns: lan.ns, name: lan.bridge });
    spec.veths.push({
      a: {
        ns: inet.ns,
        dev: 'to-lan',
        addresses: [`${ADDRESSING.onLink.inet}/64`, 'fe80::1/64', ...v4(`${ADDRESSING_V4.onLink.inet}/24`)],
      },
      b: { ns: lan.ns, dev: 'inet', master: lan.bridge },
    });
    for (const h of plan.hosts) {
      spec.bridges.push({ ns: h.ns, name: 'br-lan' });
      spec.veths.push({
        a: { ns: h.ns, dev: 'lan0', master: 'br-lan' },
        b: { ns: lan.ns, dev: h.name, master: lan.bridge },
      });
    }
  } else {
    // (two HAs: BGP routes them)
    if (!cluster) {
      for (const g of plan.guests) spec.routes.push({ ns: inet.ns, to: g.prefix, via: ha.linkAddress });
      // the IPv4 prefixes go to the HA too, so the correspondent reaches them only through its tunnel
      for (const g of plan.guests)
        if (g.ipv4) spec.routes.push({ ns: inet.ns, to: g.ipv4.prefix, via: ADDRESSING_V4.haLink.ha });
    }
    // plain guest bridges as docs/dataplane.md describes them, standing in for the mobile routers' guest links
    if (bridges === 'lab')
      for (const h of plan.hosts)
        for (const g of plan.guests)
          spec.bridges.push({
            ns: h.ns,
            name: g.bridge,
            mac: g.bridgeMac,
            mtu: 1460,
            addresses: [
              `${g.prefix.replace('::/64', '::1')}/64`,
              'fe80::1/64',
              ...(g.ipv4 ? [`${g.ipv4.gateway}/24`] : []),
            ],
          });
  }
  if (plan.guestKind === 'netns') {
    const mtu = plan.kind === 'on-link' ? 1500 : 1460;
    for (const g of plan.guests) {
      // The netns driver moves the guest's peer between hosts, so the guest's link loses carrier for a few
      // ms, which a VM's link never does; a flushed neighbour cache would then cost a 1 s NS retransmit.
      // A roaming device's setting keeps the cache (the gateway's MAC is the same on every host); IPv4's
      // ARP cache has the same setting.
      spec.veths.push({
        a: {
          ns: g.ns,
          dev: g.dev,
          mac: g.mac,
          mtu,
          addresses: [`${g.address}/64`, ...(g.ipv4 ? [`${g.ipv4.address}/24`] : [])],
          ipv6: { accept_ra: 0, ndisc_evict_nocarrier: 0 },
          ...(g.ipv4 ? { ipv4: { arp_evict_nocarrier: 0 } } : {}),
        },
        // the port is attached to a bridge by attachGuest (which bridge depends on who makes them)
        b: { ns: plan.hosts[0].ns, dev: g.port, mtu, up: false },
      });
      spec.routes.push({ ns: g.ns, to: 'default', via: g.gateway, dev: g.dev });
      if (g.ipv4) spec.routes.push({ ns: g.ns, to: 'default', via: g.ipv4.gateway, dev: g.dev });
    }
  }
  return spec;
}

/** Build the lab. On failure, what was made stays for the caller's `labDown` to remove. */
export async function buildTopology(plan: LabPlan, options: BuildOptions): Promise<Topology> {
  await buildNet(labNetSpec(plan, options.bridges), options.runner, {
    ...(options.signal ? { signal: options.signal } : {}),
    onNamespaceExists: (ns, stderr) =>
      new LabError('ERR_LAB_BUSY', `namespace ${ns} exists (${stderr.trim()}): run \`offlink lab down\``),
  });
  await startRadvd(plan, options);
  for (const h of plan.hosts)
    await options.runner.run(['ip', '-n', h.ns, 'link', 'set', h.uplink, 'up'], {
      ...(options.signal ? { signal: options.signal } : {}),
    });
  if ((options.bridges === 'lab' || plan.kind === 'on-link') && plan.guestKind === 'netns') {
    for (const g of plan.guests) await attachGuest(g, plan.hosts[0].ns, options.runner);
  }
  const careOf = {} as Record<HostName, string>;
  for (const h of plan.hosts) careOf[h.name] = await waitSlaac(options.runner, h);
  return { ...plan, careOf };
}

/** Put a guest's port into `hostNs`'s guest bridge (the moved link arrives down and without master). */
export async function attachGuest(g: GuestPlan, hostNs: string, runner: CommandRunner): Promise<void> {
  await runner.run(['ip', '-n', hostNs, 'link', 'set', g.port, 'master', g.bridge, 'up']);
}

/**
 * The hypervisor step of the netns driver, for the on-link baseline and tests: one command moves the
 * guest's port into `to` and onto its bridge (named by ifindex, as the driver does). Returns the ms
 * that command took.
 */
export async function moveGuest(
  g: GuestPlan,
  from: string,
  to: string,
  runner: CommandRunner,
): Promise<number> {
  const r = await runner.run(['ip', '-n', to, '-j', 'link', 'show', 'dev', g.bridge]);
  const index = (JSON.parse(r.stdout) as { ifindex: number }[])[0]?.ifindex;
  if (!index) throw new LabError('ERR_LAB_MOVE', `no bridge ${g.bridge} in ${to}`);
  const t = performance.now();
  await runner.run(['ip', '-n', from, 'link', 'set', g.port, 'netns', to, 'master', `if${index}`, 'up']);
  return performance.now() - t;
}

async function startRadvd(plan: LabPlan, options: BuildOptions): Promise<void> {
  const conf = plan.hosts
    .map(
      (h) => `interface ${h.inetDev} {
  AdvSendAdvert on;
  MinRtrAdvInterval 3;
  MaxRtrAdvInterval 10;
  prefix ${h.prefix} { AdvOnLink on; AdvAutonomous on; };
};
`,
    )
    .join('');
  const confFile = join(options.stateDir, 'radvd-inet.conf');
  writeFileSync(confFile, conf);
  spawnInNamespace(
    plan.inet.ns,
    ['radvd', '-n', '-C', confFile, '-p', join(options.stateDir, 'radvd-inet.pid'), '-m', 'stderr'],
    { logFile: join(options.stateDir, 'radvd-inet.log'), detached: options.detached ?? false },
  );
}

/** Wait for a host's uplink to autoconfigure its global address from ofl-inet's router advertisements. */
async function waitSlaac(runner: CommandRunner, h: HostPlan, timeoutMs = 20_000): Promise<string> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const r = await runner.run([
      'ip',
      '-n',
      h.ns,
      '-j',
      '-6',
      'addr',
      'show',
      'dev',
      h.uplink,
      'scope',
      'global',
    ]);
    const addrs = (JSON.parse(r.stdout || '[]') as { addr_info?: { local: string; tentative?: boolean }[] }[])
      .flatMap((l) => l.addr_info ?? [])
      .filter((a) => !a.tentative);
    const route = await runner.run(['ip', '-n', h.ns, '-6', 'route', 'show', 'default']);
    if (addrs[0] && route.stdout.trim()) return addrs[0].local;
    if (Date.now() > end) {
      throw new LabError(
        'ERR_LAB_SLAAC',
        `${h.ns} got no address by SLAAC on ${h.uplink} (see radvd-inet.log in the state directory)`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
