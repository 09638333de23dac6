// Dual-stack prefixes (RFC 5555): how IPv4 prefixes are told apart, validated and aggregated, and how
// IPv4 routes and rules reach iproute2 (a batch of their own: `ip -4`).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CommandRunner, RunOptions, RunResult } from '../system/runner.ts';
import { aggregateAny, familyOf, mnpText, refuseIPv4 } from './family.ts';
import { batchLine, Iproute2Kernel, parseRoutes, ruleFromJson } from './iproute2.ts';
import { KernelOpsError, type NetOp, opFamily } from './kernel.ts';

test('IPv4 prefixes are told apart by their form and made canonical (host bits cleared, bare = /32)', () => {
  assert.equal(familyOf('10.1.0.0/24'), 4);
  assert.equal(familyOf('2001:db8:100::/64'), 6);
  assert.equal(familyOf('::ffff:10.1.0.0/120'), 6);
  assert.equal(mnpText('10.1.0.7/24'), '10.1.0.0/24');
  assert.equal(mnpText('192.0.2.1'), '192.0.2.1/32');
  assert.equal(mnpText('2001:DB8:100::/64'), '2001:db8:100::/64');
});

test('bad IPv4 prefixes are refused with a message naming the fault', () => {
  const bad: [string, RegExp][] = [
    ['10.1.0.0/33', /invalid IPv4 prefix "10\.1\.0\.0\/33": length must be 0\.\.32/],
    ['10.1.0.256/24', /invalid IPv4 prefix "10\.1\.0\.256\/24": "10\.1\.0\.256" is not a dotted-quad/],
    ['10.1.0/24', /is not a dotted-quad/],
    ['10.01.0.0/24', /is not a dotted-quad/],
    ['10.1.0.0/', /length must be 0\.\.32/],
    ['10.1.0.0/24 ', /length must be 0\.\.32/],
  ];
  for (const [text, message] of bad)
    assert.throws(() => mnpText(text), { code: 'ERR_INVALID_PREFIX', message }, text);
});

test('IPv4-mapped IPv6 prefixes are refused: IPv4 is written as IPv4', () => {
  assert.throws(() => mnpText('::ffff:10.1.0.0/120'), {
    code: 'ERR_INVALID_PREFIX',
    message: /IPv4-mapped .*write IPv4 prefixes as IPv4/,
  });
});

test('aggregateAny merges each family on its own, never across', () => {
  assert.deepEqual(
    aggregateAny([
      '10.1.0.0/25',
      '10.1.0.128/25',
      '10.1.1.0/24',
      '2001:db8::/64',
      '2001:db8:0:1::/64',
      '10.3.0.0/24',
    ]),
    ['2001:db8::/63', '10.1.0.0/23', '10.3.0.0/24'],
  );
  assert.deepEqual(aggregateAny(['0.0.0.0/1', '128.0.0.0/1']), ['0.0.0.0/0']);
});

test('refuseIPv4 names the backend and the IPv4 prefixes; IPv6 only passes', () => {
  refuseIPv4(['2001:db8:100::/64'], 'seg6');
  assert.throws(() => refuseIPv4(['2001:db8:100::/64', '10.1.0.0/24'], 'seg6'), {
    code: 'ERR_DATAPLANE_IPV4',
    message: /seg6 data plane tunnels IPv6 prefixes only; IPv4 prefixes \(10\.1\.0\.0\/24\)/,
  });
});

const bpf = { type: 'bpf' as const, object: '/o', section: 'lwt_xmit', headroom: 40, bpffs: '/b' };

test('IPv4 ops: family from their prefixes; batch lines as `ip -4` takes them', () => {
  const route: NetOp = {
    op: 'replace-route',
    route: { dst: '0.0.0.0/0', table: 100, dev: 'up0', encap: bpf },
  };
  const rule: NetOp = {
    op: 'add-rule',
    rule: { priority: 100, from: '10.1.0.0/24', iif: 'br0', table: 100 },
  };
  assert.equal(opFamily(route), 4);
  assert.equal(opFamily(rule), 4);
  assert.equal(opFamily({ op: 'flush-routes', table: 'all', family: 4 }), 4);
  assert.equal(opFamily({ op: 'flush-routes', table: 'all' }), 6);
  assert.equal(opFamily({ op: 'delete-route', dst: '::/0', table: 100 }), 6);
  assert.deepEqual(batchLine(route), [
    ...['route', 'replace', 'default', 'proto', '241', 'encap', 'bpf', 'xmit', 'obj', '/o'],
    ...['section', 'lwt_xmit', 'headroom', '40', 'dev', 'up0', 'table', '100'],
  ]);
  assert.deepEqual(batchLine(rule), [
    ...[
      'rule',
      'add',
      'pref',
      '100',
      'from',
      '10.1.0.0/24',
      'iif',
      'br0',
      'lookup',
      '100',
      'protocol',
      '241',
    ],
  ]);
});

class Recorder implements CommandRunner {
  readonly calls: { argv: readonly string[]; input: string }[] = [];
  constructor(private readonly answer: (argv: readonly string[]) => RunResult) {}
  async run(argv: readonly string[], options?: RunOptions): Promise<RunResult> {
    this.calls.push({ argv, input: options?.input ?? '' });
    return this.answer(argv);
  }
}

test('apply: IPv6 ops in one `ip -6` batch, IPv4 ops in an `ip -4` batch after it', async () => {
  const runner = new Recorder(() => ({ stdout: '', stderr: '', exitCode: 0 }));
  await new Iproute2Kernel({ runner }).apply([
    { op: 'delete-route', dst: '10.1.0.0/24', table: 'main' },
    { op: 'delete-route', dst: '2001:db8:100::/64', table: 'main' },
  ]);
  assert.deepEqual(
    runner.calls.map((c) => [c.argv.join(' '), c.input]),
    [
      ['ip -6 -force -batch -', 'route del 2001:db8:100::/64 proto 241 table main\n'],
      ['ip -4 -force -batch -', 'route del 10.1.0.0/24 proto 241 table main\n'],
    ],
  );
});

test('apply: a failure in the IPv6 batch does not keep the IPv4 one from running; both are reported', async () => {
  const runner = new Recorder(() => ({
    stdout: '',
    stderr: 'Error: Invalid argument\nCommand failed -:1\n',
    exitCode: 1,
  }));
  const ops: NetOp[] = [
    { op: 'replace-route', route: { dst: '2001:db8:100::/64', table: 'main', dev: 'up0', encap: bpf } },
    { op: 'replace-route', route: { dst: '10.1.0.0/24', table: 'main', dev: 'up0', encap: bpf } },
  ];
  await assert.rejects(new Iproute2Kernel({ runner }).apply(ops), (err: KernelOpsError) => {
    assert.ok(err instanceof KernelOpsError);
    assert.deepEqual(
      err.failures.map((f) => f.op),
      ops,
    );
    return true;
  });
  assert.equal(runner.calls.length, 2);
});

test('IPv4 routes and rules read back from `ip -4` output', () => {
  assert.deepEqual(
    parseRoutes(
      'default  encap bpf xmit offlink.bpf.o:[lwt_xmit] dev up0 proto 241 scope link \n' +
        '10.1.0.0/24  encap bpf xmit offlink.bpf.o:[lwt_xmit] dev ha-up proto 241 scope link \n',
      100,
      4,
    ),
    [
      { dst: '0.0.0.0/0', table: 100, dev: 'up0', encap: { type: 'bpf' } },
      { dst: '10.1.0.0/24', table: 100, dev: 'ha-up', encap: { type: 'bpf' } },
    ],
  );
  assert.deepEqual(
    ruleFromJson({ priority: 100, src: '10.1.0.0', srclen: 24, iif: 'br0', table: '100', protocol: '241' }),
    { priority: 100, from: '10.1.0.0/24', iif: 'br0', table: 100, ours: true },
  );
  assert.deepEqual(ruleFromJson({ priority: 5, src: '10.1.0.9', table: 'main', protocol: 'boot' }), {
    priority: 5,
    from: '10.1.0.9/32',
    table: 'main',
    ours: false,
  });
});
