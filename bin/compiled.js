// The CLI as one JavaScript file built from src/ by esbuild, for the long-running home agent.
//
// Why: tsx's loader runs in its own thread with its own V8 isolate and keeps transformed copies of the
// sources; for `offlink ha` that is ~45 MiB of resident memory for the daemon's whole life
// (bench/profiles/ha-memory.md). The build is cached in node_modules/.cache/offlink and redone when any
// source file it was built from has changed (size or mtime), so a fresh clone, a pull or an edit needs no
// build step; it takes well under a second. When esbuild cannot be loaded or the cache cannot be written,
// `compiledCli` returns undefined and the caller runs the sources through tsx as before.
//
// `import.meta.url` in each source is replaced by that source's own URL, so files found relative to it
// (package.json, the store's worker script) are where they are in src/.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CACHE = join(REPO, 'node_modules', '.cache', 'offlink');
const ENTRY = join(REPO, 'src', 'cli', 'main.ts');

/** `file:` URL of an up-to-date build of src/cli/main.ts, or undefined (use tsx). */
export function compiledCli() {
  return compiled({ entry: ENTRY, out: cliBuildPath(REPO, CACHE), root: REPO });
}

/**
 * Where the build of checkout `repo` goes: one file per checkout. Two checkouts can share a cache
 * (a worktree whose node_modules is a link to another's); with one file between them, one checkout could
 * find its stamp current and then import the other's build, written over it meanwhile.
 */
export function cliBuildPath(repo, cache) {
  const id = createHash('sha256').update(resolve(repo)).digest('hex').slice(0, 12);
  return join(cache, `cli-${id}.mjs`);
}

/**
 * `file:` URL of `out`, an ESM bundle of `entry` (its packages left as imports), rebuilt when a file it
 * was built from (under `root`) changed; undefined when it cannot be built.
 */
export async function compiled({ entry, out, root }) {
  const stamp = `${out}.inputs.json`;
  if (upToDate(stamp, root)) return pathToFileURL(out).href;
  try {
    const esbuild = await import('esbuild');
    try {
      const result = await esbuild.build({
        entryPoints: [entry],
        absWorkingDir: root,
        bundle: true,
        platform: 'node',
        format: 'esm',
        target: 'node20',
        packages: 'external',
        write: false,
        metafile: true,
        logLevel: 'silent',
        plugins: [ownImportMetaUrl],
      });
      const inputs = {};
      for (const path of Object.keys(result.metafile.inputs)) {
        const s = statSync(resolve(root, path));
        inputs[path] = [s.size, s.mtimeMs];
      }
      mkdirSync(dirname(out), { recursive: true });
      // Written aside and renamed: another process may be starting from the cache meanwhile.
      writeAtomically(out, result.outputFiles[0].contents);
      writeAtomically(stamp, JSON.stringify(inputs));
      return pathToFileURL(out).href;
    } finally {
      await esbuild.stop(); // its service process would otherwise live as long as the daemon
    }
  } catch {
    return undefined;
  }
}

function writeAtomically(path, data) {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}

/** Whether the build's inputs are all unchanged since it was made. */
function upToDate(stamp, root) {
  try {
    const inputs = JSON.parse(readFileSync(stamp, 'utf8'));
    for (const [path, [size, mtimeMs]] of Object.entries(inputs)) {
      const s = statSync(resolve(root, path));
      if (s.size !== size || s.mtimeMs !== mtimeMs) return false;
    }
    return Object.keys(inputs).length > 0;
  } catch {
    return false;
  }
}

const ownImportMetaUrl = {
  name: 'own-import-meta-url',
  setup(build) {
    build.onLoad({ filter: /\.ts$/ }, (args) => {
      const text = readFileSync(args.path, 'utf8');
      const url = JSON.stringify(pathToFileURL(args.path).href);
      return { contents: text.replaceAll('import.meta.url', url), loader: 'ts' };
    });
  },
};
