// Home agent cluster rig (issue 16): two real `offlink ha` processes sharing the HA address and one etcd
// cluster of three members, in namespaces.
//
//   ga ── mra ──┐                  ┌── ha1 (2001:db8:1::2)  both with the HA address 2001:db8:ffff::1 on lo
//   gb ── mrb ──┼── inet (router) ─┼── ha2 (2001:db8:2::2)
//               │  etcd ×3 on lo   └── cn  (correspondent)
//
// `inet` routes the home prefixes to one HA at a time (`routeHomeTo`); the etcd members listen on inet's
// loopback addresses 2001:db8:e::1–3, which both HAs reach through their uplinks.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Backend } from '../../src/dataplane/probe.ts';
import { site } from '../../src/lab/netbuild.ts';
import { EtcdCluster } from './etcd.ts';
import { ADDR, HOME_PREFIXES, haConfigYaml, mrTunnel, NsAgent, startHa } from './homeagent-lab.ts';
import { type NetnsLab, openNetns } from './netns.ts';

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

async function buildClusterTopology(lab: NetnsLab): Promise<ClusterTopology> {
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
      { ns: 'ha1', dev: 'lo', address: `${ADDR.ha}/128` },
      { ns: 'ha2', dev: 'lo', address: `${ADDR.ha}/128` },
      ...ETCD_HOSTS.map((h) => ({ ns: 'inet', dev: 'lo', address: `${h}/128` })),
    ],
    routes: [
      ...sites.map((s) => s.route),
      ...HOME_PREFIXES.map((to) => ({ ns: 'inet', to, via: HA_UPLINK.ha1 })),
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
export async function openHaClusterRig(backend: Backend): Promise<ClusterRig> {
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
    const ns = await buildClusterTopology(lab);
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
        }),
      );
    }
    await mrTunnel(lab, ns.mra, ADDR.coaA);
    await mrTunnel(lab, ns.mrb, ADDR.coaB);
    const has: ClusterRig['has'] = {};
    const start = async (name: HaName) => {
      has[name] = await startHa(lab, ns[name], configs[name]);
      return has[name];
    };
    for (const name of HA_NAMES) await start(name);
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
