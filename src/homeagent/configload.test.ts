import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../errors.ts';
import { loadHomeAgent } from './config.ts';
import { loadHomeAgentApart } from './configload.ts';

// The command's own entry script: the worker thread runs it as `offlink ha` does
const ENTRY = fileURLToPath(new URL('../../bin/offlink.js', import.meta.url));
const EXAMPLE = fileURLToPath(new URL('../../examples/ha.yaml', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'offlink-configload-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function configWith(mrs: number): string {
  const head = readFileSync(EXAMPLE, 'utf8').split('\nmobileRouters:')[0]!;
  const list = Array.from(
    { length: mrs },
    (_, i) =>
      `  - { name: mr${i}, homeAddress: "2001:db8:ffff::${(0x1000 + i).toString(16)}", prefixes: ["2001:db8:${(0x1000 + i).toString(16)}::/64", "10.${i >> 8}.${i & 255}.0/24"], spi: ${1000 + i}, key: "${(i % 16).toString(16).repeat(64)}", algorithm: ${i % 2 ? 'hmac-sha1' : 'hmac-sha256'} }`,
  );
  const path = join(dir, `ha-${mrs}.yaml`);
  writeFileSync(path, `${head}\nmobileRouters:\n${list.join('\n')}\n`);
  return path;
}

describe('loadHomeAgentApart', () => {
  test('in a worker thread: the same settings and prefix table as loading here', async () => {
    const path = configWith(300);
    const here = loadHomeAgent(path);
    const apart = await loadHomeAgentApart(path, ENTRY);
    assert.deepEqual(apart.config, here.config);
    assert.equal(apart.table.size, 300);
    for (let i = 0; i < here.table.size; i++) {
      const [a, h] = [apart.table.at(i), here.table.at(i)];
      assert.deepEqual(
        { ...a, sa: { ...a.sa, key: [...a.sa.key] } },
        { ...h, sa: { ...h.sa, key: [...h.sa.key] } },
      );
    }
    assert.equal(apart.table.bySpi(1000 + 7)?.name, 'mr7');
    assert.equal(apart.table.byHomeAddress('2001:db8:ffff::1007')?.name, 'mr7');
    assert.equal(apart.table.bySpi(999), undefined);
    assert.deepEqual(apart.table.destinations(), here.table.destinations());
  });

  test('a bad config: the ConfigError with its key path, as when loading here', async () => {
    const path = join(dir, 'bad.yaml');
    writeFileSync(path, readFileSync(configWith(3), 'utf8').replace('spi: 1001', 'spi: 12'));
    const here = (() => {
      try {
        loadHomeAgent(path);
      } catch (err) {
        return err as ConfigError;
      }
      assert.fail('loading here accepted the bad config');
    })();
    await assert.rejects(loadHomeAgentApart(path, ENTRY), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.code, 'ERR_CONFIG');
      assert.equal(err.message, here.message);
      assert.equal(err.path, here.path);
      assert.match(err.path, /^mobileRouters\[1\]/);
      return true;
    });
  });

  test('a missing file: the same error code and message', async () => {
    const path = join(dir, 'absent.yaml');
    let here: { code?: string; message: string } | undefined;
    try {
      loadHomeAgent(path);
    } catch (err) {
      here = err as { code?: string; message: string };
    }
    assert.ok(here);
    await assert.rejects(loadHomeAgentApart(path, ENTRY), (err: Error & { code?: string }) => {
      assert.equal(err.code, here!.code);
      assert.equal(err.message, here!.message);
      return true;
    });
  });

  test('without an entry script it loads in this thread', async () => {
    const path = configWith(2);
    assert.equal((await loadHomeAgentApart(path, undefined)).table.size, 2);
  });
});
