// The home agent fuzzed under load (root, namespaces, the real daemons): a separate sender process
// (test/fixtures/ha-fuzzer.ts, in the correspondent's namespace) sends ≥ 1,000,000 random, truncated and
// mutated packets made with the codec at the HA's UDP port over about a minute, while the real agent on
// host-a, the mobile router of net1, refreshes its binding every ~10 s (12 s lifetime) and guest-1 streams
// UDP probes to the correspondent through the tunnel at 100 Hz. Asserted: the HA process is the same and
// alive; the binding is intact (same CoA, id, prefixes; sequence = the agent's own); the HA's counters
// match exactly what was sent (malformed, unexpected message types, Binding Updates, datagrams), with
// nothing lost in the socket buffer (Udp6RcvbufErrors / InErrors of the HA's namespace unchanged); no
// fuzz packet was accepted; and the stream lost no more than a stated bound over a baseline measured in
// the same run without fuzzing.
//
// OFFLINK_SOAK=1: 10,000,000 packets at the same rate (about ten minutes) — see docs/security.md.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { agentStatus, ROOT, report, withAgentRig } from './helpers/agent-lab.ts';
import { udp6Counters } from './helpers/faults.ts';
import { ADDR, ECHO_PORT, haMetric, haRoutes, haStatus, KEY, SPI } from './helpers/homeagent-lab.ts';
import { dataplaneBackends, needsRoot } from './helpers/requirements.ts';

const SOAK = process.env['OFFLINK_SOAK'] === '1';
const PACKETS = SOAK ? 10_000_000 : 1_000_000;
/** Packets a second: a million in about a minute. */
const RATE = 17_500;
const BASELINE_MS = 10_000;
/**
 * The bound: the stream may lose at most this many percentage points more probes during the fuzz than
 * in the baseline. The HA's user-space work competes for the 2 CPUs with the forwarding and with the
 * probes' own processes; the kernel forwards the stream, so the fuzz should cost it nearly nothing.
 */
const LOSS_BOUND_PP = 1;

const FUZZER = join(ROOT, 'test/fixtures/ha-fuzzer.ts');
const CANARY = { hoa: '2001:db8:ffff::1ff', spi: 1099, key: 'c0'.repeat(20), prefix: '2001:db8:f00::/64' };

const backends = await dataplaneBackends();

for (const backend of backends) {
  test(`home agent fuzzed with a million packets while an MR refreshes and its guest streams [${backend}]`, {
    skip: needsRoot(),
    timeout: SOAK ? 1_800_000 : 240_000,
  }, async (t) => {
    await withAgentRig(
      backend,
      'fuzz-it',
      {
        net1: 'lifetimeSeconds: 12',
        // Refreshes are logged at debug (an info line per BU would flood a busy HA's journal); this test
        // checks each accepted BU's line.
        haEnv: { OFFLINK_LOG_LEVEL: 'debug' },
        mobileRouters: `  - { name: canary, homeAddress: "${CANARY.hoa}", prefixes: ["${CANARY.prefix}"], spi: ${CANARY.spi}, key: ${CANARY.key} }`,
      },
      async ({ netns, procs, lab }) => {
        await procs.app(lab.ns.cn, ['udp-echo', ADDR.cn, String(ECHO_PORT)]);
        const pinger = await procs.app(lab.ns.g1, ['udp-pinger', ADDR.cn, String(ECHO_PORT), '10']);
        await new Promise((r) => setTimeout(r, 1500));
        await report(pinger);

        // Baseline: the same stream, the same refreshes, no fuzz.
        await new Promise((r) => setTimeout(r, BASELINE_MS));
        const base = await report(pinger);
        assert.ok(base.received > 0, `the stream flows before the fuzz: ${JSON.stringify(base)}`);

        const binding = (await haStatus(netns, lab.ns.ha)).bindings.find((b) => b.hoa === ADDR.hoa)!;
        const routes = await haRoutes(netns, lab.ns.ha, ADDR.mnp);
        const metric = (name: string, match = '') => haMetric(netns, lab.ns.ha, name, match);
        const before = {
          datagrams: await metric('offlink_ha_datagrams_total'),
          malformed: await metric('offlink_ha_malformed_packets_total'),
          unexpected: await metric('offlink_ha_unexpected_messages_total'),
          bus: await metric('offlink_ha_binding_updates_total'),
          accepted: await metric('offlink_ha_binding_updates_total', 'status="0"'),
          udp: await udp6Counters(netns, lab.ns.ha),
          log: lab.ha.log.length,
        };
        const pid = lab.ha.child.pid;

        const fuzzer = procs.start(lab.ns.cn, [
          process.execPath,
          '--import',
          'tsx',
          FUZZER,
          JSON.stringify({
            ha: ADDR.ha,
            source: ADDR.cn,
            count: PACKETS,
            seed: 4191,
            rate: RATE,
            victim: { hoa: ADDR.hoa, spi: SPI, key: KEY, prefixes: [ADDR.mnp] },
            otherHoa: ADDR.hoa2,
            canary: CANARY,
          }),
        ]);
        const line = await fuzzer.waitFor((l) => l.startsWith('{'), SOAK ? 1_500_000 : 200_000);
        const fuzz = JSON.parse(line) as {
          sent: number;
          malformed: number;
          bindingUpdates: number;
          otherMessages: number;
          authentic: number;
          probes: number;
          probeRetries: number;
          ms: number;
          rate: number;
        };
        const during = await report(pinger);

        const after = {
          datagrams: await metric('offlink_ha_datagrams_total'),
          malformed: await metric('offlink_ha_malformed_packets_total'),
          unexpected: await metric('offlink_ha_unexpected_messages_total'),
          bus: await metric('offlink_ha_binding_updates_total'),
          accepted: await metric('offlink_ha_binding_updates_total', 'status="0"'),
          udp: await udp6Counters(netns, lab.ns.ha),
        };
        const d = (k: 'datagrams' | 'malformed' | 'unexpected' | 'bus' | 'accepted') => after[k] - before[k];
        const udpErr = (k: string) => (after.udp[k] ?? 0) - (before.udp[k] ?? 0);
        // Every accepted BU during the fuzz is one of the MR's refreshes, from its care-of address.
        const accepts = lab.ha.log
          .slice(before.log)
          .filter((l) => /"msg":"binding (refresh|register|move|update|deregister)"/.test(l));
        const loss = (r: { sent: number; lost: number }) => (100 * r.lost) / Math.max(1, r.sent);

        t.diagnostic(
          `fuzz: ${fuzz.sent} packets (${fuzz.malformed} malformed, ${fuzz.bindingUpdates} valid-looking BUs of which ${fuzz.authentic} genuinely signed but stale, ${fuzz.otherMessages} BA/BE/BRR) + ${fuzz.probes} flow-control probes (${fuzz.probeRetries} resent) in ${fuzz.ms} ms = ${fuzz.rate} packets/s`,
        );
        t.diagnostic(
          `HA: +${d('datagrams')} datagrams, +${d('malformed')} malformed, +${d('unexpected')} unexpected, +${d('bus')} BUs processed (${d('accepted')} accepted: the MR's refreshes); Udp6 RcvbufErrors +${udpErr('RcvbufErrors')}, InErrors +${udpErr('InErrors')}`,
        );
        t.diagnostic(
          `stream (UDP probes guest-1 ↔ correspondent, 100 Hz): baseline ${base.lost}/${base.sent} lost (${loss(base).toFixed(2)}%, max gap ${base.maxGapMs} ms); during the fuzz ${during.lost}/${during.sent} lost (${loss(during).toFixed(2)}%, max gap ${during.maxGapMs} ms); bound: baseline + ${LOSS_BOUND_PP} percentage point`,
        );

        // Zero crashes: the same process, still running.
        assert.equal(lab.ha.child.exitCode, null, 'the HA is still running');
        assert.equal(lab.ha.child.pid, pid);
        assert.ok(!lab.ha.log.some((l) => /"level":(50|60)/.test(l)), 'no error logged by the HA');

        // Exactly what was sent was received and counted.
        assert.equal(udpErr('RcvbufErrors'), 0, 'nothing dropped by the HA socket buffer');
        assert.equal(udpErr('InErrors'), 0, 'no UDP input errors in the HA namespace');
        assert.ok(fuzz.sent >= PACKETS);
        assert.equal(
          d('datagrams'),
          fuzz.sent + fuzz.probes + d('accepted'),
          'datagrams = fuzz + probes + refreshes',
        );
        assert.equal(d('malformed'), fuzz.malformed, 'malformed counter = malformed packets sent');
        assert.equal(d('unexpected'), fuzz.otherMessages, 'unexpected-message counter = BA/BE/BRR sent');
        assert.equal(d('bus'), fuzz.bindingUpdates + fuzz.probes + d('accepted'), 'every BU was processed');
        assert.equal(accepts.length, d('accepted'));
        for (const l of accepts) {
          assert.match(l, /"msg":"binding refresh"/, l);
          assert.match(l, new RegExp(`"coa":"${binding.coa}"`), l);
        }
        assert.ok(d('accepted') >= 3, `the MR refreshed during the fuzz (${d('accepted')} times)`);

        // The binding is intact and the MR's own: same CoA, id and prefixes; the sequence is the agent's.
        const now = (await haStatus(netns, lab.ns.ha)).bindings.find((b) => b.hoa === ADDR.hoa)!;
        const { remainingSeconds: _a, sequence: _s, ...keep } = binding;
        const { remainingSeconds: _b, sequence, ...kept } = now;
        assert.deepEqual(
          { ...kept, updatedAt: 0, expiresAt: 0 },
          { ...keep, updatedAt: 0, expiresAt: 0 },
          'binding intact',
        );
        const net1 = (await agentStatus(lab, 'host-a')).networks.find((n) => n.name === 'net1')!;
        assert.equal(net1.state, 'active');
        assert.equal(sequence, net1.sequence, "the binding's sequence is the MR's own");
        assert.equal(await haRoutes(netns, lab.ns.ha, ADDR.mnp), routes);

        // The stream: no worse than the baseline beyond the bound.
        assert.ok(during.received > 0 && during.trailingLost === 0, JSON.stringify(during));
        assert.ok(
          loss(during) <= loss(base) + LOSS_BOUND_PP,
          `loss during the fuzz ${loss(during).toFixed(2)}% > baseline ${loss(base).toFixed(2)}% + ${LOSS_BOUND_PP}`,
        );
      },
    );
  });
}
