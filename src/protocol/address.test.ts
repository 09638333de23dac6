import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OfflinkError } from '../errors.ts';
import {
  aggregatePrefixes,
  canonicalIPv6,
  formatIPv6,
  parseDestination,
  parseIPv6,
  parsePrefix,
  prefixContains,
  prefixCovers,
  prefixMask,
} from './address.ts';
import { hex } from './testkit.ts';

const isCode = (code: string) => (err: unknown) => err instanceof OfflinkError && err.code === code;

describe('parseIPv6 / formatIPv6', () => {
  it('parses the RFC 4291 §2.2 forms', () => {
    assert.deepEqual(parseIPv6('2001:DB8:0:0:8:800:200C:417A'), hex('20010db8 00000000 00080800 200c417a'));
    assert.deepEqual(parseIPv6('::'), new Uint8Array(16));
    assert.deepEqual(parseIPv6('::1'), hex('00000000 00000000 00000000 00000001'));
    assert.deepEqual(parseIPv6('ff01::101'), hex('ff010000 00000000 00000000 00000101'));
    assert.deepEqual(parseIPv6('1:2:3:4:5:6:7::'), hex('00010002 00030004 00050006 00070000'));
    assert.deepEqual(parseIPv6('::13.1.68.3'), hex('00000000 00000000 00000000 0d014403'));
    assert.deepEqual(parseIPv6('::FFFF:129.144.52.38'), hex('00000000 00000000 0000ffff 81903426'));
    assert.deepEqual(parseIPv6('0:0:0:0:0:0:13.1.68.3'), hex('00000000 00000000 00000000 0d014403'));
  });

  it('refuses bad text with ERR_INVALID_ADDRESS', () => {
    for (const bad of [
      '',
      ':',
      ':::',
      '1::2::3',
      '1:2:3:4:5:6:7:8:9',
      '1:2:3:4:5:6:7',
      '1::2:3:4:5:6:7:8',
      '12345::',
      'g::',
      ':1::',
      '1::1:',
      '1.2.3.4',
      '::1.2.3',
      '::256.1.1.1',
      '::01.2.3.4',
      '::1.2.3.4:5',
      '1.2.3.4::',
      'fe80::1%eth0',
      ' ::1',
    ]) {
      assert.throws(() => parseIPv6(bad), isCode('ERR_INVALID_ADDRESS'), bad);
    }
  });

  it('formats RFC 5952 canonical text', () => {
    const cases: [string, string][] = [
      ['2001:0db8:0000:0000:0000:0000:0002:0001', '2001:db8::2:1'], // §4.2.1 longest run
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // §4.2.2 one zero group stays
      ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'], // §4.2.3 longest run wins
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // §4.2.3 first run on a tie
      ['2001:DB8::ABCD', '2001:db8::abcd'], // §4.3 lower case
      ['::', '::'],
      ['0:0:0:0:0:0:0:1', '::1'],
      ['1:0:0:0:0:0:0:0', '1::'],
      ['::ffff:c000:0280', '::ffff:192.0.2.128'], // §5 IPv4-mapped in mixed notation
      ['::13.1.68.3', '::d01:4403'],
    ];
    for (const [input, want] of cases) assert.equal(canonicalIPv6(input), want, input);
  });

  it('formats at an offset', () => {
    const buf = new Uint8Array(20);
    buf.set(parseIPv6('2001:db8::7'), 3);
    assert.equal(formatIPv6(buf, 3), '2001:db8::7');
  });
});

describe('prefixes', () => {
  it('parsePrefix canonicalizes and clears host bits', () => {
    assert.deepEqual(parsePrefix('2001:DB8:0:0:1::1/64'), {
      address: '2001:db8::',
      length: 64,
      text: '2001:db8::/64',
    });
    assert.deepEqual(parsePrefix('2001:db8:0:1ff::/63'), {
      address: '2001:db8:0:1fe::',
      length: 63,
      text: '2001:db8:0:1fe::/63',
    });
    assert.deepEqual(parsePrefix('::/0'), { address: '::', length: 0, text: '::/0' });
    assert.deepEqual(parsePrefix('2001:db8::1/128'), {
      address: '2001:db8::1',
      length: 128,
      text: '2001:db8::1/128',
    });
  });

  it('parsePrefix refuses bad text with ERR_INVALID_PREFIX', () => {
    for (const bad of [
      '2001:db8::',
      '2001:db8::/129',
      '2001:db8::/-1',
      '2001:db8::/064',
      'x::/64',
      '/64',
      '::/',
    ]) {
      assert.throws(() => parsePrefix(bad), isCode('ERR_INVALID_PREFIX'), bad);
    }
  });

  it('prefixContains', () => {
    assert.equal(prefixContains('2001:db8:100::/64', '2001:db8:100::42'), true);
    assert.equal(prefixContains('2001:db8:100::/64', '2001:db8:100:1::42'), false);
    assert.equal(prefixContains('2001:db8:100::/57', '2001:db8:100:7f::1'), true);
    assert.equal(prefixContains('2001:db8:100::/57', '2001:db8:100:80::1'), false);
    assert.equal(prefixContains('::/0', '2001:db8::1'), true);
    assert.equal(prefixContains('2001:db8::1/128', '2001:db8::1'), true);
    assert.equal(prefixContains('2001:db8::1/128', '2001:db8::2'), false);
    assert.throws(() => prefixContains('2001:db8::/64', 'nope'), isCode('ERR_INVALID_ADDRESS'));
  });

  it('prefixCovers', () => {
    assert.equal(prefixCovers('2001:db8:100::/56', '2001:db8:100::/64'), true);
    assert.equal(prefixCovers('2001:db8:100::/56', '2001:db8:1ff::/64'), false);
    assert.equal(prefixCovers('2001:db8:100::/56', '2001:db8:100:ff::/64'), true);
    assert.equal(prefixCovers('2001:db8:100::/64', '2001:db8:100::/56'), false);
    assert.equal(prefixCovers('2001:db8:100::/64', '2001:db8:100::/64'), true);
    assert.equal(prefixCovers('::/0', '2001:db8::/32'), true);
  });
});

it('parseDestination clears host bits; a bare address is a /128, default ::/0; masks', () => {
  assert.deepEqual(parseDestination('2001:db8:100::1/64'), {
    address: '2001:db8:100::',
    length: 64,
    text: '2001:db8:100::/64',
  });
  assert.equal(parseDestination('2001:db8::1').text, '2001:db8::1/128');
  assert.equal(parseDestination('2001:db8:1234::/20').text, '2001::/20');
  assert.equal(parseDestination('2001:db8:1234::/36').text, '2001:db8:1000::/36');
  assert.equal(parseDestination('default').text, '::/0');
  assert.equal(prefixMask(64), 'ffff:ffff:ffff:ffff::');
  assert.equal(prefixMask(57), 'ffff:ffff:ffff:ff80::');
  assert.equal(prefixMask(128), 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff');
  assert.equal(prefixMask(0), '::');
});

it('aggregatePrefixes: exact cover only (siblings merged, contained dropped, nothing added)', () => {
  assert.deepEqual(
    aggregatePrefixes([
      '2001:db8:0:1::/64',
      '2001:db8::/64',
      '2001:db8:0:2::/64',
      '2001:db8:0:3::/64',
      '2001:db8:0:3::5/128',
      '2001:db8:100::/64',
      '2001:db8:101::/64',
    ]),
    ['2001:db8::/62', '2001:db8:100::/64', '2001:db8:101::/64'],
  );
  assert.deepEqual(aggregatePrefixes(['2001:db8::1', '2001:db8::']), ['2001:db8::/127']);
  assert.deepEqual(aggregatePrefixes(['::/1', '8000::/1']), ['::/0']);
  assert.deepEqual(aggregatePrefixes([]), []);
});

it('aggregatePrefixes: 65,536 sequential /64s are one /48', () => {
  const many = Array.from({ length: 65536 }, (_, i) => `2001:db8:7:${i.toString(16)}::/64`);
  assert.deepEqual(aggregatePrefixes(many), ['2001:db8:7::/48']);
});
