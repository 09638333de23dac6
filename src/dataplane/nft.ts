// The home agent's nftables table `ip6 offlink` (docs/dataplane.md) and the mobile router's `ip6 offlink-mr`.
//
// Per-packet cost does not depend on the number of bindings: each check is one hash lookup per distinct
// prefix length in use (usually two: the MNPs' /64 and the home addresses' /128). Interval sets
// (`flags interval`, as the first design had it) were measured unusable at scale with nft 1.0.6: every
// `nft` command then reads all elements back (~1.3 s per command at 100,000 bindings) and deleting
// elements from a concatenated interval set is quadratic (3.5 min to flush 200,000). So the MNPs live in
// hash sets, one per prefix length, looked up with the source address masked to that length.
//
// Marks: several bindings share one care-of address (a host runs one mobile router per network, all with
// the host's uplink address as CoA), so the mark names the CoA, not the binding: `coa2id` maps each
// registered CoA to a small number the data plane allocates, and `allowed_<len>` holds (MNP . that mark).
import { prefixMask } from '../protocol/address.ts';

export const HA_TABLE = 'offlink';
export const MR_TABLE = 'offlink-mr';

/** Rule comments that name the counted drop rules. */
export const COUNTER = {
  unregisteredCoa: 'unregistered-coa',
  innerSource: 'inner-source',
  reencapsulated: 'reencapsulated',
};

/** What the HA table holds: CoA → mark, and per prefix length the allowed and clamped prefixes. */
export interface HaElements {
  coa2id: Map<string, number>;
  /** length → `${address} . ${mark}` */
  allowed: Map<number, Set<string>>;
  /** length → address */
  mnp: Map<number, Set<string>>;
}

export function emptyElements(): HaElements {
  return { coa2id: new Map(), allowed: new Map(), mnp: new Map() };
}

export interface HaTableOptions {
  haAddress: string;
  mss: number;
  /** Prefix lengths that get a set pair and lookup rules. */
  lengths: readonly number[];
  /** Backend-specific prerouting rules, run first. */
  preRules?: readonly string[];
}

const T = `ip6 ${HA_TABLE}`;

/**
 * Declares the table, its sets and chains (idempotent: existing sets keep their elements) and rewrites
 * the rules. Run as one `nft -f` transaction, so packets see either the old or the new rules.
 */
export function haTableScript(o: HaTableOptions): string {
  const lengths = [...o.lengths].sort((a, b) => b - a);
  const lookup = (field: string, len: number) =>
    len === 128 ? `ip6 ${field}` : `ip6 ${field} & ${prefixMask(len)}`;
  const lines = [
    `table ${T} {`,
    '  map coa2id { type ipv6_addr : mark; }',
    ...lengths.flatMap((l) => [
      `  set allowed_${l} { type ipv6_addr . mark; }`,
      `  set mnp_${l} { type ipv6_addr; }`,
    ]),
    '  chain pre { type filter hook prerouting priority mangle; policy accept; }',
    '  chain forward_check { type filter hook forward priority filter; policy accept; }',
    '  chain clamp_out { type filter hook forward priority mangle; policy accept; }',
    '}',
    `flush chain ${T} pre`,
    `flush chain ${T} forward_check`,
    `flush chain ${T} clamp_out`,
    ...(o.preRules ?? []).map((r) => `add rule ${T} pre ${r}`),
    // RFC 3963 §6.3 / docs/dataplane.md: tunnelled packets only from registered CoAs; the mark names the CoA
    `add rule ${T} pre ip6 daddr ${o.haAddress} meta l4proto ipv6 ip6 saddr != @coa2id counter drop comment "${COUNTER.unregisteredCoa}"`,
    `add rule ${T} pre ip6 daddr ${o.haAddress} meta l4proto ipv6 meta mark set ip6 saddr map @coa2id`,
    // decapsulated packets: the inner source must be a prefix (or the HoA) of a binding with that CoA
    `add rule ${T} forward_check meta mark 0 accept`,
    // a decapsulated packet for another MNP is re-encapsulated on input and never seen here as itself
    `add rule ${T} forward_check ip6 saddr ${o.haAddress} meta l4proto ipv6 counter accept comment "${COUNTER.reencapsulated}"`,
    ...lengths.map(
      (l) => `add rule ${T} forward_check ${lookup('saddr', l)} . meta mark @allowed_${l} accept`,
    ),
    `add rule ${T} forward_check counter drop comment "${COUNTER.innerSource}"`,
  ];
  if (o.mss > 0) {
    // into the tunnel: seg6 encapsulates on input, so only prerouting sees the inner SYN
    for (const l of lengths) {
      lines.push(
        `add rule ${T} pre tcp flags syn ${lookup('daddr', l)} @mnp_${l} tcp option maxseg size set ${o.mss}`,
      );
    }
    // out of the tunnel: decapsulated packets carry a mark (and have passed forward_check or get dropped)
    lines.push(`add rule ${T} clamp_out meta mark != 0 tcp flags syn tcp option maxseg size set ${o.mss}`);
  }
  return `${lines.join('\n')}\n`;
}

/** Remove the table if it exists (add-then-delete: deleting a missing table would fail the transaction). */
export function deleteTableScript(table: string): string {
  return `table ip6 ${table}\ndelete table ip6 ${table}\n`;
}

const CHUNK = 10_000;

function elementLines(verb: 'add' | 'delete', set: string, elements: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < elements.length; i += CHUNK) {
    out.push(`${verb} element ${T} ${set} { ${elements.slice(i, i + CHUNK).join(', ')} }`);
  }
  return out;
}

/**
 * The nft statements that turn `from` into `to`. Deletes come first and use add-then-delete, so the
 * transaction does not fail on an element that is already gone.
 */
export function elementDiffScript(from: HaElements, to: HaElements): string {
  const { dels, adds } = elementDiff(from, to);
  return dels + adds;
}

/**
 * The same diff as two scripts: what must be added (no deletes) and what must go. A transaction that
 * deletes set elements waits for an RCU grace period in the kernel (~12 ms here, docs/dataplane.md), so
 * the home agent applies the adds before its BA and the deletes after.
 */
export function elementDiff(from: HaElements, to: HaElements): { adds: string; dels: string } {
  const dels: string[] = [];
  const adds: string[] = [];
  const coaGone = [...from.coa2id]
    .filter(([coa, mark]) => to.coa2id.get(coa) !== mark)
    .map(([c, m]) => `${c} : ${m}`);
  const coaNew = [...to.coa2id]
    .filter(([coa, mark]) => from.coa2id.get(coa) !== mark)
    .map(([c, m]) => `${c} : ${m}`);
  for (const kind of ['allowed', 'mnp'] as const) {
    const lengths = new Set([...from[kind].keys(), ...to[kind].keys()]);
    for (const len of [...lengths].sort((a, b) => a - b)) {
      const a = from[kind].get(len) ?? new Set<string>();
      const b = to[kind].get(len) ?? new Set<string>();
      const gone = [...a].filter((e) => !b.has(e));
      const added = [...b].filter((e) => !a.has(e));
      dels.push(
        ...elementLines('add', `${kind}_${len}`, gone),
        ...elementLines('delete', `${kind}_${len}`, gone),
      );
      adds.push(...elementLines('add', `${kind}_${len}`, added));
    }
  }
  dels.push(...elementLines('add', 'coa2id', coaGone), ...elementLines('delete', 'coa2id', coaGone));
  adds.unshift(...elementLines('add', 'coa2id', coaNew));
  const text = (lines: string[]) => lines.map((l) => `${l}\n`).join('');
  return { dels: text(dels), adds: text(adds) };
}

type Json = Record<string, unknown>;

function elementText(e: unknown): string {
  if (typeof e === 'string' || typeof e === 'number') return String(e);
  const o = e as Json;
  if (Array.isArray(o['concat'])) return (o['concat'] as unknown[]).map(elementText).join(' . ');
  if (o['elem']) return elementText((o['elem'] as Json)['val']);
  if (o['prefix']) return `${(o['prefix'] as Json)['addr']}/${(o['prefix'] as Json)['len']}`;
  return JSON.stringify(e);
}

export interface HaTableState {
  exists: boolean;
  elements: HaElements;
  /** Packets counted by the rules named in COUNTER. */
  counters: Record<string, number>;
  /** Lengths that have sets. */
  lengths: number[];
}

/** Parse `nft -j list table ip6 offlink`. */
export function parseHaTable(json: string): HaTableState {
  const state: HaTableState = { exists: false, elements: emptyElements(), counters: {}, lengths: [] };
  const items = (JSON.parse(json) as { nftables: Json[] }).nftables;
  for (const item of items) {
    if (item['table']) state.exists = true;
    const map = item['map'] as Json | undefined;
    if (map?.['name'] === 'coa2id') {
      for (const e of (map['elem'] as unknown[][] | undefined) ?? []) {
        state.elements.coa2id.set(elementText(e[0]), Number(elementText(e[1])));
      }
    }
    const set = item['set'] as Json | undefined;
    const m = typeof set?.['name'] === 'string' ? /^(allowed|mnp)_(\d+)$/.exec(set['name']) : null;
    if (set && m) {
      const len = Number(m[2]);
      const target = state.elements[m[1] as 'allowed' | 'mnp'];
      const elems = new Set(((set['elem'] as unknown[] | undefined) ?? []).map(elementText));
      target.set(len, elems);
      if (m[1] === 'allowed') state.lengths.push(len);
    }
    const rule = item['rule'] as Json | undefined;
    if (rule && typeof rule['comment'] === 'string') {
      const counter = (rule['expr'] as Json[]).find((x) => x['counter'])?.['counter'] as Json | undefined;
      if (counter) state.counters[rule['comment']] = Number(counter['packets']);
    }
  }
  return state;
}

/**
 * The mobile router's table: TCP MSS clamping for guests' connections (docs/dataplane.md MTU), and optional
 * extra prerouting rules (the ip6tnl backend's tunnel source filter). Recreated whole each time (it
 * holds no elements). Clamps SYNs that arrive from anywhere but the uplink (guests' SYNs, before they are
 * encapsulated on input) and forwarded SYNs that came in on the uplink (decapsulated, towards guests):
 * every network on the host shares the rule, so activating a network changes nothing here.
 */
export function mrTableScript(o: { uplink: string; mss: number; preRules?: readonly string[] }): string {
  const t = `ip6 ${MR_TABLE}`;
  const lines = deleteTableScript(MR_TABLE).trimEnd().split('\n');
  if (o.mss <= 0 && !o.preRules?.length) return `${lines.join('\n')}\n`;
  lines.push(
    `table ${t} {`,
    '  chain pre { type filter hook prerouting priority mangle; policy accept; }',
    '  chain clamp_out { type filter hook forward priority mangle; policy accept; }',
    '}',
  );
  for (const r of o.preRules ?? []) lines.push(`add rule ${t} pre ${r}`);
  if (o.mss > 0) {
    lines.push(
      `add rule ${t} pre iifname != "${o.uplink}" tcp flags syn tcp option maxseg size set ${o.mss}`,
    );
    lines.push(
      `add rule ${t} clamp_out iifname "${o.uplink}" tcp flags syn tcp option maxseg size set ${o.mss}`,
    );
  }
  return `${lines.join('\n')}\n`;
}
