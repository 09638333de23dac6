// The lab's report page, from synthetic run data, rendered by Debian's chromium through playwright-core
// (never a downloaded browser): the Fig. 6 chart and the migration table must show the run's numbers,
// and the page must load nothing from the network. Keeps test-artifacts/lab-report.png.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { type BrowserContext, chromium } from 'playwright-core';
import { measure, type ProbeTimes } from '../src/lab/measure.ts';
import { buildReport, type LabReport, machineInfo, type RunData, writeReport } from '../src/lab/report.ts';
import type { UplinkSeries } from '../src/lab/uplink.ts';
import { skipUnless } from './helpers/requirements.ts';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = new URL('../test-artifacts/', import.meta.url);

/** A 40 s run: 6 migrations every 6 s, A → B → A …, each with an outage on the wire. */
function syntheticRun(): RunData {
  const t0 = 1_760_000_000_000;
  const migrations: RunData['migrations'] = [];
  const outages: [number, number][] = [];
  for (let i = 1; i <= 6; i++) {
    const start = t0 + 4000 + (i - 1) * 6000;
    const hypervisorMs = 20 + i * 3;
    const handoverMs = 8 + (i % 3);
    outages.push([start + hypervisorMs - 5, start + hypervisorMs + handoverMs + 15 + 10 * (i % 2)]);
    migrations.push({
      index: i,
      from: i % 2 ? 'host-a' : 'host-b',
      to: i % 2 ? 'host-b' : 'host-a',
      ok: true,
      startedAt: start,
      endedAt: start + hypervisorMs + handoverMs + 12,
      hypervisorMs,
      handoverMs,
    });
  }
  const probes = (name: string, lossFactor: number, family: 'ipv6' | 'ipv4' = 'ipv6'): ProbeTimes => {
    const sendTimes: number[] = [];
    const arrivals: number[] = [];
    for (let k = 0; k < 40_000; k++) {
      const s = t0 + k + 0.3;
      const down = outages.some(([f, t]) => s >= f && s < f + (t - f) * lossFactor);
      sendTimes.push(s);
      arrivals.push(down ? Number.NaN : s + 0.15);
    }
    return { name, family, sendTimes, arrivals };
  };
  const windows = migrations.map((m) => ({ index: m.index, start: m.startedAt, end: m.endedAt }));
  // dual-stack: IPv4 probes beside the IPv6 ones, with outages of their own length
  const measurement = measure(
    [
      probes('guest→cn', 1),
      probes('cn→guest', 0.7),
      probes('guest→cn IPv4', 1.3, 'ipv4'),
      probes('cn→guest IPv4', 0.5, 'ipv4'),
    ],
    windows,
    {
      from: t0,
      to: t0 + 40_000,
    },
  );
  const activeAt = (t: number) => {
    let host = 'A';
    for (const m of migrations) if (t >= m.startedAt + 30) host = m.to === 'host-a' ? 'A' : 'B';
    return host;
  };
  const uplink = (label: 'A' | 'B'): UplinkSeries => ({
    label: `host ${label}`,
    ns: `ofl-host-${label.toLowerCase()}`,
    dev: 'up0',
    intervalMs: 100,
    points: Array.from({ length: 400 }, (_, k) => {
      const t = t0 + (k + 1) * 100;
      const on = activeAt(t) === label && !outages.some(([f, e]) => t > f && t - 100 < e);
      const jitter = Math.sin(k * 1.7) * 18;
      return { t, rxKbps: on ? 930 + jitter : 1.2, txKbps: on ? 1450 - jitter : 0.6 };
    }),
  });
  return {
    procedure: 'make-before-break',
    topology: 'off-link',
    guest: 'netns',
    family: 'dual',
    parameters: {
      migrations: 6,
      intervalS: 6,
      probeRate: 1000,
      streamKbps: 520,
      streamPayload: 1316,
      uplinkSampleMs: 100,
    },
    startedAt: t0,
    endedAt: t0 + 40_000,
    migrations,
    measurement,
    stream: { sent: 1976, received: 1975, receivedBytes: 1975 * 1316 },
    uplinks: [uplink('A'), uplink('B')],
    hosts: [
      { name: 'host-a', label: 'A', careOf: '2001:db8:a:0:f:ff:fe00:a' },
      { name: 'host-b', label: 'B', careOf: '2001:db8:b:0:f:ff:fe00:b' },
    ],
    machine: machineInfo(new Date('2026-01-01T12:00:00Z')),
  };
}

describe('lab report page', {
  skip: skipUnless(existsSync(CHROMIUM), `${CHROMIUM} (scripts/bootstrap)`),
}, () => {
  let dir: string;
  let profile: string;
  let context: BrowserContext;
  let report: LabReport;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ofl-report-'));
    profile = mkdtempSync(join(tmpdir(), 'ofl-chromium-'));
    report = buildReport(syntheticRun());
    writeReport(dir, report);
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      viewport: { width: 1100, height: 900 },
      deviceScaleFactor: 1,
      offline: true,
    });
  });

  after(async () => {
    await context?.close();
    rmSync(profile, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  });

  it('report.json has exactly the keys of docs/architecture.md (and more)', () => {
    const json = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as Record<string, unknown>;
    for (const k of ['procedure', 'topology', 'guest', 'migrations', 'summary']) assert.ok(k in json, k);
    const m = (json['migrations'] as Record<string, unknown>[])[0]!;
    for (const k of ['index', 'from', 'to', 'hypervisorMs', 'handoverMs', 'gapMs', 'lost'])
      assert.ok(k in m, k);
    const s = json['summary'] as { gapMs: Record<string, number>; lost: number; sent: number };
    assert.deepEqual(Object.keys(s.gapMs), ['p50', 'p95', 'max']);
    assert.equal(s.sent, 160_000);
    assert.ok(s.lost > 0);
    assert.equal(json['family'], 'dual');
  });

  it('report.json gives each family its own figures, computed from that family’s probes', () => {
    const { byFamily } = report.summary;
    assert.deepEqual(Object.keys(byFamily), ['ipv6', 'ipv4']);
    for (const f of ['ipv6', 'ipv4'] as const) {
      assert.deepEqual(Object.keys(byFamily[f]!.gapMs), ['p50', 'p95', 'max']);
      assert.equal(byFamily[f]!.sent, 80_000);
    }
    // the synthetic IPv4 outages are 1.3× the IPv6 ones: more lost, longer gaps
    assert.ok(byFamily.ipv4!.lost > byFamily.ipv6!.lost, JSON.stringify(byFamily));
    assert.ok(byFamily.ipv4!.gapMs.max > byFamily.ipv6!.gapMs.max, JSON.stringify(byFamily));
    for (const m of report.migrations) {
      assert.equal(m.gapMs, Math.max(m.byFamily.ipv6!.gapMs, m.byFamily.ipv4!.gapMs));
      assert.equal(m.lost, m.byFamily.ipv6!.lost + m.byFamily.ipv4!.lost);
    }
  });

  it('renders the chart and the table with the run data, from disk alone', async () => {
    const page = await context.newPage();
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    await page.goto(pathToFileURL(join(dir, 'index.html')).href);

    assert.deepEqual(
      requests.filter((u) => !u.startsWith('file:') && !u.startsWith('data:')),
      [],
      'the page loads nothing from the network',
    );
    const svg = page.locator('svg#fig6');
    const box = await svg.boundingBox();
    assert.ok(box && box.width > 600 && box.height > 200, `chart is laid out: ${JSON.stringify(box)}`);
    const series = await svg.locator('polyline.series').evaluateAll((els) =>
      els.map((e) => ({
        label: e.getAttribute('data-label'),
        points: (e.getAttribute('points') ?? '').trim().split(/\s+/).length,
        length: (e as unknown as { getTotalLength(): number }).getTotalLength(),
      })),
    );
    assert.deepEqual(
      series.map((s) => [s.label, s.points]),
      [
        ['host A (up0)', 400],
        ['host B (up0)', 400],
      ],
    );
    for (const s of series) assert.ok(s.length > 100, `${s.label} is drawn`);
    assert.equal(await svg.locator('line.marker').count(), 6);
    assert.equal(await svg.locator('rect.band').count(), 6);

    const rows = page.locator('#migrations tbody tr');
    assert.equal(await rows.count(), report.migrations.length);
    for (const m of report.migrations) {
      const row = page.locator(`#migrations tbody tr[data-index="${m.index}"]`);
      assert.equal((await row.locator('td.gap').textContent())?.trim(), m.gapMs.toFixed(1));
      assert.equal((await row.locator('td.lost').textContent())?.trim(), String(m.lost));
      const text = await row.textContent();
      assert.match(text ?? '', m.from === 'host-a' ? /A → B/ : /B → A/);
      assert.match(text ?? '', new RegExp(m.hypervisorMs!.toFixed(1)));
    }
    assert.match(
      (await page.locator('#gap-p50').textContent()) ?? '',
      new RegExp(report.summary.gapMs.p50.toFixed(1)),
    );
    assert.match((await page.locator('#lost').textContent()) ?? '', new RegExp(`${report.summary.lost}`));
    assert.match((await page.locator('body').textContent()) ?? '', /2026-01-01T12:00:00/);

    // both families: a row each in the family table, a gap column each in the migration table
    const families = page.locator('#families tbody tr');
    assert.equal(await families.count(), 2);
    for (const [f, label] of [
      ['ipv6', 'IPv6'],
      ['ipv4', 'IPv4'],
    ] as const) {
      const b = report.summary.byFamily[f]!;
      const fr = page.locator(`#families tbody tr[data-family="${f}"]`);
      assert.equal((await fr.locator('td').first().textContent())?.trim(), label);
      assert.equal((await fr.locator('td.p50').textContent())?.trim(), b.gapMs.p50.toFixed(1));
      assert.equal((await fr.locator('td.p95').textContent())?.trim(), b.gapMs.p95.toFixed(1));
      assert.equal((await fr.locator('td.max').textContent())?.trim(), b.gapMs.max.toFixed(1));
      assert.equal((await fr.locator('td.lost').textContent())?.trim(), String(b.lost));
      assert.equal((await fr.locator('td.sent').textContent())?.trim(), String(b.sent));
      assert.ok(await fr.isVisible(), `${label} row is shown`);
      for (const m of report.migrations)
        assert.equal(
          (
            await page.locator(`#migrations tbody tr[data-index="${m.index}"] td.gap-${f}`).textContent()
          )?.trim(),
          m.byFamily[f]!.gapMs.toFixed(1),
        );
    }

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: new URL('lab-report.png', ARTIFACTS).pathname, fullPage: true });
    await page.close();
  });
});
