import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { ConfigError } from '../errors.ts';
import { configError, formatPath } from './errors.ts';
import { listenAddress, metricsSection, prefix, sameSocket } from './schema.ts';

/** What a config says when `schema` refuses `input`. */
function refusal(schema: z.ZodType, input: unknown, at?: string): string {
  const parsed = schema.safeParse(input);
  assert.ok(!parsed.success, 'expected a refusal');
  const err = configError(parsed.error, at);
  assert.ok(err instanceof ConfigError);
  return err.message;
}

describe('config building blocks', () => {
  it('formats key paths, under an optional prefix', () => {
    assert.equal(formatPath(['mobileRouters', 1, 'prefixes', 0]), 'mobileRouters[1].prefixes[0]');
    assert.equal(formatPath(['key'], 'networks[2]'), 'networks[2].key');
    assert.equal(formatPath([0], 'peers'), 'peers[0]');
  });

  it('prefix: canonical text; names the value and what is wrong with it', () => {
    assert.equal(prefix().parse('2001:0DB8:0100::/48'), '2001:db8:100::/48');
    assert.match(refusal(prefix(), 'nope'), /^nope: not an IPv6 prefix/);
    assert.match(
      refusal(prefix(), '2001:db8::1/64'),
      /^2001:db8::1\/64: host bits set \(the network is 2001:db8::\/64\)/,
    );
    assert.match(refusal(prefix(), '::/0'), /^::\/0: a \/0 prefix is every address/);
    const mnp = prefix({ longest: 64, why: 'SLAAC' });
    assert.equal(mnp.parse('2001:db8::/64'), '2001:db8::/64');
    assert.match(refusal(mnp, '2001:db8::/80'), /must be a \/64 or shorter \(SLAAC\)/);
  });

  it('listen address: bracketed IPv6 or dotted IPv4, judged by the caller', () => {
    const any = listenAddress(() => true, 'must be address:port');
    assert.deepEqual(any.parse('[::1]:9180'), { host: '::1', port: 9180 });
    assert.deepEqual(any.parse('127.0.0.1:80'), { host: '127.0.0.1', port: 80 });
    for (const bad of ['::1:9180', '[::1]:0', '[::1]:70000', 'localhost:80'])
      assert.equal(refusal(any, bad, 'listen'), 'listen: must be address:port');
    const v4only = listenAddress((_, v6) => !v6, 'IPv4 only');
    assert.equal(refusal(v4only, '[::1]:80'), 'IPv4 only');
  });

  it('a wrong type is named as such, a missing key as required', () => {
    const s = z.strictObject({ spi: z.number(), name: z.string() });
    assert.equal(
      refusal(s, { spi: '300', name: 'a' }, 'networks[0]'),
      'networks[0].spi: must be a number, not a string',
    );
    assert.equal(
      refusal(s, { spi: 300, name: 7 }),
      'name: must be a string, not a number (quote it: YAML reads digits as a number)',
    );
    assert.equal(refusal(s, { name: 'a' }), 'spi: required');
    assert.equal(refusal(s, { spi: 1, name: 'a', colour: 1 }), 'colour: unknown key');
  });

  it('unions: the deeper problem, the known discriminators, or the union’s own message', () => {
    const status = z.strictObject({
      status: z.union([z.literal(false), z.strictObject({ port: z.number() })], {
        error: 'false or { port }',
      }),
    });
    assert.equal(refusal(status, { status: { port: 'x' } }), 'status.port: must be a number, not a string');
    assert.equal(refusal(status, { status: 3 }), 'status: false or { port }');
    const driver = z.discriminatedUnion('driver', [
      z.strictObject({ driver: z.literal('netns') }),
      z.strictObject({ driver: z.literal('qemu') }),
    ]);
    assert.equal(
      refusal(z.strictObject({ hv: driver }), { hv: { driver: 'xen' } }),
      'hv.driver: must be one of: netns, qemu',
    );
  });

  it('metrics section: any IPv4 or bracketed IPv6 address (scoped too); its own words for a bare address', () => {
    assert.deepEqual(metricsSection.parse({ listen: '[fe80::1%eth0]:9180' }).listen, {
      host: 'fe80::1%eth0',
      port: 9180,
    });
    assert.deepEqual(metricsSection.parse({ listen: '0.0.0.0:9180' }).listen, {
      host: '0.0.0.0',
      port: 9180,
    });
    assert.equal(refusal(metricsSection, '[::]:9180', 'metrics'), 'metrics: must be { listen: "[::]:9180" }');
    assert.match(
      refusal(metricsSection, { listen: '[nope]:9180' }, 'metrics'),
      /^metrics.listen: must be address:port/,
    );
    assert.match(refusal(metricsSection, { listen: '300.1.1.1:9180' }), /^listen: must be address:port/);
  });

  it('sameSocket: same port and a host that covers the other', () => {
    const at = (host: string, port = 9180) => ({ host, port });
    assert.ok(sameSocket(at('::1'), at('::1')));
    assert.ok(sameSocket(at('::'), at('127.0.0.1')), ':: takes IPv4 too');
    assert.ok(sameSocket(at('10.0.0.1'), at('0.0.0.0')));
    assert.ok(!sameSocket(at('0.0.0.0'), at('::1')), '0.0.0.0 is IPv4 only');
    assert.ok(!sameSocket(at('::1'), at('::1', 9181)));
    assert.ok(!sameSocket(at('2001:db8::1'), at('2001:db8::2')));
  });
});
