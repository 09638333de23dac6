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
import { killCarrier, openHaClusterRig, untilBothTunnel } from '../../test/helpers/ha-cluster-lab.ts';
import { ADDR, haStatus, specFor } from '../../test/helpers/homeagent-lab.ts';
import { numArg, parseArgs } from '../lib/results.ts';

const args = parseArgs(process.argv.slice(2));
const KILLS = numArg(args, 'kills', 10);
const OUT = args.get('out');

const q = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
};

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
  for (let k = 0; k < KILLS; k++) {
    await untilBothTunnel(rig, ADDR.coaA);
    const { victim, survivor, rerouteMs, toGuest: d, fromGuest: u } = await killCarrier(rig, 3, 1000);
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
