// A recorded Binding Acknowledgement replayed to the mobile router (root, namespaces, the real daemons;
// issue 18). The attacker records a genuine signed BA 135 for net1: a BU with an old sequence number,
// signed with net1's key and sent from host-a's care-of address, which the HA answers with its stored
// sequence, signed. While the real agent's next refresh of net1 waits for its BA (the HA's first BA to
// host-a is dropped by nftables in the HA's namespace, so the retransmission 1 s later is what gets
// answered), the attacker sends that BA 135 to net1's socket from port 4191 of the correspondent's address
// (the MR checks the source port, not the address: docs/mobilerouter.md), eight times in a row. Before
// issue 18 the MR took each for an answer to its outstanding BU: three resyncs, then a refusal that
// removed net1's routes for retransmit.maxMs (32 s). Now a 135 must echo the outstanding BU's timestamp:
// each replay is ignored and counted (`ignoredReplay`, the log line rate-limited), the refresh completes
// as if nothing had come, and guest-1's stream through the tunnel loses nothing. (The stream alone would
// not tell: with net1's routes gone, host-a forwards guest-1's probes natively and the rig's router lets
// them pass, so the test also counts what leaves host-a untunnelled.)
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { IGNORED_LOGS_PER_SECOND } from '../src/mobilerouter/runtime.ts';
import { BaStatus, baStatusName } from '../src/protocol/constants.ts';
import { type AgentRig, agentStatus, HOSTS, type Lab, openAgentRig, report } from './helpers/agent-lab.ts';
import { type CapturedDatagram, captureUdp, DropFirst, hexAddress, waitUntil } from './helpers/faults.ts';
import {
  ADDR,
  type BindingView,
  ECHO_PORT,
  haRoutes,
  haStatus,
  KEY,
  NsAgent,
  SPI,
} from './helpers/homeagent-lab.ts';
import { makeBindingUpdate } from './helpers/homeagent-mr.ts';
import type { NetnsLab } from './helpers/netns.ts';
import type { Proc } from './helpers/procs.ts';
import { dataplaneBackends, needsRoot } from './helpers/requirements.ts';

const NET1_SA = { spi: SPI, key: Buffer.from(KEY, 'hex'), algorithm: 'hmac-sha1' as const };
const COA = HOSTS['host-a'];
// Refresh at 80 %, 12.8 s after a registration: the 3.2 s left cover the refresh's 1 s retransmission
// with room to spare, so the MR's own view of the binding never runs out while its BA is held back.
const LIFETIME_S = 16;
// Four are enough to have made the MR give up before issue 18 (three resyncs, then a refusal); eight
// also go past the 5 log lines a second of ignored messages.
const REPLAYS = 8;
// The HA's BAs for net1 (inner destination: its HoA, 24 bytes into the UDP payload) to host-a.
const NET1_BA_TO_A = `ip6 daddr ${COA} udp sport 4191 @th,256,128 0x${hexAddress(ADDR.hoa)}`;

/** net1's policy rules on host-a and the routes of the tables they look up. */
async function mrRoutes(netns: NetnsLab, ns: string): Promise<string> {
  const rules = (await netns.exec(ns, ['ip', '-6', 'rule', 'show'])).stdout
    .split('\n')
    .filter((l) => l.includes('ofl-net1'));
  const out = [...rules];
  for (const table of new Set(rules.map((l) => /lookup (\S+)/.exec(l)?.[1]))) {
    if (table) out.push((await netns.exec(ns, ['ip', '-6', 'route', 'show', 'table', table])).stdout.trim());
  }
  return out.join('\n');
}

/** The JSON log lines of `p` about net1 from character `from` on (those with message `msg`, if given). */
function net1Log(p: Proc, from: number, msg?: string): Record<string, unknown>[] {
  return p.stderr
    .slice(from)
    .split('\n')
    .filter((l) => l.startsWith('{') && l.includes('"network":"net1"'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => msg === undefined || l['msg'] === msg);
}

const backends = await dataplaneBackends();

for (const backend of backends) {
  describe(`a recorded BA 135 replayed to the mobile router during a refresh is ignored [${backend}]`, {
    skip: needsRoot(),
    timeout: 120_000,
  }, () => {
    let rig: AgentRig | undefined;
    let netns: NetnsLab;
    let lab: Lab;
    let agent: Proc;
    let pinger: Proc;
    let attacker: NsAgent | undefined;
    let spoofer: NsAgent | undefined;
    let untunnelled: DropFirst | undefined;
    let firstBus: { datagrams(): Promise<CapturedDatagram[]> } | undefined;
    /** The recorded BA 135 and the sequence it carries. */
    let recorded: { hex: string; sequence: number } | undefined;
    /** What the scenario saw; set once the replays were sent. */
    let run:
      | {
          logFrom: number;
          binding: BindingView;
          haRoutes: string;
          mrRoutes: string;
          mrPort: number;
          burstMs: number;
          /** The refresh was answered within 5 s of the replays. */
          answered: boolean;
          dropped: number;
        }
      | undefined;

    before(async () => {
      rig = await openAgentRig(backend, 'sec-replay', (n, dir) => ({
        net1: `lifetimeSeconds: ${LIFETIME_S}`,
        // An attacker on the path records host-a's first BUs, for net1's port on host-a.
        beforeAgents: async (ns) => {
          firstBus = await captureUdp(n, ns.inet, {
            iface: 'inet-a',
            filter: 'udp dst port 4191',
            count: 2,
            file: join(dir, 'bu.pcap'),
          });
        },
      }));
      ({ netns, lab } = rig);
      agent = lab.agents['host-a'];
      await rig.procs.app(lab.ns.cn, ['udp-echo', ADDR.cn, String(ECHO_PORT)]);
      pinger = await rig.procs.app(lab.ns.g1, ['udp-pinger', ADDR.cn, String(ECHO_PORT), '10']);
      attacker = new NsAgent(lab.ns.cn);
      spoofer = new NsAgent(lab.ns['host-a']);
    });

    after(async () => {
      await untunnelled?.remove();
      await Promise.all([attacker?.close(), spoofer?.close()]);
      await rig?.close();
    });

    it("the attacker's recording: a stale BU from host-a's care-of address gets a signed BA 135", async () => {
      const stored = (await haStatus(netns, lab.ns.ha)).bindings.find((b) => b.hoa === ADDR.hoa);
      assert.ok(stored, 'precondition: net1 is registered');
      const bu = makeBindingUpdate({
        hoa: ADDR.hoa,
        ha: ADDR.ha,
        coa: COA,
        sa: NET1_SA,
        sequence: stored.sequence,
        prefixes: [ADDR.mnp],
      });
      const { reply } = await spoofer!.raw({
        from: COA,
        to: ADDR.ha,
        hex: Buffer.from(bu).toString('hex'),
        waitMs: 600,
        verify: { spi: SPI, key: KEY, coa: COA, hoa: ADDR.hoa },
      });
      assert.equal(reply?.type, 'bindingAcknowledgement');
      assert.equal(reply?.status, 135);
      assert.equal(reply?.authentic, true, 'signed with net1’s key');
      assert.ok(reply.sequence !== undefined && reply.sequence >= stored.sequence, 'the stored sequence');
      recorded = { hex: reply.hex, sequence: reply.sequence };
    });

    it(`replayed ${REPLAYS} times from port 4191 while net1's refresh waits for its BA: no resync, no refusal`, async (t) => {
      assert.ok(recorded, 'precondition: a BA 135 was recorded');
      const bu = (await firstBus!.datagrams()).find(
        (d) => d.src === COA && d.payload.subarray(8, 24).equals(Buffer.from(hexAddress(ADDR.hoa), 'hex')),
      );
      assert.ok(bu, "net1's first BU was recorded on the path (its source port is net1's socket)");
      const binding = (await haStatus(netns, lab.ns.ha)).bindings.find((b) => b.hoa === ADDR.hoa)!;
      const before = {
        binding,
        haRoutes: await haRoutes(netns, lab.ns.ha, ADDR.mnp),
        mrRoutes: await mrRoutes(netns, lab.ns['host-a']),
      };
      assert.notEqual(before.haRoutes, '', 'precondition: the HA tunnels net1');
      assert.match(before.mrRoutes, /ofl-net1/, "precondition: host-a routes net1's guests");
      // Counts (and lets through) what of net1's guests leaves host-a untunnelled: with the MR's routes
      // gone, host-a would forward guest-1's probes natively and the stream would go on around the HA.
      untunnelled = await DropFirst.install(netns, lab.ns.inet, {
        hook: 'forward',
        match: `iifname "inet-a" ip6 saddr ${ADDR.mnp}`,
        count: 100_000,
        verdict: 'accept',
      });
      await report(pinger);
      const logFrom = agent.stderr.length;

      // The next refresh's first BA never reaches host-a: its BU is outstanding until the retransmission.
      const hold = await DropFirst.install(netns, lab.ns.ha, {
        hook: 'output',
        match: NET1_BA_TO_A,
        count: 1,
      });
      try {
        await waitUntil(
          'the first BA of net1’s refresh to be held back',
          async () => (await hold.dropped()) >= 1,
          (LIFETIME_S + 5) * 1000,
          20,
        );
        const t0 = Date.now();
        await attacker!.raw({
          from: ADDR.cn,
          fromPort: 4191,
          to: COA,
          port: bu.srcPort,
          hex: recorded.hex,
          count: REPLAYS,
          waitMs: 0,
        });
        const burstMs = Date.now() - t0;
        // The retransmission 1 s after the refresh's BU gets the answer; the next would go 2 s later.
        const answered = await waitUntil(
          'net1’s refresh to be answered',
          async () => net1Log(agent, logFrom, 'registered').length > 0,
          5000,
        ).then(
          () => true,
          () => false,
        );
        run = { logFrom, ...before, mrPort: bu.srcPort, burstMs, answered, dropped: await hold.dropped() };
      } finally {
        await hold.remove();
      }
      const said = net1Log(agent, logFrom).map((l) => String(l['msg']));
      t.diagnostic(`${REPLAYS} replays to [${COA}]:${bu.srcPort} in ${run.burstMs} ms`);
      t.diagnostic(`net1 logged: ${[...new Set(said)].join('; ')}`);
      const net1 = (await agentStatus(lab, 'host-a')).networks.find((n) => n.name === 'net1')!;
      assert.equal(net1.state, 'active');
      assert.equal(net1.lastError, undefined);
      assert.equal(run.dropped, 1, 'exactly the refresh’s first BA was held back');
      // Nothing but the refresh (one BU, its retransmission at debug level) and the ignored replays: no
      // resync (a BU of its own), no refusal.
      assert.deepEqual(
        said.filter((m) => !['message ignored', 'no BA: retransmitting the BU', 'registered'].includes(m)),
        ['BU sent'],
      );
    });

    it(`every replay is counted as ignoredReplay; the log says so at most ${IGNORED_LOGS_PER_SECOND} times a second`, async () => {
      assert.ok(run && recorded, 'precondition: the replays were sent');
      const refresh = Number(net1Log(agent, run.logFrom, 'BU sent')[0]?.['sequence']);
      const ignored = net1Log(agent, run.logFrom, 'message ignored');
      for (const l of ignored) {
        assert.equal(l['counter'], 'ignoredReplay');
        assert.equal(
          l['reason'],
          `BA ${baStatusName(BaStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW)} seq ${recorded.sequence} does not echo the timestamp of the outstanding BU (seq ${refresh})`,
        );
      }
      const budget = IGNORED_LOGS_PER_SECOND + Math.floor((run.burstMs * IGNORED_LOGS_PER_SECOND) / 1000);
      assert.ok(
        ignored.length >= 1 && ignored.length <= Math.min(budget, REPLAYS),
        `${ignored.length} lines`,
      );
      // The next ignored message's line counts those left out: one more replay, now that no BU is
      // outstanding (the log budget refills at one line per 200 ms).
      await new Promise((r) => setTimeout(r, 1000 / IGNORED_LOGS_PER_SECOND));
      const from = agent.stderr.length;
      await attacker!.raw({
        from: ADDR.cn,
        fromPort: 4191,
        to: COA,
        port: run.mrPort,
        hex: recorded.hex,
        waitMs: 0,
      });
      const [next] = await waitUntil('the next ignored message to be logged', async () => {
        const l = net1Log(agent, from, 'message ignored');
        return l.length > 0 ? l : undefined;
      });
      assert.equal(next?.['counter'], 'ignoredUnsolicited');
      assert.match(String(next?.['reason']), /no BU outstanding/);
      assert.equal(ignored.length + Number(next?.['suppressed'] ?? 0), REPLAYS, 'logged + suppressed');
    });

    it('the refresh completes once BAs pass: the same binding and CoA, the retransmission’s sequence', async () => {
      assert.ok(run, 'precondition: the replays were sent');
      assert.ok(run.answered, 'the refresh was answered within 5 s of the replays');
      // The refresh's BU was accepted (its BA held back), its retransmission answered.
      const refresh = Number(net1Log(agent, run.logFrom, 'BU sent')[0]?.['sequence']);
      for (const l of net1Log(agent, run.logFrom, 'registered'))
        assert.equal(l['sequence'], (refresh + 1) & 0xffff);
      const binding = (await haStatus(netns, lab.ns.ha)).bindings.find((b) => b.hoa === ADDR.hoa);
      assert.deepEqual(
        {
          id: binding?.id,
          coa: binding?.coa,
          sequence: binding?.sequence,
          lifetime: binding?.lifetimeSeconds,
        },
        { id: run.binding.id, coa: COA, sequence: (refresh + 1) & 0xffff, lifetime: LIFETIME_S },
      );
      const net1 = (await agentStatus(lab, 'host-a')).networks.find((n) => n.name === 'net1')!;
      assert.equal(net1.sequence, (refresh + 1) & 0xffff);
    });

    it('the routes stay on both sides: the HA tunnels net1 to host-a, host-a routes its guests', async () => {
      assert.ok(run, 'precondition: the replays were sent');
      assert.equal(await haRoutes(netns, lab.ns.ha, ADDR.mnp), run.haRoutes);
      assert.equal(await mrRoutes(netns, lab.ns['host-a']), run.mrRoutes);
    });

    it("guest-1's stream loses nothing and never leaves the tunnel", async (t) => {
      assert.ok(run && untunnelled, 'precondition: the replays were sent');
      // The pinger leaves out the last second: what was sent until the refresh was answered is in.
      await new Promise((r) => setTimeout(r, 1100));
      const stream = await report(pinger);
      const outside = await untunnelled.dropped();
      t.diagnostic(
        `guest-1 → correspondent during the replays and the refresh: ${JSON.stringify(stream)}; ${outside} packets of net1 left host-a untunnelled`,
      );
      assert.ok(stream.sent > 100, `${stream.sent} probes`);
      assert.equal(stream.lost, 0);
      assert.equal(outside, 0);
    });
  });
}
