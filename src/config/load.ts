// Reading what a config refers to: the config file itself (YAML) and key files, both relative to the
// config's own directory, each failure a ConfigError naming the file and the key.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { ConfigError } from '../errors.ts';
import { formatPath } from './errors.ts';
import type { hexKey } from './schema.ts';

function readText(path: string, key: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(key, `cannot read ${what}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
}

/** YAML text into plain data (an empty document is `{}`); duplicate keys are refused. */
export function parseYaml(text: string): unknown {
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0)
    throw new ConfigError('', `not valid YAML: ${doc.errors[0]!.message.split('\n')[0]}`);
  return doc.toJS() ?? {};
}

/** Read a config file and hand its text to `parse` with the file's directory as base for relative paths. */
export function loadConfigFile<T>(path: string, parse: (text: string, baseDir: string) => T): T {
  const text = readText(path, '', `config ${path}`);
  return parse(text, dirname(resolve(path)));
}

/**
 * The key of a `keySource`: inline, or read from `keyFile` (relative to `baseDir`), never both. `at` is
 * the path of the object holding them (`mobileRouters[2]`); `key` checks a key file's contents.
 */
export function resolveKey(
  source: { key?: Buffer | undefined; keyFile?: string | undefined },
  at: string,
  baseDir: string,
  key: ReturnType<typeof hexKey>,
): Buffer {
  const keyPath = formatPath(['key'], at);
  if (source.key !== undefined && source.keyFile !== undefined)
    throw new ConfigError(keyPath, 'give key or keyFile, not both');
  if (source.key !== undefined) return source.key;
  if (source.keyFile === undefined) throw new ConfigError(keyPath, 'required (or keyFile)');
  const filePath = formatPath(['keyFile'], at);
  const text = readText(resolve(baseDir, source.keyFile), filePath, source.keyFile);
  // A key file holds the key as hex (e.g. `openssl rand -hex 32 > mr1.key`); whitespace is ignored.
  const parsed = key.safeParse(text.replace(/\s+/g, ''));
  if (!parsed.success)
    throw new ConfigError(filePath, `${source.keyFile}: ${parsed.error.issues[0]!.message}`);
  return parsed.data;
}
