import assert from 'node:assert/strict';
import { test } from 'node:test';
import { elementDiffScript, emptyElements, haTableScript, mrTableScript, parseHaTable } from './nft.ts';

// `nft -j list table ip6 offlink` from nft 1.0.6 on this kind of machine (rule bodies trimmed)
const LISTED =
  '{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "ip6", "name": "offlink", "handle": 1}}, {"map": {"family": "ip6", "name": "coa2id", "table": "offlink", "type": "ipv6_addr", "handle": 4, "map": "mark", "elem": [["2001:db8:a::2", 1], ["2001:db8:b::2", 2]]}}, {"set": {"family": "ip6", "name": "allowed_128", "table": "offlink", "type": ["ipv6_addr", "mark"], "handle": 5}}, {"set": {"family": "ip6", "name": "mnp_128", "table": "offlink", "type": "ipv6_addr", "handle": 6}}, {"set": {"family": "ip6", "name": "allowed_64", "table": "offlink", "type": ["ipv6_addr", "mark"], "handle": 7, "elem": [{"concat": ["2001:db8:101::", 1]}]}}, {"set": {"family": "ip6", "name": "mnp_64", "table": "offlink", "type": "ipv6_addr", "handle": 8, "elem": ["2001:db8:101::"]}}, {"set": {"family": "ip6", "name": "allowed_56", "table": "offlink", "type": ["ipv6_addr", "mark"], "handle": 9, "elem": [{"concat": ["2001:db8:1100::", 2]}]}}, {"set": {"family": "ip6", "name": "mnp_56", "table": "offlink", "type": "ipv6_addr", "handle": 10}}, {"chain": {"family": "ip6", "table": "offlink", "name": "pre", "handle": 1, "type": "filter", "hook": "prerouting", "prio": -150, "policy": "accept"}}, {"chain": {"family": "ip6", "table": "offlink", "name": "forward_check", "handle": 2, "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}}, {"chain": {"family": "ip6", "table": "offlink", "name": "clamp_out", "handle": 3, "type": "filter", "hook": "forward", "prio": -150, "policy": "accept"}}, {"rule": {"family": "ip6", "table": "offlink", "chain": "pre", "handle": 11, "comment": "unregistered-coa", "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]}}, {"rule": {"family": "ip6", "table": "offlink", "chain": "pre", "handle": 12, "expr": []}}, {"rule": {"family": "ip6", "table": "offlink", "chain": "pre", "handle": 19, "expr": []}}, {"rule": {"family": "ip6", "table": "offlink", "chain": "pre", "handle": 20, "expr": []}}, {"rule": {"family": "ip6", "table": "offlink", "chain": "pre", "handle": 21, "expr": []}}, {"rule": {"family": "ip6", "table": "offlink", "chain": "forward_check", "handle": 13, "expr": []}}, {"rule": {"family": "ip6", "table": "offlink", "chain": "forward_check", "handle": 14, "comment": "reencapsulated", "expr": [{"counter": {"packets": 0, "bytes": 0}}]}}, {"rule": {"family": "ip6", "table": "offlink", "chain": "forward_check", "handle": 15, "expr": []}}, {"rule": {"family": "ip6", "table": "offlink", "chain": "forward_check", "handle": 16, "expr": []}}, {"rule": {"family": "ip6", "table": "offlink", "chain": "forward_check", "handle": 17, "expr": []}}, {"rule": {"family": "ip6", "table": "offlink", "chain": "forward_check", "handle": 18, "comment": "inner-source", "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]}}, {"rule": {"family": "ip6", "table": "offlink", "chain": "clamp_out", "handle": 22, "expr": []}}]}';

test('parseHaTable reads marks, per-length elements and counters from real nft output', () => {
  const t = parseHaTable(LISTED);
  assert.equal(t.exists, true);
  assert.deepEqual(
    [...t.elements.coa2id],
    [
      ['2001:db8:a::2', 1],
      ['2001:db8:b::2', 2],
    ],
  );
  assert.deepEqual(t.elements.allowed.get(64), new Set(['2001:db8:101:: . 1']));
  assert.deepEqual(t.elements.allowed.get(56), new Set(['2001:db8:1100:: . 2']));
  assert.deepEqual(t.elements.allowed.get(128), new Set());
  assert.deepEqual(t.elements.mnp.get(64), new Set(['2001:db8:101::']));
  assert.deepEqual(t.lengths.sort(), [128, 56, 64]);
  assert.deepEqual(t.counters, { 'unregistered-coa': 0, reencapsulated: 0, 'inner-source': 0 });
});

test('elementDiffScript: deletes first (add-then-delete), then adds; nothing for equal states', () => {
  const from = emptyElements();
  from.coa2id.set('2001:db8:a::2', 1);
  from.allowed.set(64, new Set(['2001:db8:101:: . 1']));
  const to = emptyElements();
  to.coa2id.set('2001:db8:b::2', 2);
  to.allowed.set(64, new Set(['2001:db8:101:: . 2']));
  assert.equal(
    elementDiffScript(from, to),
    [
      'add element ip6 offlink allowed_64 { 2001:db8:101:: . 1 }',
      'delete element ip6 offlink allowed_64 { 2001:db8:101:: . 1 }',
      'add element ip6 offlink coa2id { 2001:db8:a::2 : 1 }',
      'delete element ip6 offlink coa2id { 2001:db8:a::2 : 1 }',
      'add element ip6 offlink coa2id { 2001:db8:b::2 : 2 }',
      'add element ip6 offlink allowed_64 { 2001:db8:101:: . 2 }',
      '',
    ].join('\n'),
  );
  assert.equal(elementDiffScript(to, to), '');
});

test('haTableScript: one lookup per prefix length, longest first; no clamping with mss 0', () => {
  const s = haTableScript({ haAddress: '2001:db8:ffff::1', mss: 0, lengths: [64, 48, 128] });
  const lookups = s.split('\n').filter((l) => l.includes('@allowed_'));
  assert.deepEqual(lookups, [
    'add rule ip6 offlink forward_check ip6 saddr . meta mark @allowed_128 accept',
    'add rule ip6 offlink forward_check ip6 saddr & ffff:ffff:ffff:ffff:: . meta mark @allowed_64 accept',
    'add rule ip6 offlink forward_check ip6 saddr & ffff:ffff:ffff:: . meta mark @allowed_48 accept',
  ]);
  assert.doesNotMatch(s, /maxseg/);
});

test('mrTableScript: recreated whole; removed when there is nothing to do', () => {
  assert.equal(
    mrTableScript({ uplink: 'up0', mss: 0 }),
    'table ip6 offlink-mr\ndelete table ip6 offlink-mr\n',
  );
  const s = mrTableScript({ uplink: 'up0', mss: 1400 });
  assert.match(
    s,
    /add rule ip6 offlink-mr pre iifname != "up0" tcp flags syn tcp option maxseg size set 1400/,
  );
  assert.match(
    s,
    /add rule ip6 offlink-mr clamp_out iifname "up0" tcp flags syn tcp option maxseg size set 1400/,
  );
});
