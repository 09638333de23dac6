// Home agent under bad input (root, namespaces): refused BUs get the right status and change nothing;
// 100,000 random and mutated packets are counted and dropped while a registered binding keeps forwarding.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ADDR,
  buildTopology,
  haFiles,
  haMetric,
  haRoutes,
  haStatus,
  KEY2,
  mrTunnel,
  NsAgent,
  SPI2,
  specFor,
  startHa,
} from './helpers/homeagent-lab.ts';
import { type NetnsLab, withNetnsOn } from './helpers/netns.ts';
import { dataplaneBackends, needsRoot } from './helpers/requirements.ts';

const FUZZ_PACKETS = 100_000;

/** The binding cache without the ticking field. */
async function cache(lab: NetnsLab, ns: string): Promise<string> {
  const { bindings } = await haStatus(lab, ns);
  return JSON.stringify(bindings.map(({ remainingSeconds: _, ...b }) => b));
}

const backends = await dataplaneBackends();

for (const backend of backends) {
  test(`home agent: refused BUs change nothing; 100k bad packets are dropped while forwarding goes on [${backend}]`, {
    skip: needsRoot(),
    timeout: 120_000,
  }, async (t) => {
    const files = haFiles({ backend, refreshAdviceSeconds: 120, maxLifetimeSeconds: 600 });
    try {
      await withNetnsOn(backend, async (lab) => {
        const ns = await buildTopology(lab);
        await mrTunnel(lab, ns.mra, ADDR.coaA);
        const ha = await startHa(lab, ns.ha, files.config);
        const mr = new NsAgent(ns.mra);
        const ga = new NsAgent(ns.ga);
        const cn = new NsAgent(ns.cn);
        try {
          await ga.echo();
          const registration = specFor(ADDR.coaA, 10, { lifetime: 1000, timestampMs: Date.now() });
          const reg = await mr.bu(registration);
          assert.equal(reg.ba?.status, 0);
          assert.equal(reg.ba?.lifetime, 150, 'lifetime capped at maxLifetimeSeconds');
          assert.equal(reg.ba?.bra, 30, 'Binding Refresh Advice of 120 s');
          const before = await cache(lab, ns.ha);
          const routes = await haRoutes(lab, ns.ha, ADDR.mnp);

          const cases: [string, Parameters<NsAgent['bu']>[0], number, boolean][] = [
            ['wrong key', specFor(ADDR.coaA, 11, { signKey: 'ee'.repeat(20) }), 146, false],
            ['unknown SPI', specFor(ADDR.coaA, 11, { signKey: 'ee'.repeat(20), signSpi: 999 }), 146, false],
            ['unsigned', specFor(ADDR.coaA, 11, { signKey: null }), 146, false],
            ['replayed BU', { ...registration, sequence: 10 }, 144, true],
            ['replayed timestamp, new sequence', { ...registration, sequence: 11 }, 144, true],
            ['stale timestamp', specFor(ADDR.coaA, 11, { timestampMs: Date.now() - 60_000 }), 144, true],
            ['no replay protection', specFor(ADDR.coaA, 11, { timestampMs: null }), 145, true],
            ['old sequence', specFor(ADDR.coaA, 9), 135, true],
            ['unauthorized prefix', specFor(ADDR.coaA, 11, { prefixes: [ADDR.mnp2] }), 142, true],
            ['prefix length 0', specFor(ADDR.coaA, 11, { prefixes: ['::/0'] }), 141, true],
            ['R flag cleared on the binding', specFor(ADDR.coaA, 11, { flags: 0x8000 | 0x4000 }), 139, true],
            [
              'R flag missing (new binding)',
              specFor(ADDR.coaA, 1, {
                hoa: ADDR.hoa2,
                spi: SPI2,
                key: KEY2,
                algorithm: 'hmac-sha256',
                prefixes: [ADDR.mnp2],
                flags: 0xc000,
              }),
              140,
              true,
            ],
            ['H flag missing', specFor(ADDR.coaA, 11, { flags: 0x8000 | 0x0400 }), 131, true],
          ];
          for (const [name, spec, status, signed] of cases) {
            const { ba } = await mr.bu(spec);
            assert.equal(ba?.status, status, name);
            assert.equal(ba?.authentic, signed, `${name}: BA signed`);
            if (status === 135) assert.equal(ba?.sequence, 10, 'BA 135 carries the stored sequence');
            assert.equal(await cache(lab, ns.ha), before, `${name} changed the binding cache`);
          }
          assert.equal(await haRoutes(lab, ns.ha, ADDR.mnp), routes);
          assert.ok((await haMetric(lab, ns.ha, 'offlink_ha_auth_failures_total')) >= 3);

          // Fuzz while a correspondent pings the guest through the tunnel.
          const datagrams0 = await haMetric(lab, ns.ha, 'offlink_ha_datagrams_total');
          const malformed0 = await haMetric(lab, ns.ha, 'offlink_ha_malformed_packets_total');
          const pinger = cn.probe(ADDR.guest, { count: 300, intervalMs: 20 });
          const fuzz = await mr.fuzz({
            count: FUZZ_PACKETS,
            seed: 4191,
            base: [registration, specFor(ADDR.coaA, 9, { timestampMs: Date.now() })],
            probe: specFor(ADDR.coaA, 10),
          });
          t.diagnostic(
            `fuzz: ${fuzz.sent} packets (${fuzz.malformed} malformed) + ${fuzz.probes} probes in ${fuzz.ms} ms = ${Math.round((fuzz.sent * 1000) / fuzz.ms)} pkt/s`,
          );
          const datagrams = (await haMetric(lab, ns.ha, 'offlink_ha_datagrams_total')) - datagrams0;
          const malformed = (await haMetric(lab, ns.ha, 'offlink_ha_malformed_packets_total')) - malformed0;
          assert.equal(datagrams, fuzz.sent + fuzz.probes, 'every datagram reached the HA');
          assert.equal(malformed, fuzz.malformed, 'malformed counter matches the decoder');
          assert.ok(fuzz.malformed > FUZZ_PACKETS / 2);
          const probes = await pinger;
          const loss = (100 * (probes.sent - probes.received)) / probes.sent;
          t.diagnostic(
            `UDP probes through the tunnel during the fuzz: ${probes.received}/${probes.sent} back`,
          );
          assert.ok(loss < 5, `${loss}% lost`);
          assert.equal(await cache(lab, ns.ha), before, 'binding intact after the fuzz');
          assert.equal(await haRoutes(lab, ns.ha, ADDR.mnp), routes);
          assert.equal(ha.child.exitCode, null, 'the HA is still running');
          // And it still serves: a genuine refresh is accepted.
          assert.equal((await mr.bu(specFor(ADDR.coaA, 11))).ba?.status, 0);
        } finally {
          await Promise.all([mr, ga, cn].map((a) => a.close()));
        }
      });
    } finally {
      files.dispose();
    }
  });
}
