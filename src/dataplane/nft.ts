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
import type { NftChain, NftElement, NftOp, NftRule, NftTable, NftTableState } from './kernel.ts';

export const HA_TABLE = 'offlink';
export const MR_TABLE = 'offlink-mr';

/** Rule comments that name the counted drop rules. */
export const COUNTER = {
  unregisteredCoa: 'unregistered-coa',
  innerSource: 'inner-source',
  reencapsulated: 'reencapsulated',
};

/**
 * What the HA table holds: CoA → mark, and per prefix length the allowed (prefix, mark) pairs and the
 * clamped prefixes. Elements are kept as their keys (`address` or `address . mark`) so that sets compare.
 */
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
  preRules?: readonly NftRule[];
}

const chain = (name: string, hook: NftChain['hook'], priority: NftChain['priority'], rules: NftRule[]) => ({
  name,
  hook,
  priority,
  rules,
});

/**
 * The table, its sets and chains (defining it again keeps the sets' elements) with every rule. One
 * transaction, so packets see either the old or the new rules.
 */
export function haTable(options: HaTableOptions): NftTable {
  const lengths = [...options.lengths].sort((a, b) => b - a);
  const lookup = (field: string, len: number) =>
    len === 128 ? `ip6 ${field}` : `ip6 ${field} & ${prefixMask(len)}`;
  const tunnelToHa = `ip6 daddr ${options.haAddress} meta l4proto ipv6`;
  const pre: NftRule[] = [
    ...(options.preRules ?? []),
    // RFC 3963 §6.3 / docs/dataplane.md: tunnelled packets only from registered CoAs; the mark names the CoA.
    // A source missing from the map leaves the mark 0 (marks start at 1) and the next rule drops it. (Not
    // `ip6 saddr != @coa2id`: Linux 6.1 refuses a map looked up as a set, "Invalid argument".)
    { statement: `${tunnelToHa} meta mark set ip6 saddr map @coa2id` },
    { statement: `${tunnelToHa} meta mark 0`, verdict: 'drop', counter: COUNTER.unregisteredCoa },
  ];
  const check: NftRule[] = [
    // decapsulated packets: the inner source must be a prefix (or the HoA) of a binding with that CoA
    { statement: 'meta mark 0', verdict: 'accept' },
    // a decapsulated packet for another MNP is re-encapsulated on input and never seen here as itself
    {
      statement: `ip6 saddr ${options.haAddress} meta l4proto ipv6`,
      verdict: 'accept',
      counter: COUNTER.reencapsulated,
    },
    ...lengths.map((l) => ({
      statement: `${lookup('saddr', l)} . meta mark @allowed_${l}`,
      verdict: 'accept' as const,
    })),
    { statement: '', verdict: 'drop', counter: COUNTER.innerSource },
  ];
  const clamp: NftRule[] = [];
  if (options.mss > 0) {
    // into the tunnel: seg6 encapsulates on input, so only prerouting sees the inner SYN
    for (const l of lengths)
      pre.push({
        statement: `tcp flags syn ${lookup('daddr', l)} @mnp_${l} tcp option maxseg size set ${options.mss}`,
      });
    // out of the tunnel: decapsulated packets carry a mark (and have passed forward_check or get dropped)
    clamp.push({ statement: `meta mark != 0 tcp flags syn tcp option maxseg size set ${options.mss}` });
  }
  return {
    name: HA_TABLE,
    sets: [
      { name: 'coa2id', kind: 'map', type: 'address : mark' },
      ...lengths.flatMap((l) => [
        { name: `allowed_${l}`, kind: 'set' as const, type: 'address . mark' as const },
        { name: `mnp_${l}`, kind: 'set' as const, type: 'address' as const },
      ]),
    ],
    chains: [
      chain('pre', 'prerouting', 'mangle', pre),
      chain('forward_check', 'forward', 'filter', check),
      chain('clamp_out', 'forward', 'mangle', clamp),
    ],
  };
}

const keyOf = (e: NftElement) => (e.mark === undefined ? e.address : `${e.address} . ${e.mark}`);
function elementOf(key: string): NftElement {
  const [address, mark] = key.split(' . ') as [string, string | undefined];
  return mark === undefined ? { address } : { address, mark: Number(mark) };
}

function elementOps(
  verb: 'add-elements' | 'delete-elements',
  set: string,
  kind: 'set' | 'map',
  elements: readonly NftElement[],
): NftOp[] {
  return elements.length === 0 ? [] : [{ op: verb, table: HA_TABLE, set, kind, elements }];
}

/**
 * The changes that turn `from` into `to`, as two lists: what must be added (no deletes) and what must
 * go. A transaction that deletes set elements waits for an RCU grace period in the kernel (~12 ms here,
 * docs/dataplane.md), so the home agent applies the adds before its BA and the deletes after.
 */
export function elementDiff(from: HaElements, to: HaElements): { adds: NftOp[]; dels: NftOp[] } {
  const dels: NftOp[] = [];
  const adds: NftOp[] = [];
  const pairs = (m: ReadonlyMap<string, number>, other: ReadonlyMap<string, number>) =>
    [...m].filter(([coa, mark]) => other.get(coa) !== mark).map(([address, mark]) => ({ address, mark }));
  for (const kind of ['allowed', 'mnp'] as const) {
    const lengths = new Set([...from[kind].keys(), ...to[kind].keys()]);
    for (const len of [...lengths].sort((a, b) => a - b)) {
      const a = from[kind].get(len) ?? new Set<string>();
      const b = to[kind].get(len) ?? new Set<string>();
      const set = `${kind}_${len}`;
      dels.push(...elementOps('delete-elements', set, 'set', [...a].filter((e) => !b.has(e)).map(elementOf)));
      adds.push(...elementOps('add-elements', set, 'set', [...b].filter((e) => !a.has(e)).map(elementOf)));
    }
  }
  dels.push(...elementOps('delete-elements', 'coa2id', 'map', pairs(from.coa2id, to.coa2id)));
  adds.unshift(...elementOps('add-elements', 'coa2id', 'map', pairs(to.coa2id, from.coa2id)));
  return { dels, adds };
}

export interface HaTableState {
  exists: boolean;
  elements: HaElements;
  /** Packets counted by the rules named in COUNTER. */
  counters: Record<string, number>;
  /** Lengths that have sets. */
  lengths: number[];
}

/** The HA table's elements by prefix length, from what the kernel holds. */
export function haTableState(state: NftTableState | undefined): HaTableState {
  const out: HaTableState = {
    exists: state !== undefined,
    elements: emptyElements(),
    counters: {},
    lengths: [],
  };
  if (!state) return out;
  out.counters = { ...state.counters };
  for (const [name, elements] of state.sets) {
    if (name === 'coa2id') {
      for (const e of elements) out.elements.coa2id.set(e.address, e.mark ?? 0);
      continue;
    }
    const m = /^(allowed|mnp)_(\d+)$/.exec(name);
    if (!m) continue;
    const len = Number(m[2]);
    out.elements[m[1] as 'allowed' | 'mnp'].set(len, new Set(elements.map(keyOf)));
    if (m[1] === 'allowed') out.lengths.push(len);
  }
  return out;
}

/**
 * The mobile router's table: TCP MSS clamping for guests' connections (docs/dataplane.md MTU). Recreated
 * whole each time (it holds no elements). Clamps SYNs that arrive from anywhere but the uplink (guests'
 * SYNs, before they are encapsulated on input) and forwarded SYNs that came in on the uplink
 * (decapsulated, towards guests): every network on the host shares the rule, so activating a network
 * changes nothing here.
 */
export function mrTable(options: { uplink: string; mss: number }): NftOp[] {
  const ops: NftOp[] = [{ op: 'delete-table', name: MR_TABLE }];
  if (options.mss <= 0) return ops;
  const set = `tcp flags syn tcp option maxseg size set ${options.mss}`;
  ops.push({
    op: 'define-table',
    table: {
      name: MR_TABLE,
      sets: [],
      chains: [
        chain('pre', 'prerouting', 'mangle', [{ statement: `iifname != "${options.uplink}" ${set}` }]),
        chain('clamp_out', 'forward', 'mangle', [{ statement: `iifname "${options.uplink}" ${set}` }]),
      ],
    },
  });
  return ops;
}
