// The report's Fig. 6 as inline SVG: traffic on each host's uplink over time, migrations marked by
// vertical lines. Generated here (no charting library) so the page is self-contained and opens from disk.

export interface ChartSeries {
  label: string;
  color: string;
  /** Seconds since the start of the run, and kbit/s. */
  points: readonly { x: number; y: number }[];
}

export interface ChartMarker {
  x: number;
  label: string;
  /** A shaded band, e.g. the migration's longest silence, in seconds since the start. */
  band?: { from: number; to: number };
}

export interface ChartOptions {
  width?: number;
  height?: number;
  xLabel: string;
  yLabel: string;
  title: string;
}

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

/** A round step (1, 2 or 5 × 10^k) that splits `span` into about `count` intervals. */
export function niceStep(span: number, count: number): number {
  if (!(span > 0)) return 1;
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

const fmt = (v: number) => (Math.abs(v) >= 10 || v === 0 ? v.toFixed(0) : String(Number(v.toPrecision(2))));

export function lineChart(
  series: readonly ChartSeries[],
  markers: readonly ChartMarker[],
  options: ChartOptions,
) {
  const width = options.width ?? 960;
  const height = options.height ?? 380;
  const m = { top: 58, right: 20, bottom: 46, left: 64 };
  const w = width - m.left - m.right;
  const h = height - m.top - m.bottom;
  const all = series.flatMap((s) => s.points);
  const xMax = Math.max(1, ...all.map((p) => p.x), ...markers.map((k) => k.x));
  const yStep = niceStep(Math.max(1, ...all.map((p) => p.y)) * 1.1, 5);
  const yMax = Math.ceil((Math.max(1, ...all.map((p) => p.y)) * 1.1) / yStep) * yStep;
  const xStep = niceStep(xMax, 10);
  const X = (x: number) => m.left + (x / xMax) * w;
  const Y = (y: number) => m.top + h - (y / yMax) * h;
  const r = (v: number) => v.toFixed(1);

  const parts: string[] = [];
  parts.push(
    `<svg id="fig6" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeXml(options.title)}">`,
    `<rect x="${m.left}" y="${m.top}" width="${w}" height="${h}" class="plot"/>`,
  );
  for (let y = 0; y <= yMax + 1e-9; y += yStep) {
    parts.push(
      `<line class="grid" x1="${m.left}" x2="${m.left + w}" y1="${r(Y(y))}" y2="${r(Y(y))}"/>`,
      `<text class="tick" x="${m.left - 8}" y="${r(Y(y) + 4)}" text-anchor="end">${fmt(y)}</text>`,
    );
  }
  for (let x = 0; x <= xMax + 1e-9; x += xStep) {
    parts.push(
      `<line class="grid" x1="${r(X(x))}" x2="${r(X(x))}" y1="${m.top}" y2="${m.top + h}"/>`,
      `<text class="tick" x="${r(X(x))}" y="${m.top + h + 18}" text-anchor="middle">${fmt(x)}</text>`,
    );
  }
  for (const k of markers) {
    if (k.band && k.band.to > k.band.from) {
      const bx = X(k.band.from);
      const bw = Math.max(1.5, X(k.band.to) - bx);
      parts.push(`<rect class="band" x="${r(bx)}" y="${m.top}" width="${r(bw)}" height="${h}"/>`);
    }
    parts.push(
      `<line class="marker" x1="${r(X(k.x))}" x2="${r(X(k.x))}" y1="${m.top}" y2="${m.top + h}"/>`,
      `<text class="marker-label" x="${r(X(k.x))}" y="${m.top - 8}" text-anchor="middle">${escapeXml(k.label)}</text>`,
    );
  }
  for (const s of series) {
    const pts = s.points.map((p) => `${r(X(p.x))},${r(Y(p.y))}`).join(' ');
    parts.push(
      `<polyline class="series" data-label="${escapeXml(s.label)}" data-points="${s.points.length}" fill="none" stroke="${s.color}" stroke-width="1.8" stroke-linejoin="round" points="${pts}"/>`,
    );
  }
  // legend in one row above the plot, clear of the data and of the marker labels
  series.forEach((s, i) => {
    const lx = m.left + i * 170;
    const ly = 18;
    parts.push(
      `<line x1="${lx}" x2="${lx + 22}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.color}" stroke-width="3"/>`,
      `<text class="legend" x="${lx + 30}" y="${ly}">${escapeXml(s.label)}</text>`,
    );
  });
  parts.push(
    `<text class="axis" x="${m.left + w / 2}" y="${height - 8}" text-anchor="middle">${escapeXml(options.xLabel)}</text>`,
    `<text class="axis" transform="translate(16 ${m.top + h / 2}) rotate(-90)" text-anchor="middle">${escapeXml(options.yLabel)}</text>`,
    '</svg>',
  );
  return parts.join('\n');
}
