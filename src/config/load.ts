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
  if (text.length >= LARGE_CONFIG) {
    const data = parseLongSequences(text);
    if (data !== undefined) return data;
  }
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0)
    throw new ConfigError('', `not valid YAML: ${doc.errors[0]!.message.split('\n')[0]}`);
  return doc.toJS() ?? {};
}

/** Configs this long may hold 100k-entry lists (a home agent's mobileRouters): ~15 MB at 100k. */
const LARGE_CONFIG = 1 << 20;
const ITEMS_PER_SLICE = 100;

/**
 * A large config whose top-level keys hold long block sequences, parsed a slice of items at a time. The
 * yaml package builds a node per scalar for the whole document: 15 MB of config (100k mobile routers)
 * peaked at ~1.1 GB and left the process's heap that large; slices of 100 items keep the garbage young
 * (peak ~0.35 GB; bench/profiles/ha-memory.md). Only plain layouts are sliced — anything unusual (anchors,
 * aliases, tags, several documents, an item indented less than the sequence) returns undefined and the
 * whole document is parsed as usual, as is any text a slice fails on, so errors read the same either way.
 */
function parseLongSequences(text: string): unknown {
  if (/[&*!%]|^(?:---|\.\.\.)/m.test(text)) return undefined;
  const lines = text.split('\n');
  const head: string[] = [];
  const sequences = new Map<string, string[][]>();
  for (let i = 0; i < lines.length; ) {
    const key = /^([A-Za-z_][A-Za-z0-9_-]*)[ \t]*:[ \t]*(?:#.*)?$/.exec(lines[i]!)?.[1];
    const block = key === undefined ? undefined : sequenceBlock(lines, i + 1);
    if (key === undefined || block === undefined || block.items.length <= ITEMS_PER_SLICE) {
      head.push(lines[i]!);
      i++;
      continue;
    }
    if (sequences.has(key)) return undefined;
    head.push(`${key}: []`);
    sequences.set(key, block.items);
    i = block.end;
  }
  if (sequences.size === 0) return undefined;
  const doc = parseDocument(head.join('\n'), { uniqueKeys: true });
  const data = doc.errors.length === 0 ? (doc.toJS() ?? {}) : undefined;
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return undefined;
  for (const [key, items] of sequences) {
    const out: unknown[] = [];
    for (let i = 0; i < items.length; i += ITEMS_PER_SLICE) {
      const slice = parseDocument(
        items
          .slice(i, i + ITEMS_PER_SLICE)
          .flat()
          .join('\n'),
        { uniqueKeys: true },
      );
      const part = slice.errors.length === 0 ? slice.toJS() : undefined;
      if (!Array.isArray(part)) return undefined;
      for (const item of part) out.push(item);
    }
    (data as Record<string, unknown>)[key] = out;
  }
  return data;
}

/**
 * The block sequence starting at line `from` (`- ` items at one indentation; blank and comment lines
 * belong to the item before them): its items as line groups, and the line after it. Undefined when the
 * lines there are not such a sequence.
 */
function sequenceBlock(
  lines: readonly string[],
  from: number,
): { items: string[][]; end: number } | undefined {
  let i = from;
  while (i < lines.length && /^\s*(?:#.*)?$/.test(lines[i]!)) i++;
  const indent = /^( *)-(?: |$)/.exec(lines[i] ?? '')?.[1];
  if (indent === undefined) return undefined;
  const items: string[][] = [];
  for (; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.startsWith(`${indent}- `) || line === `${indent}-`) items.push([line]);
    else if (/^\s*(?:#.*)?$/.test(line) || (line.startsWith(`${indent} `) && line.length > indent.length))
      items[items.length - 1]!.push(line);
    else if (/^\S/.test(line) && indent === '' && !line.startsWith('-')) break;
    else if (indent !== '' && !line.startsWith(indent)) {
      if (/^\S/.test(line)) break;
      return undefined;
    } else return undefined;
  }
  return { items, end: i };
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
