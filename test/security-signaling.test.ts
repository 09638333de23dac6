// Signaling attacks on the home agent (root, namespaces, the real daemons): the real agent on host-a is
// net1's mobile router; an attacker in the correspondent's namespace (and, spoofing the care-of address,
// in host-a's) sends Binding Updates without authentication, with a wrong key, an unknown or another MR's
// SPI, a genuine BU captured on the path and resent byte for byte, and — as a holder of net1's key, to
// reach the checks behind authentication — an old timestamp, an old sequence number, a prefix net1 may
// not claim, an MNP option with prefix length 129 (141; unsigned 146 with a wrong key), another MR's
// home address and an unknown one. Each gets the status docs/homeagent.md
// documents (or is dropped silently where it says so), the binding cache is unchanged (GET /status
// before and after), and the attempt is logged and counted. An unauthenticated flood gets at most the
// documented 50 unsigned answers a second (no reflection), and the MR and its guest notice nothing.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { test } from 'node:test';
import { encodeSignalingPacket } from '../src/protocol/packet.ts';
import { agentStatus, HOSTS, report, withAgentRig } from './helpers/agent-lab.ts';
import { captureUdp, hexAddress } from './helpers/faults.ts';
import {
  ADDR,
  ECHO_PORT,
  haMetric,
  haRoutes,
  haStatus,
  KEY,
  NsAgent,
  SPI,
  SPI2,
} from './helpers/homeagent-lab.ts';
import { type BuSpec, makeBindingUpdate } from './helpers/homeagent-mr.ts';
import type { NetnsLab } from './helpers/netns.ts';
import { dataplaneBackends, needsRoot } from './helpers/requirements.ts';

const NET1_SA = { spi: SPI, key: Buffer.from(KEY, 'hex'), algorithm: 'hmac-sha1' as const };
const COA = HOSTS['host-a'];

/** The binding cache as /status shows it, without what ticks. */
async function cache(netns: NetnsLab, ns: string): Promise<string> {
  const { bindings } = await haStatus(netns, ns);
  return JSON.stringify(bindings.map(({ remainingSeconds: _, ...b }) => b));
}

const backends = await dataplaneBackends();

for (const backend of backends) {
  test(`signaling attacks on the home agent are refused, logged and counted; nothing changes [${backend}]`, {
    skip: needsRoot(),
    timeout: 120_000,
  }, async (t) => {
    // An attacker on the path records host-a's first Binding Updates (net1 and net2).
    let recording: Awaited<ReturnType<typeof captureUdp>> | undefined;
    await withAgentRig(
      backend,
      'sec-sig',
      (netns, dir) => ({
        beforeAgents: async (ns) => {
          recording = await captureUdp(netns, ns.inet, {
            iface: 'inet-a',
            filter: 'udp dst port 4191',
            count: 2,
            file: join(dir, 'bu.pcap'),
          });
        },
      }),
      async ({ netns, procs, lab }) => {
        const captured = (await recording!.datagrams()).find(
          (d) => d.src === COA && d.payload.subarray(8, 24).equals(Buffer.from(hexAddress(ADDR.hoa), 'hex')),
        );
        assert.ok(captured, "net1's first BU was recorded on the path");

        await procs.app(lab.ns.cn, ['udp-echo', ADDR.cn, String(ECHO_PORT)]);
        const pinger = await procs.app(lab.ns.g1, ['udp-pinger', ADDR.cn, String(ECHO_PORT), '10']);
        const attacker = new NsAgent(lab.ns.cn);
        const spoofer = new NsAgent(lab.ns['host-a']);
        try {
          const stored = (await haStatus(netns, lab.ns.ha)).bindings.find((b) => b.hoa === ADDR.hoa)!;
          const before = await cache(netns, lab.ns.ha);
          const routes = await haRoutes(netns, lab.ns.ha, ADDR.mnp);
          await report(pinger);

          // Built when sent, not up front: the real agent keeps refreshing during the cases, and a BU
          // stamped seconds earlier would be refused as a replay (144) before its own fault is seen.
          const bu = (over: Partial<BuSpec>) => () =>
            makeBindingUpdate({
              hoa: ADDR.hoa,
              ha: ADDR.ha,
              coa: ADDR.cn,
              sa: NET1_SA,
              sequence: (stored.sequence + 1) & 0xffff,
              prefixes: [ADDR.mnp],
              ...over,
            });
          const wrong = { spi: SPI, key: randomBytes(20), algorithm: 'hmac-sha1' as const };
          type Case = {
            name: string;
            bytes: Uint8Array | (() => Uint8Array);
            /** The BA status, or null: dropped silently. */
            status: number | null;
            signed?: boolean;
            from?: 'attacker' | 'spoofed CoA';
            hoa?: string;
            sequence?: number;
          };
          const cases: Case[] = [
            { name: 'no authentication option', bytes: bu({ signWith: null }), status: 146, signed: false },
            { name: 'wrong key', bytes: bu({ signWith: wrong }), status: 146, signed: false },
            {
              name: 'unknown SPI',
              bytes: bu({ signWith: { ...wrong, spi: 4242 } }),
              status: 146,
              signed: false,
            },
            {
              name: "another MR's SPI",
              bytes: bu({ signWith: { spi: SPI2, key: randomBytes(32), algorithm: 'hmac-sha256' } }),
              status: 146,
              signed: false,
            },
            {
              name: 'captured BU replayed byte for byte from another address',
              bytes: captured!.payload,
              status: 146,
              signed: false,
            },
            {
              name: 'captured BU replayed byte for byte from the spoofed care-of address',
              bytes: captured!.payload,
              status: 144,
              signed: true,
              from: 'spoofed CoA',
            },
            // With net1's key (past authentication): the checks behind it.
            {
              name: 'old timestamp',
              bytes: bu({ timestampMs: Date.now() - 60_000 }),
              status: 144,
              signed: true,
            },
            {
              name: 'old sequence number',
              bytes: bu({ sequence: stored.sequence }),
              status: 135,
              signed: true,
              sequence: stored.sequence,
            },
            {
              name: 'prefix net1 may not claim',
              bytes: bu({ prefixes: [ADDR.mnp2] }),
              status: 142,
              signed: true,
            },
            // RFC 3963 §6.1.2 (issue 18): the codec cannot hold it, yet it is answered, and signed only
            // when it authenticates.
            {
              name: 'an MNP option with prefix length 129',
              bytes: bu({ prefixes: [`${ADDR.mnp.split('/')[0]}/129`] }),
              status: 141,
              signed: true,
            },
            {
              name: 'an MNP option with prefix length 129, wrong key',
              bytes: bu({ prefixes: [`${ADDR.mnp.split('/')[0]}/129`], signWith: wrong }),
              status: 146,
              signed: false,
            },
            {
              name: "another MR's home address (net2's, with net1's SA)",
              bytes: bu({ hoa: ADDR.hoa2, prefixes: [ADDR.mnp2] }),
              status: 146,
              signed: true,
              hoa: ADDR.hoa2,
            },
            {
              name: 'an unknown home address',
              bytes: bu({ hoa: '2001:db8:ffff::999', prefixes: [] }),
              status: 133,
              signed: true,
              hoa: '2001:db8:ffff::999',
            },
            {
              name: 'a Binding Acknowledgement sent to the HA',
              bytes: encodeSignalingPacket(
                {
                  src: ADDR.hoa,
                  dst: ADDR.ha,
                  message: {
                    type: 'bindingAcknowledgement',
                    status: 0,
                    flags: 0x40,
                    sequence: 1,
                    lifetime: 100,
                    options: [],
                  },
                },
                { sa: wrong, coa: ADDR.cn, hoa: ADDR.hoa },
              ),
              status: null,
            },
          ];

          const rows: string[] = [];
          for (const c of cases) {
            const from = c.from === 'spoofed CoA' ? COA : ADDR.cn;
            const hoa = c.hoa ?? ADDR.hoa;
            const statusMatch = c.status === null ? '' : `status="${c.status}"`;
            const counted0 =
              c.status === null
                ? 0
                : await haMetric(netns, lab.ns.ha, 'offlink_ha_binding_updates_total', statusMatch);
            const auth0 = await haMetric(netns, lab.ns.ha, 'offlink_ha_auth_failures_total');
            const unexpected0 = await haMetric(netns, lab.ns.ha, 'offlink_ha_unexpected_messages_total');
            const log0 = lab.ha.log.length;
            const { replies, reply } = await (c.from === 'spoofed CoA' ? spoofer : attacker).raw({
              from,
              to: ADDR.ha,
              hex: Buffer.from(typeof c.bytes === 'function' ? c.bytes() : c.bytes).toString('hex'),
              waitMs: 600,
              verify: { spi: SPI, key: KEY, coa: from, hoa },
            });
            const rejections = lab.ha.log
              .slice(log0)
              .filter((l) => l.includes('"msg":"binding update rejected"'));
            rows.push(
              `${c.name}: ${reply ? `BA ${reply.status}${reply.authentic ? ' (signed)' : ' (unsigned)'}` : 'no answer'}; logged: ${rejections.map((l) => JSON.parse(l).reason).join(', ') || '-'}`,
            );
            assert.equal(await cache(netns, lab.ns.ha), before, `${c.name}: binding cache changed`);
            if (c.status === null) {
              assert.equal(replies, 0, `${c.name}: answered`);
              assert.equal(rejections.length, 0);
              assert.equal(
                (await haMetric(netns, lab.ns.ha, 'offlink_ha_unexpected_messages_total')) - unexpected0,
                1,
                `${c.name}: counted as unexpected`,
              );
              continue;
            }
            assert.equal(replies, 1, `${c.name}: one answer`);
            assert.equal(reply?.type, 'bindingAcknowledgement', c.name);
            assert.equal(reply?.status, c.status, c.name);
            assert.equal(reply?.authentic, c.signed, `${c.name}: BA signed`);
            if (c.sequence !== undefined)
              assert.equal(reply?.sequence, c.sequence, 'BA 135 carries the stored sequence');
            assert.equal(
              (await haMetric(netns, lab.ns.ha, 'offlink_ha_binding_updates_total', statusMatch)) - counted0,
              1,
              `${c.name}: counted under status ${c.status}`,
            );
            assert.equal(
              (await haMetric(netns, lab.ns.ha, 'offlink_ha_auth_failures_total')) - auth0,
              c.status === 146 ? 1 : 0,
              `${c.name}: auth failures counter`,
            );
            assert.equal(rejections.length, 1, `${c.name}: logged once`);
            const logged = JSON.parse(rejections[0]!) as { status: number; source: string; hoa: string };
            assert.equal(logged.status, c.status);
            assert.equal(logged.source, from);
            assert.equal(logged.hoa, hoa);
          }
          for (const row of rows) t.diagnostic(row);
          assert.equal(await haRoutes(netns, lab.ns.ha, ADDR.mnp), routes);

          // A flood of unauthenticated BUs: answers and log lines are rate-limited (50/s, 20/s), never one
          // answer per packet, and each answer is no larger than the BU (no amplification).
          const flood = bu({ signWith: wrong })();
          const log0 = lab.ha.log.length;
          const t0 = Date.now();
          const r = await attacker.raw({
            from: ADDR.cn,
            to: ADDR.ha,
            hex: Buffer.from(flood).toString('hex'),
            count: 1000,
            waitMs: 500,
          });
          const seconds = (Date.now() - t0) / 1000;
          const logged = lab.ha.log
            .slice(log0)
            .filter((l) => l.includes('"msg":"binding update rejected"')).length;
          t.diagnostic(
            `flood: 1000 forged BUs in ${seconds.toFixed(2)} s → ${r.replies} unsigned answers, ${logged} log lines`,
          );
          assert.ok(r.replies >= 1 && r.replies <= 50 + 50 * seconds + 1, `${r.replies} answers`);
          assert.ok(logged <= 20 + 20 * seconds + 1, `${logged} log lines`);
          assert.equal(await cache(netns, lab.ns.ha), before);

          // The MR and its guest noticed nothing.
          const net1 = (await agentStatus(lab, 'host-a')).networks.find((n) => n.name === 'net1')!;
          assert.equal(net1.state, 'active');
          assert.equal(net1.sequence, stored.sequence);
          assert.equal(net1.lastError, undefined);
          const stream = await report(pinger);
          t.diagnostic(`stream during the attacks: ${stream.lost}/${stream.sent} lost`);
          assert.ok(stream.received > 0 && stream.trailingLost === 0, JSON.stringify(stream));
        } finally {
          await Promise.all([attacker.close(), spoofer.close()]);
        }
      },
    );
  });
}
