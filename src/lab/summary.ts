// The table `offlink lab run` prints at the end: one row per migration, then the summary.
import type { LabReport } from './report.ts';

const ms = (v: number | null) => (v === null ? '-' : v.toFixed(1));

export function formatSummary(r: LabReport): string {
  const label = (name: string) => r.hosts.find((h) => h.name === name)?.label ?? name;
  const header = [
    '#',
    'MOVE',
    'HYPERVISOR ms',
    'HANDOVER ms',
    'DOWNTIME ms',
    'GAP ms',
    'LOST',
    'LOST g→c/c→g',
    'STATUS',
  ];
  const rows = r.migrations.map((m) => [
    String(m.index),
    `${label(m.from)} → ${label(m.to)}`,
    ms(m.hypervisorMs),
    ms(m.handoverMs),
    ms(m.downtimeMs ?? null),
    ms(m.gapMs),
    String(m.lost),
    m.directions.map((d) => d.lost).join('/') || '-',
    m.ok ? 'ok' : `FAILED: ${m.error ?? ''}`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) =>
        i === 1 || i === cells.length - 1 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!),
      )
      .join('  ')
      .trimEnd();
  const s = r.summary;
  const pct = s.sent > 0 ? ((100 * s.lost) / s.sent).toFixed(2) : '0.00';
  return [
    '',
    `${r.topology}, ${r.topology === 'on-link' ? 'hypervisor step only' : `${r.procedure}, ${r.dataplane?.backend ?? '?'} data plane`}, ${r.guest} guest${r.parameters.overlap === false ? ' (no switchover overlap)' : ''}: ${r.migrations.length - s.failed}/${r.migrations.length} migrations succeeded`,
    line(header),
    ...rows.map(line),
    '',
    `gap ms: p50 ${ms(s.gapMs.p50)}, p95 ${ms(s.gapMs.p95)}, max ${ms(s.gapMs.max)}`,
    `probes: ${s.lost} lost of ${s.sent} sent (${pct} %); stream: ${s.stream.received} of ${s.stream.sent} packets delivered`,
    ...(r.family === 'dual'
      ? (['ipv6', 'ipv4'] as const).map((f) => {
          const b = s.byFamily?.[f];
          return b
            ? `  ${f === 'ipv6' ? 'IPv6' : 'IPv4'}: gap ms p50 ${ms(b.gapMs.p50)}, p95 ${ms(b.gapMs.p95)}, max ${ms(b.gapMs.max)}; ${b.lost} lost of ${b.sent}`
            : `  ${f}: no probes`;
        })
      : []),
    ...(r.haFailover
      ? [
          `home agent failover: kill -9 of ${r.haFailover.killed}, rerouted to ${r.haFailover.survivor} in ${ms(r.haFailover.rerouteMs)} ms, restarted in ${(r.haFailover.restartMs / 1000).toFixed(1)} s: gap ${ms(r.haFailover.gapMs)} ms, ${r.haFailover.lost} of ${r.haFailover.sent} probes lost, re-registrations ${r.haFailover.reRegistrations ?? '?'}`,
        ]
      : []),
    ...(r.familyNote ? [`note: ${r.familyNote}`] : []),
    ...(Object.values(s.receiverDrops ?? {}).some((n) => n > 0)
      ? [
          `warning: receivers dropped probes at full socket buffers (${Object.entries(s.receiverDrops)
            .map(([k, v]) => `${k} ${v}`)
            .join(', ')}): the machine is overloaded`,
        ]
      : []),
  ].join('\n');
}
