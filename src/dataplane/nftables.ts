// NftOp values as an `nft -f` script, and `nft -j list table` output as an NftTableState: the nftables
// half of Iproute2Kernel (written for nft 1.0.6; tested against the real nft in test/kernel.test.ts).
import { OfflinkError } from '../errors.ts';
import { canonicalIPv6 } from '../protocol/address.ts';
import type { NftElement, NftOp, NftRule, NftSet, NftTable, NftTableState } from './kernel.ts';

/** Elements per `add element` statement (nft parses huge statements slowly). */
const CHUNK = 10_000;

const TYPES: Record<NftSet['type'], string> = {
  address: 'ipv6_addr',
  'address . mark': 'ipv6_addr . mark',
  'address : mark': 'ipv6_addr : mark',
};

function name(n: string): string {
  if (!/^[A-Za-z][A-Za-z0-9_-]*$/.test(n))
    throw new OfflinkError('ERR_CONFIG', `bad nftables name ${JSON.stringify(n)}`);
  return n;
}

/** A rule's text: the statement, `counter` if counted, the verdict, and the counter's name as its comment. */
export function ruleText(r: NftRule): string {
  const parts = [r.statement, r.counter !== undefined ? 'counter' : '', r.verdict ?? ''];
  if (r.counter !== undefined) parts.push(`comment "${name(r.counter)}"`);
  return parts.filter((p) => p !== '').join(' ');
}

function elementText(e: NftElement, kind: 'set' | 'map'): string {
  const address = canonicalIPv6(e.address);
  if (e.mark === undefined) return address;
  if (!Number.isInteger(e.mark) || e.mark < 0) throw new OfflinkError('ERR_CONFIG', `bad mark ${e.mark}`);
  return `${address} ${kind === 'map' ? ':' : '.'} ${e.mark}`;
}

function tableLines(t: NftTable): string[] {
  const table = `${t.family ?? 'ip6'} ${name(t.name)}`;
  return [
    `table ${table} {`,
    ...t.sets.map((s) => `  ${s.kind} ${name(s.name)} { type ${TYPES[s.type]}; }`),
    ...t.chains.map(
      (chain) =>
        `  chain ${name(chain.name)} { type filter hook ${chain.hook} priority ${chain.priority}; policy accept; }`,
    ),
    '}',
    ...t.chains.map((chain) => `flush chain ${table} ${chain.name}`),
    ...t.chains.flatMap((chain) => chain.rules.map((r) => `add rule ${table} ${chain.name} ${ruleText(r)}`)),
  ];
}

function elementLines(
  verb: 'add' | 'delete',
  table: string,
  set: string,
  elements: readonly string[],
): string[] {
  const out: string[] = [];
  for (let i = 0; i < elements.length; i += CHUNK)
    out.push(
      `${verb} element ip6 ${name(table)} ${name(set)} { ${elements.slice(i, i + CHUNK).join(', ')} }`,
    );
  return out;
}

/**
 * One `nft -f` transaction. Deleting something that is not there fails a transaction, so deletes are
 * written add-then-delete (a table, elements).
 */
export function nftScript(ops: readonly NftOp[]): string {
  const lines: string[] = [];
  for (const op of ops) {
    switch (op.op) {
      case 'define-table':
        lines.push(...tableLines(op.table));
        break;
      case 'delete-table':
        lines.push(
          `table ${op.family ?? 'ip6'} ${name(op.name)}`,
          `delete table ${op.family ?? 'ip6'} ${op.name}`,
        );
        break;
      case 'add-elements':
      case 'delete-elements': {
        const text = op.elements.map((e) => elementText(e, op.kind));
        lines.push(...elementLines('add', op.table, op.set, text));
        if (op.op === 'delete-elements') lines.push(...elementLines('delete', op.table, op.set, text));
        break;
      }
      case 'delete-set':
        lines.push(`delete set ip6 ${name(op.table)} ${name(op.set)}`);
        break;
    }
  }
  return lines.map((l) => `${l}\n`).join('');
}

type Json = Record<string, unknown>;

function elementOf(e: unknown): NftElement {
  if (typeof e === 'string') return { address: e };
  const fields = e as Json;
  if (Array.isArray(fields['concat'])) {
    const [address, mark] = fields['concat'] as [string, number];
    return { address, mark: Number(mark) };
  }
  if (fields['elem']) return elementOf((fields['elem'] as Json)['val']);
  throw new OfflinkError('ERR_DATAPLANE', `unexpected nftables element ${JSON.stringify(e)}`);
}

/** `nft -j list table ip6 <name>`: every set's and map's elements, and the named counters. */
export function parseNftTable(json: string): NftTableState {
  const state: NftTableState = { sets: new Map(), counters: {} };
  for (const item of (JSON.parse(json) as { nftables: Json[] }).nftables) {
    const map = item['map'] as Json | undefined;
    if (map && typeof map['name'] === 'string') {
      const elems = (map['elem'] as [unknown, unknown][] | undefined) ?? [];
      state.sets.set(
        map['name'],
        elems.map(([k, v]) => ({ address: elementOf(k).address, mark: Number(v) })),
      );
    }
    const set = item['set'] as Json | undefined;
    if (set && typeof set['name'] === 'string')
      state.sets.set(set['name'], ((set['elem'] as unknown[] | undefined) ?? []).map(elementOf));
    const rule = item['rule'] as Json | undefined;
    if (rule && typeof rule['comment'] === 'string') {
      const counter = (rule['expr'] as Json[]).find((x) => x['counter'])?.['counter'] as Json | undefined;
      if (counter) state.counters[rule['comment']] = Number(counter['packets']);
    }
  }
  return state;
}
