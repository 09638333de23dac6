// Dual-stack mobile networks end to end (root, namespaces; RFC 5555): the real HA and agents, net1 with
// an IPv4 prefix beside its IPv6 one. The MR registers the IPv4 prefix with an IPv4 Home Address option
// (P flag) over the IPv6 signaling, the HA acknowledges it and tunnels the prefix's IPv4 traffic in IPv6
// to wherever net1 is; a correspondent on the HA's IPv4 side keeps an IPv4 TCP connection to the guest
// while net1 moves A→B→A, and UDP probes over both families measure each move's gap.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  type AgentRig,
  addIpv4Home,
  agentStatus,
  type Host,
  IPV4_HOME,
  type Lab,
  migrate,
  openAgentRig,
  report,
} from './helpers/agent-lab.ts';
import { ADDR, ECHO_PORT, haStatus } from './helpers/homeagent-lab.ts';
import type { NetnsLab } from './helpers/netns.ts';
import type { Proc, Procs } from './helpers/procs.ts';
import { dataplaneBackends, needsRoot } from './helpers/requirements.ts';

const V4 = IPV4_HOME;
const TCP_PORT = 7100;
// The IPv6 stream's bound in test/agent.test.ts (about 3× its loaded p95): IPv4 takes the same tunnel.
const GAP_BOUND_MS = 750;

// IPv4 rides the bpf data plane only (seg6 refuses IPv4 prefixes: docs/dataplane.md).
const backends = (await dataplaneBackends()).filter((b) => b === 'bpf');

for (const backend of backends) {
  describe(`dual-stack network: IPv4 through the IPv6 tunnel [${backend}]`, {
    skip: needsRoot(),
    timeout: 240_000,
  }, () => {
    let rig: AgentRig | undefined;
    let netns: NetnsLab;
    let procs: Procs;
    let lab: Lab;
    let p4: Proc;
    let p6: Proc;
    let tcp: Proc;

    before(async () => {
      const opened = await openAgentRig(backend, 'dualstack-it', { net1Ipv4: V4.prefix });
      rig = opened;
      ({ netns, procs, lab } = opened);
      await addIpv4Home(netns, lab);
      const run = (ns: string, argv: string[]) => netns.exec(ns, argv);
      // The guest's IPv4 side, static (its gateway is on net1's bridge on every host).
      await run(lab.ns.g1, ['ip', 'addr', 'add', `${V4.guest}/24`, 'dev', 'g0']);
      await run(lab.ns.g1, ['ip', 'route', 'add', 'default', 'via', V4.gateway]);
      await procs.app(lab.ns.g1, ['udp-echo', V4.guest, String(ECHO_PORT)]);
      await procs.app(lab.ns.g1, ['udp-echo', '2001:db8:100::10', String(ECHO_PORT)]);
      await procs.app(lab.ns.g1, ['tcp-echo', V4.guest, String(TCP_PORT)]);
      p4 = await procs.app(lab.ns.cn, ['udp-pinger', V4.guest, String(ECHO_PORT), '2']);
      p6 = await procs.app(lab.ns.cn, ['udp-pinger', '2001:db8:100::10', String(ECHO_PORT), '2']);
    });

    after(async () => {
      await rig?.close();
    });

    it('net1 registers its IPv4 prefix beside the IPv6 one; the HA accepts it', async () => {
      const binding = (await haStatus(netns, lab.ns.ha)).bindings.find((b) => b.hoa === ADDR.hoa);
      assert.deepEqual(binding?.prefixes, [ADDR.mnp, V4.prefix]);
      assert.ok(
        !lab.agents['host-a'].stderr.includes('IPv4 prefix refused'),
        'no IPv4 refusal in the acknowledgement',
      );
    });

    it('the correspondent reaches the guest over IPv4 (UDP and a TCP connection) through the tunnel', async () => {
      await report(p4);
      await new Promise((r) => setTimeout(r, 1500));
      const r = await report(p4);
      assert.ok(r.received > 0 && r.lost === 0, `IPv4 probes: ${JSON.stringify(r)}`);
      tcp = await procs.app(lab.ns.cn, ['tcp-client', V4.guest, String(TCP_PORT)]);
      tcp.send('hello over IPv4');
      assert.equal(await tcp.waitFor((l) => l === 'echo hello over IPv4'), 'echo hello over IPv4');
    });

    it(`net1 moves A→B→A: the IPv4 TCP connection survives, each gap ≤ ${GAP_BOUND_MS} ms on both families`, async (t) => {
      assert.ok(tcp, 'precondition: the TCP connection is up');
      let at: Host = 'host-a';
      for (const to of ['host-b', 'host-a'] as const) {
        await report(p4);
        await report(p6);
        const out = await migrate(lab, 'net1', at, to, 'make-before-break');
        assert.match(out, /migration \S+ succeeded: net1/, out);
        at = to;
        await new Promise((r) => setTimeout(r, 1500));
        const [v4, v6] = [await report(p4), await report(p6)];
        t.diagnostic(
          `→ ${to}: IPv4 gap ${v4.maxGapMs} ms, lost ${v4.lost}; IPv6 gap ${v6.maxGapMs} ms, lost ${v6.lost}`,
        );
        assert.ok(
          v4.maxGapMs <= GAP_BOUND_MS && v4.trailingLost === 0,
          `IPv4 after → ${to}: ${JSON.stringify(v4)}`,
        );
        assert.ok(
          v6.maxGapMs <= GAP_BOUND_MS && v6.trailingLost === 0,
          `IPv6 after → ${to}: ${JSON.stringify(v6)}`,
        );
        const line = `still here after ${to}`;
        tcp.send(line);
        assert.equal(
          await tcp.waitFor((l) => l === `echo ${line}` || l === 'closed'),
          `echo ${line}`,
          'the TCP connection is open',
        );
        const net1 = (await agentStatus(lab, to)).networks.find((n) => n.name === 'net1');
        assert.equal(net1?.state, 'active');
      }
      const binding = (await haStatus(netns, lab.ns.ha)).bindings.find((b) => b.hoa === ADDR.hoa);
      assert.deepEqual(binding?.prefixes, [ADDR.mnp, V4.prefix], 'the IPv4 prefix moved with the binding');
    });
  });
}
