// DIR/index.html: one self-contained page (inline CSS and SVG, no script, nothing from the network)
// with the report's Fig. 6, the per-migration table, and the run's parameters and machine.
import { type ChartMarker, type ChartSeries, escapeXml as esc, lineChart } from './chart.ts';
import type { LabReport, ReportMigration } from './report.ts';

const COLORS = ['#2563eb', '#ea580c', '#059669', '#9333ea'];

const CSS = `
:root { color-scheme: light; --fg:#1f2937; --muted:#6b7280; --line:#e5e7eb; --bg:#f8fafc; --card:#fff; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif; }
main { max-width: 1040px; margin: 0 auto; padding: 28px 24px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 32px 0 10px; }
.sub { color: var(--muted); margin: 0 0 20px; }
.note { color: var(--muted); font-size: 13px; margin: -4px 0 10px; }
.cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 12px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 12px 16px; }
.card .k { color: var(--muted); font-size: 13px; }
.card .v { font-size: 24px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .v small { font-size: 14px; font-weight: 500; color: var(--muted); }
figure { margin: 0; background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 12px; }
figcaption { color: var(--muted); font-size: 13px; padding: 4px 8px 0; }
svg { width: 100%; height: auto; display: block; }
svg .plot { fill: #fff; }
svg .grid { stroke: #eef0f3; stroke-width: 1; }
svg .tick { fill: var(--muted); font-size: 12px; }
svg .axis { fill: var(--fg); font-size: 13px; }
svg .legend { fill: var(--fg); font-size: 13px; }
svg .marker { stroke: #6b7280; stroke-width: 1; stroke-dasharray: 4 3; }
svg .marker-label { fill: #374151; font-size: 11px; }
svg .band { fill: #dc2626; opacity: 0.18; }
table { width: 100%; border-collapse: collapse; background: var(--card); border: 1px solid var(--line);
  border-radius: 10px; overflow: hidden; font-variant-numeric: tabular-nums; }
th, td { padding: 7px 12px; text-align: right; border-bottom: 1px solid var(--line); }
th { background: #f1f5f9; font-weight: 600; font-size: 13px; color: #374151; white-space: nowrap; }
td:nth-child(2), th:nth-child(2), td:last-child, th:last-child { text-align: left; }
#migrations td, #migrations th { padding: 7px 8px; }
#migrations td:nth-child(2) { white-space: nowrap; }
#families td, #families th { text-align: right; }
#families td:first-child, #families th:first-child { text-align: left; }
tr:last-child td { border-bottom: 0; }
.ok { color: #059669; } .fail { color: #dc2626; }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
dl { margin: 0; background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 10px 16px;
  display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; font-size: 14px; }
dt { color: var(--muted); } dd { margin: 0; overflow-wrap: anywhere; }
footer { margin-top: 28px; color: var(--muted); font-size: 12px; }
`;

const ms = (v: number | null) => (v === null ? '—' : v.toFixed(1));

function hostLabel(r: LabReport, name: string): string {
  return r.hosts.find((h) => h.name === name)?.label ?? name;
}

function chart(r: LabReport): string {
  const firstSample = Math.min(...r.uplinks.map((u) => u.points[0]?.t ?? r.startedAt));
  const origin = Math.min(r.startedAt, firstSample);
  const sec = (t: number) => (t - origin) / 1000;
  const series: ChartSeries[] = r.uplinks.map((u, i) => ({
    label: `${u.label} (${u.dev})`,
    color: COLORS[i % COLORS.length]!,
    points: u.points.map((p) => ({ x: sec(p.t), y: p.rxKbps + p.txKbps })),
  }));
  const markers: ChartMarker[] = r.migrations.map((m) => {
    const worst = [...m.directions].sort((a, b) => b.gapMs - a.gapMs)[0];
    return {
      x: sec(m.startedAt),
      label: `#${m.index} ${hostLabel(r, m.from)}→${hostLabel(r, m.to)}`,
      ...(worst ? { band: { from: sec(worst.gapFrom), to: sec(worst.gapTo) } } : {}),
    };
  });
  const f = r.haFailover;
  if (f)
    markers.push({
      x: sec(f.killedAt),
      label: `kill -9 ${f.killed}`,
      band: { from: sec(f.gapFrom), to: sec(f.gapTo) },
    });
  return lineChart(series, markers, {
    title: "Traffic on each host's uplink over time",
    xLabel: 'time since start of run (s)',
    yLabel: 'uplink traffic, rx + tx (kbit/s)',
  });
}

const FAMILIES = [
  ['ipv6', 'IPv6'],
  ['ipv4', 'IPv4'],
] as const;

/** The probed families, IPv6 first. */
function families(r: LabReport): (typeof FAMILIES)[number][] {
  return FAMILIES.filter(([f]) => r.summary.byFamily?.[f] !== undefined);
}

/** One row per address family: the summary's figures over that family's probes alone. */
function familyTable(r: LabReport): string {
  const rows = families(r).map(([f, label]) => {
    const b = r.summary.byFamily[f]!;
    const pct = b.sent > 0 ? ((100 * b.lost) / b.sent).toFixed(2) : '0';
    return `<tr data-family="${f}"><td>${label}</td><td class="p50">${ms(b.gapMs.p50)}</td><td class="p95">${ms(b.gapMs.p95)}</td>
<td class="max">${ms(b.gapMs.max)}</td><td class="lost">${b.lost}</td><td class="sent">${b.sent}</td><td>${pct} %</td></tr>`;
  });
  return `<table id="families"><thead><tr><th>family</th><th>gap p50</th><th>gap p95</th><th>gap max</th>
<th>probes lost</th><th>probes sent</th><th>lost %</th></tr></thead>
<tbody>
${rows.join('\n')}
</tbody></table>`;
}

/** `--fail-ha`: what killing the home agent that carried the traffic cost. */
function failoverSection(r: LabReport): string {
  const f = r.haFailover;
  if (!f) return '';
  const pct = f.sent > 0 ? ((100 * f.lost) / f.sent).toFixed(2) : '0';
  return `<h2>Home agent failover</h2>
<p class="note">Two home agents (bindings in etcd, the HA address by BGP anycast). Between two migrations, while probes
flowed, <code>kill -9</code> of the one the router sent the traffic to; it was restarted afterwards. Window: from the kill
until the restarted HA served and the router had both routes again, plus 1 s (no migration in it). Re-registrations: BUs
the mobile router sent in the window (its sequence number's advance) beyond a refresh its schedule had due. After the
restart the router sent the traffic to ${esc(f.routedToAfter ?? '—')}.</p>
<table id="ha-failover"><thead><tr><th>killed</th><th>survivor</th><th>reroute ms</th><th>gap ms</th>
<th>lost / sent</th><th>re-registrations</th><th>BUs sent / answered</th><th>restart s</th></tr></thead>
<tbody><tr><td>${esc(f.killed)}</td><td>${esc(f.survivor)}</td><td class="reroute">${ms(f.rerouteMs)}</td>
<td class="gap">${ms(f.gapMs)}</td><td class="lost">${f.lost} / ${f.sent} (${pct} %)</td>
<td class="reregistrations">${f.reRegistrations ?? '—'}</td><td>${f.busSent ?? '—'} / ${f.busAnswered}</td>
<td>${(f.restartMs / 1000).toFixed(1)}</td></tr></tbody></table>`;
}

function row(r: LabReport, m: ReportMigration): string {
  const dirs = m.directions.map((d) => `${d.lost}`).join(' / ') || '—';
  const status = m.ok
    ? '<span class="ok">ok</span>'
    : `<span class="fail">failed: ${esc(m.error ?? '')}</span>`;
  return `<tr data-index="${m.index}">
<td>${m.index}</td><td>${esc(hostLabel(r, m.from))} → ${esc(hostLabel(r, m.to))}</td>
<td>${ms(m.hypervisorMs)}</td><td>${ms(m.handoverMs)}</td><td>${ms(m.commandMs)}</td>
<td class="gap">${ms(m.gapMs)}</td>${families(r)
    .map(([f]) => `<td class="gap-${f}">${m.byFamily?.[f] ? ms(m.byFamily[f].gapMs) : '—'}</td>`)
    .join('')}<td class="lost">${m.lost}</td><td>${dirs}</td><td>${m.sent}</td><td>${status}</td></tr>`;
}

function dl(entries: [string, string | number][]): string {
  return `<dl>${entries.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(String(v))}</dd>`).join('')}</dl>`;
}

export function renderHtml(r: LabReport): string {
  const s = r.summary;
  const pct = s.sent > 0 ? ((100 * s.lost) / s.sent).toFixed(2) : '0';
  const ok = r.migrations.length - s.failed;
  const directions = s.directions.map((d) => d.name).join(' / ');
  const p = r.parameters;
  const title =
    r.topology === 'on-link'
      ? 'offlink lab: on-link baseline (one L2 segment, hypervisor step only)'
      : `offlink lab: off-link migration, ${r.procedure}, ${r.dataplane?.backend ?? '?'} data plane`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>${CSS}</style></head>
<body><main>
<h1>${esc(title)}</h1>
<p class="sub">${r.migrations.length} migrations of a ${esc(r.guest)} guest between host A and host B, every ${p.intervalS} s,
while it streams ${p.streamKbps} kbit/s of UDP to the correspondent and probes flow at ${p.probeRate} Hz each way${r.family === 'dual' ? ' over IPv6 and over IPv4' : ''}.
${esc(r.machine.date)}</p>
<section class="cards">
<div class="card"><div class="k">gap p50 (ms)</div><div class="v" id="gap-p50">${ms(s.gapMs.p50)}</div></div>
<div class="card"><div class="k">gap p95 / max (ms)</div><div class="v" id="gap-max">${ms(s.gapMs.p95)} / ${ms(s.gapMs.max)}</div></div>
<div class="card"><div class="k">probes lost / sent</div><div class="v" id="lost">${s.lost} <small>/ ${s.sent} (${pct} %)</small></div></div>
<div class="card"><div class="k">migrations succeeded</div><div class="v" id="ok">${ok} <small>/ ${r.migrations.length}</small></div></div>
</section>
<h2>Traffic on the hosts' uplinks (the report's Fig. 6)</h2>
<figure>${chart(r)}
<figcaption>Bytes through each host's ${r.topology === 'on-link' ? 'port on the shared segment' : 'uplink'} (rx + tx),
sampled every ${p.uplinkSampleMs} ms. Dashed lines: a migration starts; red band: its longest probe silence.</figcaption>
</figure>
<h2>By address family</h2>
<p class="note">${r.family === 'dual' ? 'Dual-stack: probes over IPv6 and IPv4 at once, each family at the full rate both ways (the stream is IPv6). ' : 'IPv6 only. '}Gap and loss per family, over that family's probe directions alone.${r.familyNote ? ` ${esc(r.familyNote)}` : ''}</p>
${familyTable(r)}
${failoverSection(r)}
<h2>Migrations</h2>
<p class="note">Times in ms. Hypervisor and handover: the agent's phases; command: <code>offlink migrate</code> as the lab saw it;
lost by direction: ${esc(directions)}.</p>
<table id="migrations"><thead><tr><th>#</th><th>move</th><th>hypervisor</th><th>handover</th>
<th>command</th><th>gap</th>${families(r)
    .map(([, label]) => `<th>gap ${label}</th>`)
    .join(
      '',
    )}<th>lost</th><th title="${esc(directions)}">lost by direction</th><th>probes sent</th><th>status</th></tr></thead>
<tbody>
${r.migrations.map((m) => row(r, m)).join('\n')}
</tbody></table>
<div class="cols">
<section><h2>Parameters</h2>${dl([
    ['procedure', r.procedure],
    ['topology', r.topology],
    ['address families', r.family === 'dual' ? 'IPv6 + IPv4 (dual-stack)' : 'IPv6'],
    ['data plane', r.dataplane?.backend ?? 'none (no tunnel)'],
    ['guest', r.guest],
    ['home agents', p.homeAgents === 2 ? '2 (etcd, BGP anycast)' : '1'],
    ['migrations', p.migrations],
    ['interval', `${p.intervalS} s`],
    ['stream', `${p.streamKbps} kbit/s, ${p.streamPayload}-byte payloads`],
    ['stream delivered', `${s.stream.received} / ${s.stream.sent} packets`],
    ['probes', `${p.probeRate} Hz, both directions`],
    [
      'receiver socket drops',
      Object.entries(s.receiverDrops ?? {})
        .map(([k, v]) => `${k} ${v}`)
        .join(', ') || '—',
    ],
    ['uplink sampling', `${p.uplinkSampleMs} ms`],
    ...r.hosts.map((h): [string, string] => [`host ${h.label} care-of`, h.careOf]),
  ])}</section>
<section><h2>Machine</h2>${dl([
    ['host', r.machine.hostname],
    ['kernel', r.machine.uname],
    ['CPU', `${r.machine.cpus} × ${r.machine.cpuModel}`],
    ['memory', `${r.machine.memoryMiB} MiB`],
    ['Node.js', r.machine.node],
    ['date', r.machine.date],
  ])}</section>
</div>
<footer>Generated by <code>offlink lab run</code>. Gap: the longest silence seen by either probe direction around a migration;
lost: probes sent and never received. The same numbers are in report.json beside this page.</footer>
</main></body></html>
`;
}
