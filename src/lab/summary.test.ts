import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { measure, type ProbeTimes } from './measure.ts';
import { buildReport, machineInfo, type RunData } from './report.ts';
import { renderHtml } from './report-html.ts';
import { formatSummary } from './summary.ts';

const T0 = 1_700_000_000_000;

/** 1 kHz probes for 10 s, those sent in [lose[0], lose[1]) ms lost. */
function probes(name: string, family: 'ipv6' | 'ipv4', lose: [number, number]): ProbeTimes {
  const sendTimes = Array.from({ length: 10_000 }, (_, i) => T0 + i);
  const arrivals = sendTimes.map((s) => (s >= T0 + lose[0] && s < T0 + lose[1] ? Number.NaN : s + 0.2));
  return { name, family, sendTimes, arrivals };
}

function run(family: 'ipv6' | 'dual'): RunData {
  const directions = [
    probes('guest→cn', 'ipv6', [3000, 3040]),
    probes('cn→guest', 'ipv6', [3000, 3010]),
    ...(family === 'dual'
      ? [probes('guest→cn IPv4', 'ipv4', [3000, 3060]), probes('cn→guest IPv4', 'ipv4', [3000, 3020])]
      : []),
  ];
  return {
    procedure: 'make-before-break',
    topology: 'off-link',
    guest: 'netns',
    family,
    parameters: {
      migrations: 1,
      intervalS: 3,
      probeRate: 1000,
      streamKbps: 520,
      streamPayload: 1316,
      uplinkSampleMs: 100,
    },
    startedAt: T0,
    endedAt: T0 + 10_000,
    migrations: [
      {
        index: 1,
        from: 'host-a',
        to: 'host-b',
        ok: true,
        startedAt: T0 + 2990,
        endedAt: T0 + 3100,
        hypervisorMs: 20,
        handoverMs: 10,
      },
    ],
    measurement: measure(directions, [{ index: 1, start: T0 + 2990, end: T0 + 3100 }], {
      from: T0,
      to: T0 + 9999,
    }),
    stream: { sent: 490, received: 488, receivedBytes: 488 * 1316 },
    uplinks: [],
    hosts: [
      { name: 'host-a', label: 'A', careOf: '2001:db8:a::a' },
      { name: 'host-b', label: 'B', careOf: '2001:db8:b::b' },
    ],
    machine: machineInfo(new Date('2026-01-01T00:00:00Z')),
  };
}

describe('lab summary by address family', () => {
  it('dual: report.json and the printed table give each family the figures of its own probes', () => {
    const r = buildReport(run('dual'));
    assert.equal(r.family, 'dual');
    assert.deepEqual(r.summary.byFamily, {
      ipv6: { gapMs: { p50: 41, p95: 41, max: 41 }, lost: 50, sent: 20_000 },
      ipv4: { gapMs: { p50: 61, p95: 61, max: 61 }, lost: 80, sent: 20_000 },
    });
    assert.deepEqual(r.migrations[0]!.byFamily, {
      ipv6: { gapMs: 41, lost: 50, sent: 14_020 },
      ipv4: { gapMs: 61, lost: 80, sent: 14_020 },
    });
    const text = formatSummary(r);
    assert.match(text, /^ {2}IPv6: gap ms p50 41\.0, p95 41\.0, max 41\.0; 50 lost of 20000$/m);
    assert.match(text, /^ {2}IPv4: gap ms p50 61\.0, p95 61\.0, max 61\.0; 80 lost of 20000$/m);
  });

  it('ipv6: IPv6 figures only, no IPv4 line', () => {
    const r = buildReport(run('ipv6'));
    assert.deepEqual(Object.keys(r.summary.byFamily), ['ipv6']);
    assert.deepEqual(r.summary.byFamily.ipv6, { gapMs: r.summary.gapMs, lost: 50, sent: 20_000 });
    assert.doesNotMatch(formatSummary(r), /IPv4/);
  });
});

describe('lab summary and page with a home agent failover', () => {
  it('report.json carries haFailover as given; the summary prints it and the page has its table and marker', () => {
    const haFailover = {
      gapMs: 8.6,
      lost: 0,
      reRegistrations: 0,
      killed: 'ha1',
      survivor: 'ha2',
      killedAt: T0 + 5000,
      rerouteMs: 46,
      restartMs: 1588.1,
      windowMs: 2588.5,
      sent: 10_352,
      gapFrom: T0 + 6560,
      gapTo: T0 + 6568.6,
      byFamily: { ipv6: { gapMs: 8.6, lost: 0, sent: 5176 } },
      directions: [],
      busSent: 0,
      refreshesDue: 0,
      busAnswered: 0,
      routedToAfter: 'ha1',
    };
    const r = buildReport({ ...run('dual'), haFailover });
    assert.deepEqual(r.haFailover, haFailover);
    assert.equal(buildReport(run('dual')).haFailover, undefined, 'absent without --fail-ha');
    assert.match(
      formatSummary(r),
      /^home agent failover: kill -9 of ha1, rerouted to ha2 in 46\.0 ms, restarted in 1\.6 s: gap 8\.6 ms, 0 of 10352 probes lost, re-registrations 0$/m,
    );
    const html = renderHtml(r);
    assert.match(html, /<table id="ha-failover">/);
    assert.match(html, /<td class="gap">8\.6<\/td>/);
    assert.match(html, /<td class="reregistrations">0<\/td>/);
    assert.match(html, /kill -9 ha1/);
  });
});
