// HA failover (issue 16): the cluster rig of test/homeagent-cluster.test.ts (etcd ×3 and BIRD in the router
// namespace, BIRD and `offlink ha` with `anycast` in each of two HA namespaces, bpf data plane), one
// registered MR, UDP probes at 100/s each way through the tunnel. Each round kills (-9) the HA the router
// sends the home prefixes to, measures how long until the router's route moves to the other HA, the
// longest probe gap each way and the probes lost, checks the survivor still holds the binding, then
// restarts the killed HA and waits until it serves again. Root; needs etcd-server and bird2.
//
//   node --import tsx bench/ha/failover.ts [--kills 10] [--out bench/results/ha-failover.json]
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import {
  bgpRoutes,
  carrier,
  HA_NAMES,
  homeRoute,
  openHaClusterRig,
} from '../../test/helpers/ha-cluster-lab.ts';
import { ADDR, haRoutes, haStatus, killHard, specFor } from '../../test/helpers/homeagent-lab.ts';
import { numArg, parseArgs } from '../lib/results.ts';

const args = parseArgs(process.argv.slice(2));
const KILLS = numArg(args, 'kills', 10);
const OUT = args.get('out');

const q = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
};

async function until(what: string, cond: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const rig = await openHaClusterRig('bpf', { bgp: true });
const rounds: {
  killed: string;
  rerouteMs: number;
  gapMsDown: number;
  gapMsUp: number;
  lost: number;
  bindingsAfter: number;
}[] = [];
const load = loadavg()[0]!;
try {
  const reg = await rig.agents.mra.bu(specFor(ADDR.coaA, 1));
  if (reg.ba?.status !== 0) throw new Error(`registration: ${JSON.stringify(reg.ba)}`);
  const want = `tunnel ${ADDR.ha} -> ${ADDR.coaA}`;
  for (let k = 0; k < KILLS; k++) {
    await until('both HAs serve the binding', async () => {
      const t = await Promise.all(HA_NAMES.map((n) => haRoutes(rig.lab, rig.ns[n], ADDR.mnp)));
      return t.every((x) => x === want);
    });
    const victim = carrier(await homeRoute(rig.lab, rig.ns));
    if (!victim) throw new Error('no HA carries the home prefixes');
    const survivor = HA_NAMES.find((n) => n !== victim)!;
    const probes = { count: 300, size: 200, intervalMs: 10, waitMs: 1000 };
    const down = rig.agents.cn.probe(ADDR.guest, probes);
    const up = rig.agents.ga.probe(ADDR.cn, probes);
    await new Promise((r) => setTimeout(r, 1000));
    const t0 = performance.now();
    await killHard(rig.has[victim]!.child);
    await bgpRoutes(rig.lab, rig.ns, 'reroute', (via) => carrier(via) === survivor);
    const rerouteMs = Math.round(performance.now() - t0);
    const [d, u] = await Promise.all([down, up]);
    const bindingsAfter = (await haStatus(rig.lab, rig.ns[survivor])).bindings.length;
    rounds.push({
      killed: victim,
      rerouteMs,
      gapMsDown: d.gapMs,
      gapMsUp: u.gapMs,
      lost: d.sent - d.received + (u.sent - u.received),
      bindingsAfter,
    });
    console.log(JSON.stringify(rounds.at(-1)));
    await rig.start(victim);
  }
} finally {
  await rig.close();
}
const gaps = rounds.map((r) => Math.max(r.gapMsDown, r.gapMsUp));
const reroutes = rounds.map((r) => r.rerouteMs);
const result = {
  date: new Date().toISOString(),
  loadavg1: Math.round(load * 100) / 100,
  kills: rounds.length,
  rerouteMs: { p50: q(reroutes, 0.5), max: Math.max(...reroutes) },
  gapMs: { p50: q(gaps, 0.5), max: Math.max(...gaps) },
  lost: rounds.reduce((a, r) => a + r.lost, 0),
  bindingsLost: rounds.filter((r) => r.bindingsAfter !== 1).length,
  // The test MR sends BUs only when told: none was sent after the first registration.
  reRegistrations: 0,
  rounds,
};
console.log(JSON.stringify({ ...result, rounds: undefined }, null, 1));
if (OUT) writeFileSync(OUT, `${JSON.stringify(result, null, 1)}\n`);
