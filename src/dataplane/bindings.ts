// The home agent data plane's view of bindings, shared by every backend: each binding routes its MNPs and
// its home address into the tunnel to its CoA, and no destination may belong to two bindings.
import { OfflinkError } from '../errors.ts';
import { canonicalIPv6 } from '../protocol/address.ts';
import { mnpText } from './family.ts';
import type { BindingChange, TunnelBinding } from './types.ts';

/** Two bindings claim one destination (MNP or HoA). Nothing was changed. */
export class BindingConflictError extends OfflinkError {
  constructor(message: string) {
    super('ERR_DATAPLANE_CONFLICT', message);
  }
}

export interface Entry {
  hoa: string;
  coa: string;
  id: number;
  /**
   * The MNPs (IPv6, and IPv4 for a dual-stack network: RFC 5555) and the HoA/128, canonical `address/length` text: every destination routed into the tunnel.
   * Text only (an array of exactly this length), not `Prefix` objects: the mirror holds one entry per
   * binding, 100k at scale (bench/profiles/ha-memory.md).
   */
  dsts: readonly string[];
}

export function entryOf(b: TunnelBinding): Entry {
  const hoa = canonicalIPv6(b.hoa);
  const own = `${hoa}/128`;
  const mnps = b.prefixes.map(mnpText);
  const dsts = mnps.includes(own) ? mnps : mnps.concat(own);
  return { hoa, coa: canonicalIPv6(b.coa), id: b.id, dsts };
}

/** The entries for exactly `bindings` (a full reconcile), checked as applyChanges checks them. */
export function entriesOf(bindings: readonly TunnelBinding[]): Map<string, Entry> {
  return applyChanges(
    new Map(),
    bindings.map((binding) => ({ op: 'set', binding })),
  );
}

/** Apply `changes` to `base` (a private copy) and check that no destination has two owners. */
export function applyChanges(
  base: Map<string, Entry>,
  changes: readonly BindingChange[],
): Map<string, Entry> {
  for (const change of changes) {
    const e = entryOf(change.binding);
    if (change.op === 'delete') base.delete(e.hoa);
    else base.set(e.hoa, e);
  }
  const owner = new Map<string, string>();
  for (const e of base.values()) {
    for (const d of e.dsts) {
      const other = owner.get(d);
      if (other !== undefined && other !== e.hoa)
        throw new BindingConflictError(`${d} claimed by ${other} and ${e.hoa}`);
      owner.set(d, e.hoa);
    }
  }
  return base;
}

/** The installed and the wanted version of each binding a batch touches (undefined: absent). */
export type Touched = Map<string, { old: Entry | undefined; neu: Entry | undefined }>;

/**
 * The bindings `changes` touch (the last change per HoA wins), checked against `owners` (destination →
 * HoA of what is installed): throws BindingConflictError if a destination would have two owners.
 */
export function touchedBy(
  changes: readonly BindingChange[],
  entries: ReadonlyMap<string, Entry>,
  owners: ReadonlyMap<string, string>,
): Touched {
  const touched: Touched = new Map();
  for (const change of changes) {
    const e = entryOf(change.binding);
    touched.set(e.hoa, { old: entries.get(e.hoa), neu: change.op === 'set' ? e : undefined });
  }
  const claim = new Map<string, string | null>();
  for (const { old } of touched.values()) for (const d of old?.dsts ?? []) claim.set(d, null);
  for (const [hoa, { neu }] of touched) {
    for (const d of neu?.dsts ?? []) {
      const other = claim.has(d) ? claim.get(d) : owners.get(d);
      if (other && other !== hoa) throw new BindingConflictError(`${d} claimed by ${other} and ${hoa}`);
      claim.set(d, hoa);
    }
  }
  return touched;
}
