import assert from 'node:assert/strict';
import { test } from 'node:test';
import { aggregatePrefixes, canonicalAddress, checkInterfaceName, parsePrefix, prefixMask } from './addr.ts';

test('canonicalAddress gives the RFC 5952 text the kernel prints', () => {
  const cases: [string, string][] = [
    ['::', '::'],
    ['::1', '::1'],
    ['2001:DB8::A', '2001:db8::a'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['1:0:2:0:3:0:4:0', '1:0:2:0:3:0:4:0'],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
    ['fe80::1:2:3:4', 'fe80::1:2:3:4'],
    ['::ffff:1.2.3.4', '::ffff:102:304'],
  ];
  for (const [input, want] of cases) assert.equal(canonicalAddress(input), want, input);
});

test('anything that is not an address is refused (it would end up in a command script)', () => {
  for (const bad of [
    '',
    ':',
    '1:::2',
    '1::2::3',
    '1:2:3:4:5:6:7',
    '1:2:3:4:5:6:7:8:9',
    '12345::',
    'g::',
    '::1 dev lo',
    '::1\nroute flush',
  ]) {
    assert.throws(() => canonicalAddress(bad), { code: 'ERR_ADDRESS' }, JSON.stringify(bad));
  }
  for (const bad of ['2001:db8::/129', '2001:db8::/-1', '2001:db8::/6 4', '2001:db8::/']) {
    assert.throws(() => parsePrefix(bad), { code: 'ERR_ADDRESS' }, bad);
  }
  for (const bad of ['', 'a-very-long-name0', 'br 0', 'br"0', 'br\n0'])
    assert.throws(() => checkInterfaceName(bad), { code: 'ERR_ADDRESS' });
});

test('parsePrefix clears host bits; a bare address is a /128; masks', () => {
  assert.deepEqual(parsePrefix('2001:db8:100::1/64'), {
    address: '2001:db8:100::',
    length: 64,
    text: '2001:db8:100::/64',
  });
  assert.equal(parsePrefix('2001:db8::1').text, '2001:db8::1/128');
  assert.equal(parsePrefix('2001:db8:1234::/20').text, '2001::/20');
  assert.equal(parsePrefix('2001:db8:1234::/36').text, '2001:db8:1000::/36');
  assert.equal(parsePrefix('default').text, '::/0');
  assert.equal(prefixMask(64), 'ffff:ffff:ffff:ffff::');
  assert.equal(prefixMask(57), 'ffff:ffff:ffff:ff80::');
  assert.equal(prefixMask(128), 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff');
  assert.equal(prefixMask(0), '::');
});

test('aggregatePrefixes: exact cover only (siblings merged, contained dropped, nothing added)', () => {
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

test('aggregatePrefixes: 65,536 sequential /64s are one /48', () => {
  const many = Array.from({ length: 65536 }, (_, i) => `2001:db8:7:${i.toString(16)}::/64`);
  assert.deepEqual(aggregatePrefixes(many), ['2001:db8:7::/48']);
});
