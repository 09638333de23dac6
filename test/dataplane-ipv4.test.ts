// Dual-stack mobile networks (RFC 5555, issue 17) on the bpf data plane, in network namespaces (root):
// IPv4 packets of a mobile network go through the same IPv6 tunnel (next header 4) both ways.
//   g  (10.1.0.10) -- mr  (bridge ofl-net1 10.1.0.1, CoA 2001:db8:a::2) --+
//   g2 (10.1.0.10) -- mr2 (bridge ofl-net1 10.1.0.1, CoA 2001:db8:b::2) --+-- r -- ha (2001:db8:ffff::1) -- cn (10.9.0.2)
// r routes IPv6 only; IPv4 crosses it only inside the tunnel. The plain path (for the throughput
// comparison) is a second IPv4 prefix on mr's bridge, 10.2.0.0/24, routed natively over the same hops
// (r gets IPv4 addresses for it). Guest links have MTU 1500: Fragmentation Needed keeps TCP alive.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { createHomeAgentDataplane, createMobileRouterDataplane } from '../src/dataplane/index.ts';
import type { MobileRouterRoutes, TunnelBinding } from '../src/dataplane/types.ts';
import { site } from '../src/lab/netbuild.ts';
import { ExecRunner } from '../src/system/runner.ts';
import { type NetnsLab, withNetns } from './helpers/netns.ts';
import { iperfBytes, udpEcho, udpExchange, waitForOutput } from './helpers/probes.ts';
import { dataplaneBackends, needsRoot } from './helpers/requirements.ts';

const HA = '2001:db8:ffff::1';
const HOA = '2001:db8:ffff::100';
const COA1 = '2001:db8:a::2';
const COA2 = '2001:db8:b::2';
const MNP6 = '2001:db8:100::/64';
const MNP4 = '10.1.0.0/24';
const GUEST4 = '10.1.0.10';
const CN4 = '10.9.0.2';
const PLAIN_GUEST4 = '10.2.0.10';
const binding = (coa: string): TunnelBinding => ({ hoa: HOA, coa, prefixes: [MNP6, MNP4], id: 7 });
const mrRoutes = (coa: string): MobileRouterRoutes => ({
  network: 'net1',
  haAddress: HA,
  coa,
  uplink: 'up0',
  bridge: 'ofl-net1',
  prefixes: [MNP6, MNP4],
  table: 100,
  rulePref: 100,
});

const UDP_ECHO = udpEcho(4);
const waitFor = waitForOutput;

// A TCP transfer with a node socket: the client sends `bytes`, the server answers with the count it got.
const TCP_SINK = `const n=require('node:net');let total=0;
n.createServer(c=>{c.on('data',d=>total+=d.length);c.on('end',()=>c.end(String(total)))}).listen(5001,'0.0.0.0',()=>console.log('ready'));`;
const TCP_SEND = `const n=require('node:net');const [dst,bytes]=process.argv.slice(1);let reply='';
const c=n.connect(5001,dst,()=>{const chunk=Buffer.alloc(65536,7);let left=+bytes;
const more=()=>{while(left>0){const k=Math.min(left,chunk.length);left-=k;if(!c.write(chunk.subarray(0,k)))return c.once('drain',more)}c.end()};more()});
c.on('data',d=>reply+=d);c.on('end',()=>console.log(reply));c.setTimeout(15000,()=>{console.log('timeout');c.destroy()});`;

function udp(lab: NetnsLab, ns: string, dst: string, size: number, count = 3): Promise<string[]> {
  return udpExchange(lab, ns, dst, size, { count });
}

/** Bytes the receiver got in an iperf3 -4 run of `seconds` from the client (reversed: to it). */
function iperf4(
  lab: NetnsLab,
  server: { ns: string; addr: string },
  clientNs: string,
  reverse: boolean,
  seconds = 2,
): Promise<number> {
  return iperfBytes(lab, server, clientNs, { reverse, seconds });
}

const V4_FORWARDING = ['net.ipv4.ip_forward=1'];

async function topology(lab: NetnsLab) {
  const mrSite = (mr: 'mr' | 'mr2', rSide: string, subnet: string) =>
    site({ ns: mr, dev: 'up0', router: 'r', routerDev: rSide, subnet });
  const sites = [mrSite('mr', 'r-mr', '2001:db8:a::'), mrSite('mr2', 'r-mr2', '2001:db8:b::')];
  const haSite = site({ ns: 'r', dev: 'r-ha', router: 'ha', routerDev: 'ha-up', subnet: '2001:db8:1::' });
  const cnSite = site({ ns: 'cn', dev: 'cn0', router: 'ha', routerDev: 'ha-cn', subnet: '2001:db8:c::' });
  const guest = (g: 'g' | 'g2', mr: 'mr' | 'mr2') => ({
    a: { ns: g, dev: 'g0', addresses: ['2001:db8:100::10/64', `${GUEST4}/24`] },
    b: { ns: mr, dev: 'br-port', master: 'ofl-net1' },
  });
  return lab.build({
    namespaces: [
      { name: 'g' },
      { name: 'g2' },
      { name: 'mr', forwarding: true, sysctls: V4_FORWARDING },
      { name: 'mr2', forwarding: true, sysctls: V4_FORWARDING },
      { name: 'r', forwarding: true, sysctls: V4_FORWARDING },
      { name: 'ha', forwarding: true, sysctls: V4_FORWARDING },
      { name: 'cn' },
    ],
    bridges: (['mr', 'mr2'] as const).map((ns) => ({
      ns,
      name: 'ofl-net1',
      mac: '02:00:5e:10:00:01',
      addresses: ['2001:db8:100::1/64', '10.1.0.1/24'],
    })),
    veths: [haSite.veth, cnSite.veth, ...sites.map((s) => s.veth), guest('g', 'mr'), guest('g2', 'mr2')],
    addresses: [
      { ns: 'ha', dev: 'lo', address: `${HA}/128` },
      { ns: 'ha', dev: 'ha-cn', address: '10.9.0.1/24' },
      { ns: 'cn', dev: 'cn0', address: `${CN4}/24` },
    ],
    routes: [
      { ns: 'ha', to: 'default', via: '2001:db8:1::2' },
      { ns: 'r', to: `${HA}/128`, via: '2001:db8:1::1' },
      { ns: 'r', to: '2001:db8:c::/64', via: '2001:db8:1::1' },
      ...sites.map((s) => s.route),
      cnSite.route,
      { ns: 'cn', to: '0.0.0.0/0', via: '10.9.0.1' },
      { ns: 'g', to: '0.0.0.0/0', via: '10.1.0.1' },
      { ns: 'g2', to: '0.0.0.0/0', via: '10.1.0.1' },
    ],
  });
}

/** The plain path: 10.2.0.0/24 on mr's bridge, routed natively cn → ha → r → mr (IPv4 on r's links). */
async function plainPath(lab: NetnsLab, ns: Awaited<ReturnType<typeof topology>>): Promise<void> {
  await lab.build({
    addresses: [
      { ns: 'ha', dev: 'ha-up', address: '10.0.1.1/24' },
      { ns: 'r', dev: 'r-ha', address: '10.0.1.2/24' },
      { ns: 'r', dev: 'r-mr', address: '10.0.10.1/24' },
      { ns: 'mr', dev: 'up0', address: '10.0.10.2/24' },
      { ns: 'mr', dev: 'ofl-net1', address: '10.2.0.1/24' },
      { ns: 'g', dev: 'g0', address: `${PLAIN_GUEST4}/24` },
    ].map((a) => ({ ...a, ns: ns[a.ns as keyof typeof ns] })),
    routes: [
      { ns: ns.ha, to: '10.2.0.0/24', via: '10.0.1.2' },
      { ns: ns.r, to: '10.2.0.0/24', via: '10.0.10.2' },
      { ns: ns.r, to: '10.9.0.0/24', via: '10.0.1.1' },
      { ns: ns.mr, to: '10.9.0.0/24', via: '10.0.10.1' },
    ],
  });
}

/** The MTU cached for `dst` in `ns`'s route cache (learnt from Fragmentation Needed), if any. */
async function cachedMtu(lab: NetnsLab, ns: string, dst: string): Promise<number | undefined> {
  const { stdout } = await lab.exec(ns, ['ip', '-4', 'route', 'get', dst]);
  const m = /\bmtu (\d+)/.exec(stdout);
  return m ? Number(m[1]) : undefined;
}

const bpf = (await dataplaneBackends()).includes('bpf');

describe('bpf data plane, IPv4 mobile network prefixes (RFC 5555) between namespaces', {
  skip: bpf ? needsRoot() : 'the bpf data plane does not run on this kernel',
}, () => {
  test('IPv4 through the IPv6 tunnel: UDP, TCP, ingress check, Fragmentation Needed', async (t) => {
    await withNetns(async (lab) => {
      const ns = await topology(lab);
      const ha = createHomeAgentDataplane(
        'bpf',
        { runner: new ExecRunner({ netns: ns.ha }) },
        {
          haAddress: HA,
          uplink: 'ha-up',
          table: 200,
          mss: 1400,
          tunnelled: [MNP6, MNP4, `${HOA}/128`],
          runDir: join(lab.runDir, 'ha'),
        },
      );
      await ha.init();
      await ha.reconcile([binding(COA1)]);
      const mrs = [] as ReturnType<typeof createMobileRouterDataplane>[];
      for (const [netns, coa] of [
        [ns.mr, COA1],
        [ns.mr2, COA2],
      ] as const) {
        const dp = createMobileRouterDataplane(
          'bpf',
          { runner: new ExecRunner({ netns }) },
          { mss: 1400, runDir: join(lab.runDir, netns) },
        );
        await dp.initHost({ coa, haAddress: HA, uplink: 'up0', table: 200 });
        await dp.activate(mrRoutes(coa));
        mrs.push(dp);
      }
      const logs: Record<string, string> = { g: '', g2: '', cn: '' };
      for (const name of ['g', 'g2', 'cn'] as const) {
        const server = lab.spawn(ns[name], ['node', '-e', UDP_ECHO, '7', name]);
        server.stdout?.on('data', (d) => (logs[name] += d));
        await waitFor(server, /ready/);
      }
      const received = (name: string) => logs[name]!.split('\n').filter((l) => l.startsWith('rx ')).length;
      const counters = async (dp: { packetCounters?(): Promise<Record<string, number>> }) =>
        (await dp.packetCounters?.()) ?? {};

      await t.test('the kernel holds the IPv4 route, rule and clamp the data plane made', async () => {
        const haRoutes = await lab.exec(ns.ha, ['ip', '-4', 'route', 'show', 'proto', '241']);
        assert.match(haRoutes.stdout, /^10\.1\.0\.0\/24 +encap bpf .*dev ha-up/m);
        const mrRules = await lab.exec(ns.mr, ['ip', '-4', 'rule', 'show']);
        assert.match(mrRules.stdout, /^100:\s+from 10\.1\.0\.0\/24 iif ofl-net1 lookup 100 proto 241/m);
        const mrRoute = await lab.exec(ns.mr, ['ip', '-4', 'route', 'show', 'table', '100']);
        assert.match(mrRoute.stdout, /^default +encap bpf .*dev up0 proto 241/m);
        const clamp = await lab.exec(ns.ha, ['nft', 'list', 'table', 'ip', 'offlink']);
        assert.match(clamp.stdout, /maxseg size set 1420/);
      });

      await t.test(
        'UDP both directions, small and 1400-byte payloads, inside IPv6 next header 4',
        async () => {
          const before = await counters(ha);
          const why = async () =>
            JSON.stringify({ logs, ha: await counters(ha), mr: await counters(mrs[0]!) });
          for (const [from, to, name, size] of [
            [ns.cn, GUEST4, 'g', 64],
            [ns.g, CN4, 'cn', 64],
            [ns.cn, GUEST4, 'g', 1400],
            [ns.g, CN4, 'cn', 1400],
          ] as const) {
            let got = await udp(lab, from, to, size);
            // Open question: on a fresh topology, with another data plane test loading programs at the same
            // time, the very first datagrams cn -> guest were lost now and then after the HA encapsulated them
            // (encapOk 3) and before the MR's tc ingress saw anything (no counter moved there); alone it was not
            // seen. The first exchange may take up to five more tries (the path must come up within ~9 s); every
            // exchange after it is strict.
            for (let i = 0; i < 5 && from === ns.cn && size === 64 && got.length === 0; i++)
              got = await udp(lab, from, to, size);
            const want = [1, 2, 3].map(() => `${name}:${size}`);
            // (the counters and logs are read only on a failure: reading them takes time)
            if (JSON.stringify(got) !== JSON.stringify(want))
              assert.deepEqual(got, want, `${from} -> ${to}: ${await why()}`);
          }
          const after = await counters(ha);
          // 12 datagrams each way went through the HA's programs
          assert.ok(after['encapOk']! - before['encapOk']! >= 12, JSON.stringify({ before, after }));
          assert.ok(after['decapOk']! - before['decapOk']! >= 12, JSON.stringify({ before, after }));
          assert.equal(after['decapError'], before['decapError']);
        },
      );

      await t.test('TCP transfer both directions (node sockets and iperf3 -4)', async () => {
        const sink = lab.spawn(ns.g, ['node', '-e', TCP_SINK]);
        await waitFor(sink, /ready/);
        const sent = 20_000_000;
        const { stdout } = await lab.exec(ns.cn, ['node', '-e', TCP_SEND, GUEST4, String(sent)]);
        assert.equal(stdout.trim(), String(sent), 'every byte reached the guest');
        const down = await iperf4(lab, { ns: ns.g, addr: GUEST4 }, ns.cn, false);
        const up = await iperf4(lab, { ns: ns.g, addr: GUEST4 }, ns.cn, true);
        t.diagnostic(
          `iperf3 -4 cn->guest ${(down / 2e6).toFixed(0)} MB/s, guest->cn ${(up / 2e6).toFixed(0)} MB/s`,
        );
        assert.ok(down > 10e6, `cn -> guest moved only ${down} bytes`);
        assert.ok(up > 10e6, `guest -> cn moved only ${up} bytes`);
      });

      await t.test(
        'an IPv4-inner packet from a CoA not registered for its prefix is dropped, counted',
        async () => {
          const before = await counters(ha);
          const cn = received('cn');
          assert.deepEqual(await udp(lab, ns.g2, CN4, 64), []);
          assert.equal(received('cn'), cn, 'nothing reached the correspondent');
          const after = await counters(ha);
          assert.equal(after['decapWrongSource']! - before['decapWrongSource']!, 3);
        },
      );

      await t.test(
        'a DF IPv4 packet larger than the tunnel path gets Fragmentation Needed (mtu 1460)',
        async () => {
          // 1472 bytes of UDP payload: a 1500-byte IPv4 packet with DF (Linux's default for UDP), 1540 encapsulated
          assert.equal(await cachedMtu(lab, ns.cn, GUEST4), undefined);
          assert.deepEqual(await udp(lab, ns.cn, GUEST4, 1472, 1), []);
          assert.equal(await cachedMtu(lab, ns.cn, GUEST4), 1460, 'the HA told the correspondent');
          assert.deepEqual(await udp(lab, ns.cn, GUEST4, 1432, 1), ['g:1432'], 'a packet that fits passes');
          assert.equal(await cachedMtu(lab, ns.g, CN4), undefined);
          assert.deepEqual(await udp(lab, ns.g, CN4, 1472, 1), []);
          assert.equal(await cachedMtu(lab, ns.g, CN4), 1460, 'the MR told the guest');
        },
      );

      await t.test('IPv4 TCP throughput: tunnel vs the plain path over the same hops', async () => {
        await plainPath(lab, ns);
        const runs: Record<string, number[]> = {};
        for (let round = 0; round < 2; round++)
          for (const [path, addr] of [
            ['tunnel', GUEST4],
            ['plain', PLAIN_GUEST4],
          ] as const)
            for (const reverse of [false, true]) {
              const key = `${path} ${reverse ? 'guest->cn' : 'cn->guest'}`;
              const bytes = await iperf4(lab, { ns: ns.g, addr }, ns.cn, reverse, 3);
              runs[key] = [...(runs[key] ?? []), (bytes * 8) / 3 / 1e9];
            }
        for (const [key, gbps] of Object.entries(runs))
          t.diagnostic(`${key}: ${gbps.map((g) => g.toFixed(2)).join(', ')} Gbit/s`);
        for (const [key, gbps] of Object.entries(runs))
          assert.ok(Math.min(...gbps) > 0.08, `${key} moved ${gbps} Gbit/s`);
      });

      await t.test('flush and flushHost leave no IPv4 route, rule or clamp table of ours', async () => {
        await ha.flush();
        assert.equal(
          (await lab.exec(ns.ha, ['ip', '-4', 'route', 'show', 'proto', '241'])).stdout.trim(),
          '',
        );
        assert.doesNotMatch((await lab.exec(ns.ha, ['nft', 'list', 'tables'])).stdout, /offlink/);
        const mr = mrs[0]!;
        await mr.deactivate(mrRoutes(COA1));
        assert.doesNotMatch((await lab.exec(ns.mr, ['ip', '-4', 'rule', 'show'])).stdout, /proto 241/);
        const table = await lab.exec(ns.mr, ['ip', '-4', 'route', 'show', 'table', 'all', 'proto', '241']);
        assert.equal(table.stdout.trim(), '');
        await mr.activate(mrRoutes(COA1));
        await mr.flushHost();
        assert.doesNotMatch((await lab.exec(ns.mr, ['ip', '-4', 'rule', 'show'])).stdout, /proto 241/);
        assert.doesNotMatch((await lab.exec(ns.mr, ['nft', 'list', 'tables'])).stdout, /offlink/);
      });
    });
  });
});
