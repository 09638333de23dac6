// Home agent cluster rig (issue 16): two real `offlink ha` processes sharing the HA address and one etcd
// cluster of three members, in namespaces.
//
//   ga ── mra ──┐                  ┌── ha1 (2001:db8:1::2)  both with the HA address 2001:db8:ffff::1 on lo
//   gb ── mrb ──┼── inet (router) ─┼── ha2 (2001:db8:2::2)
//               │  etcd ×3 on lo   └── cn  (correspondent)
//
// Static: `inet` routes the home prefixes to one HA at a time (`routeHomeTo`), the HA address is on each
// HA's loopback. BGP (`bgp: true`): BIRD in `inet` and in each HA namespace; each HA's BIRD announces the
// HA address and the home prefixes while the HA's tun device `offlink-ha` (which holds the address and
// lives as long as the HA process) is up, and `inet` routes them to the best announcement. The etcd
// members listen on inet's loopback addresses 2001:db8:e::1–3, which both HAs reach through their uplinks.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Backend } from '../../src/dataplane/probe.ts';
import { type BgpPeer, haBirdConf, ROUTER_ASN, routerBirdConf } from '../../src/lab/bird.ts';
import { EtcdCluster } from '../../src/lab/etcd.ts';
import { site } from '../../src/lab/netbuild.ts';
import {
  ADDR,
  HOME_PREFIXES,
  haConfigYaml,
  haRoutes,
  killHard,
  mrTunnel,
  NsAgent,
  startHa,
} from './homeagent-lab.ts';
import { type NetnsLab, openNetns } from './netns.ts';
import { runs } from './requirements.ts';

export const hasBird = (): boolean => runs('bird');

/** Each HA's BGP session with `inet` (site(): inet is ::1, the HA ::2 on its uplink). */
function peer(name: HaName): BgpPeer {
  const i = HA_NAMES.indexOf(name) + 1;
  return {
    name,
    asn: ROUTER_ASN + i,
    routerId: `10.255.0.${i}`,
    address: HA_UPLINK[name],
    router: HA_UPLINK[name].replace(/2$/, '1'),
  };
}

/** An HA host's BIRD: the HA address and home prefixes while the HA's tun device is up, to its router. */
export function haBird(name: HaName, device = 'offlink-ha'): string {
  return haBirdConf(peer(name), { device, prefixes: [`${ADDR.ha}/128`, ...HOME_PREFIXES] });
}

async function startBird(lab: NetnsLab, ns: ClusterTopology, dir: string): Promise<void> {
  const confs: [HaName | 'inet', string][] = [
    ['inet', routerBirdConf(HA_NAMES.map(peer))],
    ...HA_NAMES.map((n) => [n, haBird(n)] as [HaName, string]),
  ];
  for (const [name, conf] of confs) {
    const file = join(dir, `bird-${name}.conf`);
    writeFileSync(file, conf);
    const child = lab.spawn(ns[name], ['bird', '-f', '-c', file, '-s', join(dir, `bird-${name}.ctl`)]);
    child.stderr!.on('data', () => {});
  }
}

/** Where `inet` routes the guests' prefix now: the uplink address of the HA it goes to, '' if none. */
export async function homeRoute(lab: NetnsLab, ns: ClusterTopology): Promise<string> {
  const { stdout } = await lab.exec(ns.inet, ['ip', '-6', 'route', 'show', HOME_PREFIXES[1]!]);
  return /via (\S+)/.exec(stdout)?.[1] ?? '';
}

/** Until `inet`'s route to the home prefixes satisfies `ok` (BGP converged), within 30 s. */
export async function bgpRoutes(
  lab: NetnsLab,
  ns: ClusterTopology,
  what: string,
  ok: (via: string) => boolean,
): Promise<string> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const via = await homeRoute(lab, ns);
    if (ok(via)) return via;
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what} (inet routes via '${via}')`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The HA that `inet` routes the home prefixes to now. */
export function carrier(via: string): HaName | undefined {
  return HA_NAMES.find((n) => HA_UPLINK[n] === via);
}

export const HA_NAMES = ['ha1', 'ha2'] as const;
export type HaName = (typeof HA_NAMES)[number];
/** Each HA's uplink address: where `inet` routes the home prefixes to reach it. */
export const HA_UPLINK: Record<HaName, string> = { ha1: '2001:db8:1::2', ha2: '2001:db8:2::2' };
const ETCD_HOSTS = ['2001:db8:e::1', '2001:db8:e::2', '2001:db8:e::3'];

export interface ClusterTopology
  extends Record<HaName | 'inet' | 'mra' | 'mrb' | 'ga' | 'gb' | 'cn', string> {}

export interface ClusterRig {
  lab: NetnsLab;
  ns: ClusterTopology;
  etcd: EtcdCluster;
  /** Config file of each HA. */
  configs: Record<HaName, string>;
  has: Partial<Record<HaName, { child: ChildProcess; log: string[] }>>;
  agents: Record<'mra' | 'mrb' | 'ga' | 'gb' | 'cn', NsAgent>;
  /** Start (or restart) one HA; resolves once it serves. */
  start(name: HaName): Promise<{ child: ChildProcess; log: string[] }>;
  /** Make `inet` route the home prefixes to `name`'s uplink. */
  routeHomeTo(name: HaName): Promise<void>;
  close(): Promise<void>;
}

async function buildClusterTopology(lab: NetnsLab, bgp: boolean): Promise<ClusterTopology> {
  const sites = [
    site({ ns: 'ha1', dev: 'ha-up', router: 'inet', routerDev: 'inet-h1', subnet: '2001:db8:1::' }),
    site({ ns: 'ha2', dev: 'ha-up', router: 'inet', routerDev: 'inet-h2', subnet: '2001:db8:2::' }),
    site({ ns: 'mra', dev: 'up0', router: 'inet', routerDev: 'inet-a', subnet: '2001:db8:a::' }),
    site({ ns: 'mrb', dev: 'up0', router: 'inet', routerDev: 'inet-b', subnet: '2001:db8:b::' }),
    site({ ns: 'cn', dev: 'cn0', router: 'inet', routerDev: 'inet-cn', subnet: '2001:db8:c::' }),
  ];
  const guestLink = (mr: 'mra' | 'mrb', guest: 'ga' | 'gb') => ({
    a: { ns: mr, dev: 'mr-g', mtu: 1460, addresses: [`${ADDR.gw}/64`] },
    b: { ns: guest, dev: 'g0', mtu: 1500, addresses: [`${ADDR.guest}/64`] },
  });
  return lab.build({
    namespaces: [
      { name: 'inet', forwarding: true },
      { name: 'ha1', forwarding: true },
      { name: 'ha2', forwarding: true },
      { name: 'mra', forwarding: true },
      { name: 'mrb', forwarding: true },
      { name: 'cn' },
      { name: 'ga' },
      { name: 'gb' },
    ],
    veths: [...sites.map((s) => s.veth), guestLink('mra', 'ga'), guestLink('mrb', 'gb')],
    addresses: [
      ...(bgp ? [] : HA_NAMES.map((ns) => ({ ns, dev: 'lo', address: `${ADDR.ha}/128` }))),
      ...ETCD_HOSTS.map((h) => ({ ns: 'inet', dev: 'lo', address: `${h}/128` })),
    ],
    routes: [
      ...sites.map((s) => s.route),
      ...(bgp ? [] : HOME_PREFIXES.map((to) => ({ ns: 'inet', to, via: HA_UPLINK.ha1 }))),
      { ns: 'ga', to: 'default', via: ADDR.gw },
      { ns: 'gb', to: 'default', via: ADDR.gw },
    ],
  });
}

/**
 * Builds the cluster rig on `backend`: topology, etcd in `inet`, both MRs' tunnels, both HAs (store: etcd),
 * helper processes with UDP echo in the guests and the correspondent. Removed if building fails, and by
 * `close()`.
 */
export async function openHaClusterRig(
  backend: Backend,
  options: { bgp?: boolean } = {},
): Promise<ClusterRig> {
  const bgp = options.bgp ?? false;
  const dir = mkdtempSync(join(tmpdir(), 'offlink-ha-cluster-'));
  const lab = await openNetns({ backend });
  const agents: Partial<ClusterRig['agents']> = {};
  let etcd: EtcdCluster | undefined;
  const close = async () => {
    await Promise.all(Object.values(agents).map((a) => a.close()));
    await lab.cleanup(); // kills the HAs
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const ns = await buildClusterTopology(lab, bgp);
    etcd = await EtcdCluster.start(3, [], { netns: ns.inet, hosts: ETCD_HOSTS });
    const configs = {} as Record<HaName, string>;
    for (const name of HA_NAMES) {
      configs[name] = join(dir, `${name}.yaml`);
      writeFileSync(
        configs[name],
        haConfigYaml({
          backend,
          database: join(dir, `${name}.sqlite`),
          runDir: join(dir, name),
          etcd: { endpoints: etcd.endpoints, name },
          anycast: bgp,
        }),
      );
    }
    if (bgp) await startBird(lab, ns, dir);
    await mrTunnel(lab, ns.mra, ADDR.coaA);
    await mrTunnel(lab, ns.mrb, ADDR.coaB);
    const has: ClusterRig['has'] = {};
    // ha1 first, so that it is the expiry owner.
    const start = async (name: HaName) => {
      has[name] = await startHa(lab, ns[name], configs[name]);
      return has[name];
    };
    for (const name of HA_NAMES) await start(name);
    if (bgp) await bgpRoutes(lab, ns, 'the HAs announce the HA address', (via) => via.length > 0);
    for (const name of ['mra', 'mrb', 'ga', 'gb', 'cn'] as const) agents[name] = new NsAgent(ns[name]);
    const all = agents as ClusterRig['agents'];
    await Promise.all([all.ga.echo(), all.gb.echo(), all.cn.echo()]);
    const routeHomeTo = async (name: HaName) => {
      for (const to of HOME_PREFIXES)
        await lab.exec(ns.inet, ['ip', '-6', 'route', 'replace', to, 'via', HA_UPLINK[name]]);
    };
    return { lab, ns, etcd, configs, has, agents: all, start, routeHomeTo, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** Until `cond` holds (polled every 50 ms), within `ms`. */
export async function until(what: string, cond: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Until both HAs' kernels tunnel the guests' prefix to `coa` (undefined: to nowhere). */
export function untilBothTunnel(rig: ClusterRig, coa: string | undefined): Promise<void> {
  const want = coa ? `tunnel ${ADDR.ha} -> ${coa}` : '';
  return until(`both HAs tunnel the MNP to ${coa ?? 'nowhere'}`, async () => {
    const t = await Promise.all(HA_NAMES.map((n) => haRoutes(rig.lab, rig.ns[n], ADDR.mnp)));
    return t.every((x) => x === want);
  });
}

export interface FailoverRound {
  victim: HaName;
  survivor: HaName;
  /** From the kill until `inet` routes the home prefixes to the survivor (polled every 100 ms). */
  rerouteMs: number;
  toGuest: Awaited<ReturnType<NsAgent['probe']>>;
  fromGuest: Awaited<ReturnType<NsAgent['probe']>>;
}

/**
 * Probes at 100/s both ways (correspondent ↔ guest A) for `seconds`, and kill -9 of the HA `inet` routes
 * the home prefixes to `killAfterMs` in; what it cost.
 */
export async function killCarrier(
  rig: ClusterRig,
  seconds: number,
  killAfterMs: number,
): Promise<FailoverRound> {
  const victim = carrier(await homeRoute(rig.lab, rig.ns));
  if (!victim) throw new Error('inet routes the home prefixes to no HA');
  const survivor = HA_NAMES.find((n) => n !== victim)!;
  const probes = { count: seconds * 100, size: 200, intervalMs: 10, waitMs: 1000 };
  const down = rig.agents.cn.probe(ADDR.guest, probes);
  const up = rig.agents.ga.probe(ADDR.cn, probes);
  await new Promise((r) => setTimeout(r, killAfterMs));
  const killedAt = performance.now();
  await killHard(rig.has[victim]!.child);
  await bgpRoutes(rig.lab, rig.ns, `inet routes to ${survivor}`, (via) => carrier(via) === survivor);
  const rerouteMs = Math.round(performance.now() - killedAt);
  const [toGuest, fromGuest] = await Promise.all([down, up]);
  return { victim, survivor, rerouteMs, toGuest, fromGuest };
}
