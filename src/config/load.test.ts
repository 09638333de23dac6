import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDocument } from 'yaml';
import { ConfigError } from '../errors.ts';
import { parseYaml } from './load.ts';

const whole = (text: string) => parseDocument(text, { uniqueKeys: true }).toJS();

/** Over 1 MiB, so parseYaml takes its sliced path for long block sequences. */
function large(items: (i: number) => string, count = 12_000, tail = ''): string {
  const lines = Array.from({ length: count }, (_, i) => items(i));
  return `# fleet\nhomeAgent:\n  address: 2001:db8::1\nmobileRouters: # many\n\n${lines.join('\n')}\n${tail}`;
}

test('a large config parses to the same data as the whole document (flow and block items, comments)', () => {
  const flow = large(
    (i) =>
      `  - { name: mr${i}, homeAddress: "2001:db8:ffff::${i.toString(16)}", prefixes: ["2001:db8:${i.toString(16)}::/64"], spi: ${256 + i} }`,
  );
  assert.ok(flow.length > 1 << 20);
  assert.deepEqual(parseYaml(flow), whole(flow));
  const block = large(
    (i) =>
      `- name: mr${i}\n  # key ${i}\n  key: "${'ab'.repeat(40)}"\n  prefixes:\n    - 2001:db8:${i.toString(16)}::/64`,
    8000,
    'peers:\n  a: http://x\n',
  );
  assert.ok(block.length > 1 << 20);
  const data = parseYaml(block) as { mobileRouters: unknown[]; peers: unknown };
  assert.deepEqual(data, whole(block));
  assert.equal(data.mobileRouters.length, 8000);
});

test('a large config with an error reports it as the whole-document parse does', () => {
  const bad = large((i) => (i === 7000 ? '  - { name: x, name: y }' : `  - { name: mr${i} }`));
  assert.throws(
    () => parseYaml(bad),
    (err: unknown) => err instanceof ConfigError && /not valid YAML/.test(String(err)),
  );
  const dup = large((i) => `  - { name: mr${i} }`, 12_000, 'mobileRouters: []\n');
  assert.throws(() => parseYaml(dup), /not valid YAML/);
});

test('anchors and aliases take the whole-document path', () => {
  const text = large((i) =>
    i === 0 ? '  - &first { name: mr0 }' : i === 1 ? '  - *first' : `  - { name: mr${i} }`,
  );
  const data = parseYaml(text) as { mobileRouters: { name: string }[] };
  assert.equal(data.mobileRouters[1]!.name, 'mr0');
});
