// The iproute2/nft translation without a kernel: typed operations → command lines, and the tools'
// output (captured from iproute2 6.1 and nft 1.0.6 on this kind of machine) → typed values. The same
// translation against the real kernel: test/kernel.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  batchLine,
  parseBatchErrors,
  parseFdbLine,
  parseRoutes,
  retryTransient,
  ruleFromJson,
} from './iproute2.ts';
import type { NetOp } from './kernel.ts';
import { nftScript, parseNftTable } from './nftables.ts';

test('each op is one batch line; values that are not one plain word are refused', () => {
  const table: [NetOp, string][] = [
    [
      {
        op: 'replace-route',
        route: {
          dst: '2001:DB8:1::/64',
          table: 'main',
          dev: 'up0',
          encap: { type: 'seg6', segment: '2001:db8:a:0::2' },
        },
      },
      'route replace 2001:db8:1::/64 proto 241 encap seg6 mode encap.red segs 2001:db8:a::2 dev up0 table main',
    ],
    [
      {
        op: 'replace-route',
        route: { dst: '::/0', table: 101, dev: 'up0', encap: { type: 'seg6local', action: 'End.DX6' } },
      },
      'route replace default proto 241 encap seg6local action End.DX6 nh6 :: dev up0 table 101',
    ],
    [
      {
        op: 'replace-route',
        route: {
          dst: '2001:db8::1',
          table: 'main',
          dev: 'up0',
          encap: { type: 'bpf', object: '/o.bpf.o', section: 'lwt_xmit', headroom: 40, bpffs: '/run/b' },
        },
      },
      'route replace 2001:db8::1/128 proto 241 encap bpf xmit obj /o.bpf.o section lwt_xmit headroom 40 dev up0 table main',
    ],
    [{ op: 'delete-route', dst: '::/0', table: 100 }, 'route del default proto 241 table 100'],
    [{ op: 'flush-routes', table: 'all' }, 'route flush table all proto 241'],
    [
      {
        op: 'add-rule',
        rule: { priority: 10, from: '2001:db8::1/128', to: '2001:db8::2/128', tunnelled: true, table: 200 },
      },
      'rule add pref 10 from 2001:db8::1/128 to 2001:db8::2/128 ipproto 41 lookup 200 protocol 241',
    ],
    [
      { op: 'delete-rule', rule: { priority: 0, table: 'local' }, owner: 'kernel' },
      'rule del pref 0 lookup local',
    ],
    [{ op: 'set-tunnel-source', address: '2001:db8:0::1' }, 'sr tunsrc set 2001:db8::1'],
  ];
  for (const [op, line] of table) assert.equal(batchLine(op).join(' '), line);
  const route = { dst: '::/0', table: 1, encap: { type: 'seg6', segment: '::1' } } as const;
  assert.throws(() => batchLine({ op: 'replace-route', route: { ...route, dev: 'up0\nroute flush' } }), {
    code: 'ERR_INVALID_INTERFACE',
  });
  assert.throws(() => batchLine({ op: 'delete-route', dst: '2001:db8::/64 dev lo', table: 1 }), {
    code: 'ERR_INVALID_PREFIX',
  });
  assert.throws(() => batchLine({ op: 'flush-routes', table: -1 }), { code: 'ERR_CONFIG' });
});

test('parseBatchErrors attributes each message to its line', () => {
  const stderr = [
    'RTNETLINK answers: No such process',
    'Command failed -:2',
    'Cannot find device "d0"',
    'Command failed -:5',
    '',
  ];
  assert.deepEqual(parseBatchErrors(stderr.join('\n')), [
    { line: 2, message: 'RTNETLINK answers: No such process' },
    { line: 5, message: 'Cannot find device "d0"' },
  ]);
});

test('retryTransient: ignorable failures pass, ENOMEM lines are retried alone, others throw', async () => {
  const del: NetOp = { op: 'delete-route', dst: '2001:db8::/64', table: 'main' };
  const put: NetOp = { op: 'flush-routes', table: 7 };
  const lines = [
    { op: del, ignore: /No such process/ },
    { op: put, ignore: undefined },
  ];
  const rounds: NetOp[][] = [];
  const answers = [
    [
      { line: 1, message: 'RTNETLINK answers: No such process' },
      { line: 2, message: 'RTNETLINK answers: Cannot allocate memory' },
    ],
    [],
  ];
  const slept: number[] = [];
  const result = await retryTransient(
    lines,
    async (pending) => {
      rounds.push(pending.map((l) => l.op));
      return answers.shift() ?? [];
    },
    { sleep: async (ms) => void slept.push(ms) },
  );
  assert.deepEqual(result, { retried: 1 });
  assert.deepEqual(rounds, [[del, put], [put]]);
  assert.deepEqual(slept, [5]);

  await assert.rejects(
    retryTransient(lines, async () => [{ line: 2, message: 'RTNETLINK answers: Invalid argument' }]),
    (err: Error & { code?: string; failures?: unknown }) =>
      err.code === 'ERR_KERNEL_OPS' &&
      JSON.stringify(err.failures) ===
        JSON.stringify([{ op: put, message: 'RTNETLINK answers: Invalid argument' }]),
  );
  let calls = 0;
  const enomem = async () => {
    calls++;
    return [{ line: 1, message: 'RTNETLINK answers: Cannot allocate memory' }];
  };
  await assert.rejects(retryTransient([lines[1]!], enomem, { retries: 2, sleep: async () => {} }), {
    code: 'ERR_KERNEL_OPS',
  });
  assert.equal(calls, 3, 'gives up after the retries');
  calls = 0;
  await retryTransient([], enomem);
  assert.equal(calls, 0, 'nothing to apply runs nothing');
});

test('routes as `ip -6 route show` prints them: destination, table, device and encapsulation', () => {
  const text = [
    '2001:db8:101::/64  encap seg6 mode encap.red segs 1 [ 2001:db8:a::2 ] dev up0 metric 1024 pref medium',
    '2001:db8:ffff::1  encap seg6local action End.DX6 nh6 :: dev up0 table 200 metric 1024 pref medium',
    'default  encap bpf xmit offlink.bpf.o:[lwt_xmit] headroom 40 dev up0 table 101 metric 1024 pref medium',
    'unicast 2001:db8:300::/64  encap ip6 id 0 src :: dst 2001:db8::9 hoplimit 0 tc 0 dev up0 metric 1024 pref medium',
    '2001:db8:1::/64 encap seg6 mode encap segs 2 [ 2001:db8::1 2001:db8::2 ] dev up0 metric 1024 pref medium',
    '',
  ].join('\n');
  assert.deepEqual(parseRoutes(text, 'main'), [
    {
      dst: '2001:db8:101::/64',
      table: 'main',
      dev: 'up0',
      encap: { type: 'seg6', segment: '2001:db8:a::2' },
    },
    { dst: '2001:db8:ffff::1/128', table: 200, dev: 'up0', encap: { type: 'seg6local', action: 'End.DX6' } },
    { dst: '::/0', table: 101, dev: 'up0', encap: { type: 'bpf' } },
    { dst: '2001:db8:300::/64', table: 'main', dev: 'up0', encap: { type: 'other' } },
    { dst: '2001:db8:1::/64', table: 'main', dev: 'up0', encap: { type: 'other' } },
  ]);
});

test('rules as `ip -j -6 rule show` prints them', () => {
  assert.deepEqual(ruleFromJson({ priority: 0, src: 'all', table: 'local' }), {
    priority: 0,
    table: 'local',
    ours: false,
  });
  assert.deepEqual(
    ruleFromJson({
      priority: 10,
      src: '2001:db8:ffff::1',
      dst: '2001:db8:a::2',
      ipproto: 'ipv6',
      table: '200',
      protocol: '241',
    }),
    {
      priority: 10,
      from: '2001:db8:ffff::1/128',
      to: '2001:db8:a::2/128',
      tunnelled: true,
      table: 200,
      ours: true,
    },
  );
  assert.deepEqual(
    ruleFromJson({
      priority: 2000,
      src: '2001:db8:100::',
      srclen: 64,
      iif: 'ofl-net1',
      table: '100',
      protocol: '241',
    }),
    { priority: 2000, from: '2001:db8:100::/64', iif: 'ofl-net1', table: 100, ours: true },
  );
});

test('bridge monitor fdb lines: guests are dynamic entries of a port; the rest is not a guest', () => {
  const table: [string, ReturnType<typeof parseFdbLine>][] = [
    [
      '52:54:00:12:34:56 dev vg-guest-1 master ofl-net1 ',
      { deleted: false, mac: '52:54:00:12:34:56', dev: 'vg-guest-1', master: 'ofl-net1' },
    ],
    [
      'Deleted 52:54:00:12:34:56 dev vg-guest-1 master ofl-net1 ',
      { deleted: true, mac: '52:54:00:12:34:56', dev: 'vg-guest-1', master: 'ofl-net1' },
    ],
    ['02:11:22:33:44:55 dev vp1 master br9 permanent', undefined], // a port's own address
    ['Deleted d6:3a:f3:9c:79:17 dev br9 master br9 permanent', undefined],
    ['33:33:00:00:00:01 dev br9 self permanent', undefined], // multicast, the bridge's own
    ['01:00:5e:00:00:01 dev vp1 master br9', undefined], // multicast
    ['52:54:00:12:34:56 dev vp1 vlan 10 master br9', undefined], // VLAN entries: not mirrored
    ['garbage', undefined],
    ['', undefined],
  ];
  for (const [line, want] of table) assert.deepEqual(parseFdbLine(line), want, line);
});

test('nftScript: a table definition keeps its sets; deletes are written add-then-delete', () => {
  const script = nftScript([
    {
      op: 'define-table',
      table: {
        name: 't',
        sets: [
          { name: 'm', kind: 'map', type: 'address : mark' },
          { name: 's', kind: 'set', type: 'address . mark' },
        ],
        chains: [
          {
            name: 'pre',
            hook: 'prerouting',
            priority: 'mangle',
            rules: [
              { statement: 'ip6 saddr != @m', verdict: 'drop', counter: 'bad' },
              { statement: 'meta mark 0', verdict: 'accept' },
            ],
          },
        ],
      },
    },
    {
      op: 'delete-elements',
      table: 't',
      set: 'm',
      kind: 'map',
      elements: [{ address: '2001:DB8::1', mark: 3 }],
    },
    { op: 'add-elements', table: 't', set: 's', kind: 'set', elements: [{ address: '2001:db8::', mark: 3 }] },
    { op: 'delete-set', table: 't', set: 's' },
    { op: 'delete-table', name: 't' },
  ]);
  assert.equal(
    script,
    [
      'table ip6 t {',
      '  map m { type ipv6_addr : mark; }',
      '  set s { type ipv6_addr . mark; }',
      '  chain pre { type filter hook prerouting priority mangle; policy accept; }',
      '}',
      'flush chain ip6 t pre',
      'add rule ip6 t pre ip6 saddr != @m counter drop comment "bad"',
      'add rule ip6 t pre meta mark 0 accept',
      'add element ip6 t m { 2001:db8::1 : 3 }',
      'delete element ip6 t m { 2001:db8::1 : 3 }',
      'add element ip6 t s { 2001:db8:: . 3 }',
      'delete set ip6 t s',
      'table ip6 t',
      'delete table ip6 t',
      '',
    ].join('\n'),
  );
  assert.throws(() => nftScript([{ op: 'delete-table', name: 'x; flush ruleset' }]), { code: 'ERR_CONFIG' });
});

// `nft -j list table ip6 offlink` from nft 1.0.6 on this kind of machine (rule bodies trimmed)
const LISTED =
  '{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "ip6", "name": "offlink", "handle": 1}}, {"map": {"family": "ip6", "name": "coa2id", "table": "offlink", "type": "ipv6_addr", "handle": 4, "map": "mark", "elem": [["2001:db8:a::2", 1], ["2001:db8:b::2", 2]]}}, {"set": {"family": "ip6", "name": "allowed_128", "table": "offlink", "type": ["ipv6_addr", "mark"], "handle": 5}}, {"set": {"family": "ip6", "name": "allowed_64", "table": "offlink", "type": ["ipv6_addr", "mark"], "handle": 7, "elem": [{"concat": ["2001:db8:101::", 1]}]}}, {"set": {"family": "ip6", "name": "mnp_64", "table": "offlink", "type": "ipv6_addr", "handle": 8, "elem": ["2001:db8:101::"]}}, {"chain": {"family": "ip6", "table": "offlink", "name": "pre", "handle": 1, "type": "filter", "hook": "prerouting", "prio": -150, "policy": "accept"}}, {"rule": {"family": "ip6", "table": "offlink", "chain": "pre", "handle": 11, "comment": "unregistered-coa", "expr": [{"counter": {"packets": 7, "bytes": 0}}, {"drop": null}]}}, {"rule": {"family": "ip6", "table": "offlink", "chain": "pre", "handle": 12, "expr": []}}]}';

test('parseNftTable reads every set and map and the named counters from real nft output', () => {
  const t = parseNftTable(LISTED);
  assert.deepEqual(
    [...t.sets],
    [
      [
        'coa2id',
        [
          { address: '2001:db8:a::2', mark: 1 },
          { address: '2001:db8:b::2', mark: 2 },
        ],
      ],
      ['allowed_128', []],
      ['allowed_64', [{ address: '2001:db8:101::', mark: 1 }]],
      ['mnp_64', [{ address: '2001:db8:101::' }]],
    ],
  );
  assert.deepEqual(t.counters, { 'unregistered-coa': 7 });
});
