import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { pathToFileURL } from 'node:url';
// @ts-expect-error: plain JavaScript next to the `offlink` entry point, no declarations
import { cliBuildPath, compiled } from '../../bin/compiled.js';

const dir = mkdtempSync(join(tmpdir(), 'offlink-compiled-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('the cached build: made once, remade when a source changes, import.meta.url is the source’s', async () => {
  const sub = join(dir, 'sub');
  mkdirSync(sub);
  writeFileSync(
    join(dir, 'main.ts'),
    "import { where } from './sub/b.ts';\nexport const value: string = where();\n",
  );
  const b = join(sub, 'b.ts');
  writeFileSync(b, "export function where(): string { return 'one ' + import.meta.url; }\n");
  const out = join(dir, 'cache', 'main.mjs');
  const build = (): Promise<string | undefined> => compiled({ entry: join(dir, 'main.ts'), out, root: dir });

  const url = await build();
  assert.equal(url, pathToFileURL(out).href);
  const first = await import(`${url}?1`);
  assert.equal(first.value, `one ${pathToFileURL(b).href}`);
  const made = statSync(out).mtimeMs;

  await build();
  assert.equal(statSync(out).mtimeMs, made, 'unchanged sources: not rebuilt');

  writeFileSync(b, "export function where(): string { return 'two ' + import.meta.url; }\n");
  utimesSync(b, new Date(), new Date(Date.now() + 5000));
  const again = await import(`${await build()}?2`);
  assert.equal(again.value, `two ${pathToFileURL(b).href}`);
});

test('a source that does not build gives undefined (the caller runs the sources through tsx)', async () => {
  writeFileSync(join(dir, 'bad.ts'), 'export const x = ;\n');
  assert.equal(
    await compiled({ entry: join(dir, 'bad.ts'), out: join(dir, 'cache', 'bad.mjs'), root: dir }),
    undefined,
  );
});

test('each checkout has its own build file in a shared cache', () => {
  const cache = join(dir, 'shared-cache');
  const a = cliBuildPath('/src/offlink', cache);
  assert.equal(cliBuildPath('/src/offlink/', cache), a, 'the same checkout, however spelled');
  assert.notEqual(cliBuildPath('/tmp/worktree', cache), a);
  assert.match(a, /^.*\/shared-cache\/cli-[0-9a-f]{12}\.mjs$/);
});
