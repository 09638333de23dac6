import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDocument } from 'yaml';
import { ConfigError } from '../errors.ts';
import { parseYaml, parseYamlList } from './load.ts';

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

test('parseYamlList: a large list comes in slices, the rest of the document without it', () => {
  const text = large((i) => `  - { name: mr${i} }`, 30_000, 'peers:\n  a: http://x\n');
  let slices = 0;
  const items: unknown[] = [];
  const data = parseYamlList(text, 'mobileRouters', (data, list) => {
    for (const slice of list) {
      assert.ok(slice.length <= 100);
      slices++;
      items.push(...slice);
    }
    return data;
  });
  const expected = whole(text) as { mobileRouters: unknown[] };
  assert.deepEqual(items, expected.mobileRouters);
  assert.deepEqual(data, { ...expected, mobileRouters: [] });
  assert.equal(slices, 300);
});

test('parseYamlList: a small document is sliced from the whole list; a list that is not one stays', () => {
  const seen: unknown[][] = [];
  parseYamlList('a: 1\nlist:\n  - x\n  - y\n', 'list', (data, list) => {
    assert.deepEqual(data, { a: 1, list: [] });
    for (const slice of list) seen.push([...slice]);
  });
  assert.deepEqual(seen, [['x', 'y']]);
  parseYamlList('list: text\n', 'list', (data, list) => {
    assert.deepEqual(data, { list: 'text' });
    assert.deepEqual([...list], []);
  });
});

test('parseYamlList: a YAML error after the slice the consumer failed on is reported first', () => {
  const bad = large((i) => (i === 25_000 ? '  - { name: x, name: y }' : `  - { name: mr${i} }`), 30_000);
  const failEarly = (_: unknown, list: Iterable<readonly unknown[]>) => {
    for (const _slice of list) throw new ConfigError('mobileRouters[0]', 'consumer');
  };
  assert.throws(() => parseYamlList(bad, 'mobileRouters', failEarly), /not valid YAML/);
  const good = large((i) => `  - { name: mr${i} }`, 30_000);
  assert.throws(() => parseYamlList(good, 'mobileRouters', failEarly), /consumer/);
});
