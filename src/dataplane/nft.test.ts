import assert from 'node:assert/strict';
import { test } from 'node:test';
import { elementDiff, emptyElements, haTable, haTableState, mrTable } from './nft.ts';
import { ruleText } from './nftables.ts';

test('haTableState: marks and per-length elements from what the kernel holds', () => {
  const t = haTableState({
    sets: new Map([
      ['coa2id', [{ address: '2001:db8:a::2', mark: 1 }]],
      ['allowed_64', [{ address: '2001:db8:101::', mark: 1 }]],
      ['allowed_56', [{ address: '2001:db8:1100::', mark: 2 }]],
      ['allowed_128', []],
      ['mnp_64', [{ address: '2001:db8:101::' }]],
      ['unrelated', [{ address: '::1' }]],
    ]),
    counters: { 'inner-source': 3 },
  });
  assert.equal(t.exists, true);
  assert.deepEqual([...t.elements.coa2id], [['2001:db8:a::2', 1]]);
  assert.deepEqual(t.elements.allowed.get(64), new Set(['2001:db8:101:: . 1']));
  assert.deepEqual(t.elements.allowed.get(56), new Set(['2001:db8:1100:: . 2']));
  assert.deepEqual(t.elements.mnp.get(64), new Set(['2001:db8:101::']));
  assert.deepEqual(t.lengths.sort(), [128, 56, 64]);
  assert.deepEqual(t.counters, { 'inner-source': 3 });
  assert.deepEqual(haTableState(undefined), {
    exists: false,
    elements: emptyElements(),
    counters: {},
    lengths: [],
  });
});

test('elementDiff: what goes and what comes, per set; nothing for equal states', () => {
  const from = emptyElements();
  from.coa2id.set('2001:db8:a::2', 1);
  from.allowed.set(64, new Set(['2001:db8:101:: . 1']));
  const to = emptyElements();
  to.coa2id.set('2001:db8:b::2', 2);
  to.allowed.set(64, new Set(['2001:db8:101:: . 2']));
  const element = (address: string, mark: number) => [{ address, mark }];
  assert.deepEqual(elementDiff(from, to), {
    dels: [
      {
        op: 'delete-elements',
        table: 'offlink',
        set: 'allowed_64',
        kind: 'set',
        elements: element('2001:db8:101::', 1),
      },
      {
        op: 'delete-elements',
        table: 'offlink',
        set: 'coa2id',
        kind: 'map',
        elements: element('2001:db8:a::2', 1),
      },
    ],
    adds: [
      {
        op: 'add-elements',
        table: 'offlink',
        set: 'coa2id',
        kind: 'map',
        elements: element('2001:db8:b::2', 2),
      },
      {
        op: 'add-elements',
        table: 'offlink',
        set: 'allowed_64',
        kind: 'set',
        elements: element('2001:db8:101::', 2),
      },
    ],
  });
  assert.deepEqual(elementDiff(to, to), { dels: [], adds: [] });
});

test('haTable: one lookup per prefix length, longest first; no clamping with mss 0', () => {
  const t = haTable({ haAddress: '2001:db8:ffff::1', mss: 0, lengths: [64, 48, 128] });
  const lookups = t.chains
    .flatMap((chain) => chain.rules.map((r) => `${chain.name} ${ruleText(r)}`))
    .filter((l) => l.includes('@allowed_'));
  assert.deepEqual(lookups, [
    'forward_check ip6 saddr . meta mark @allowed_128 accept',
    'forward_check ip6 saddr & ffff:ffff:ffff:ffff:: . meta mark @allowed_64 accept',
    'forward_check ip6 saddr & ffff:ffff:ffff:: . meta mark @allowed_48 accept',
  ]);
  assert.ok(t.chains.every((chain) => chain.rules.every((r) => !r.statement.includes('maxseg'))));
  assert.deepEqual(
    t.sets.map((s) => s.name),
    ['coa2id', 'allowed_128', 'mnp_128', 'allowed_64', 'mnp_64', 'allowed_48', 'mnp_48'],
  );
});

test('mrTable: recreated whole; removed when there is nothing to do', () => {
  assert.deepEqual(mrTable({ uplink: 'up0', mss: 0 }), [{ op: 'delete-table', name: 'offlink-mr' }]);
  const [drop, define] = mrTable({ uplink: 'up0', mss: 1400 });
  assert.deepEqual(drop, { op: 'delete-table', name: 'offlink-mr' });
  assert.ok(define?.op === 'define-table');
  assert.deepEqual(
    define.table.chains.map((chain) => `${chain.name} ${chain.rules.map(ruleText).join('; ')}`),
    [
      'pre iifname != "up0" tcp flags syn tcp option maxseg size set 1400',
      'clamp_out iifname "up0" tcp flags syn tcp option maxseg size set 1400',
    ],
  );
});
