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
  const scanned = text.length >= LARGE_CONFIG ? scanSequences(text) : undefined;
  const head = scanned && parseHead(scanned);
  if (head !== undefined) {
    try {
      for (const [key, sequence] of scanned!.sequences) head[key] = [...sequence.items()].flat();
      return head;
    } catch (err) {
      if (!(err instanceof SliceFailed)) throw err;
    }
  }
  return parseWhole(text);
}

/**
 * YAML text whose top-level `key` may hold a long list (a home agent's 100k mobile routers): `consume` gets
 * the document with that list taken out (`data[key]` is `[]`; other keys as `parseYaml` gives them) and
 * its items separately, in order, a slice at a time. A large config's list is parsed one slice at a time
 * while `consume` walks it, so the whole list never exists as objects (bench/profiles/ha-memory.md);
 * otherwise the slices are cut from the whole document's list. A YAML error anywhere is reported before
 * any error `consume` throws, exactly as if the whole document had been parsed first: should a slice not
 * parse, the whole document is parsed and `consume` runs again on it.
 */
export function parseYamlList<T>(
  text: string,
  key: string,
  consume: (data: unknown, items: Iterable<readonly unknown[]>) => T,
): T {
  const scanned = text.length >= LARGE_CONFIG ? scanSequences(text) : undefined;
  const head = scanned && parseHead(scanned, key);
  if (head !== undefined) {
    const list = scanned!.sequences.get(key);
    try {
      return consume(head, list ? list.items() : []);
    } catch (err) {
      // A slice that does not parse, or an error found before a slice that would not: the whole document.
      if (!(err instanceof SliceFailed) && (list === undefined || list.restParses())) throw err;
    }
  }
  const data = parseWhole(text);
  if (!isMapping(data) || !Array.isArray(data[key])) return consume(data, []);
  const list: unknown[] = data[key];
  data[key] = [];
  return consume(data, slicesOf(list));
}

function* slicesOf(list: readonly unknown[]): Generator<readonly unknown[]> {
  for (let i = 0; i < list.length; i += ITEMS_PER_SLICE) yield list.slice(i, i + ITEMS_PER_SLICE);
}

function isMapping(data: unknown): data is Record<string, unknown> {
  return typeof data === 'object' && data !== null && !Array.isArray(data);
}

function parseWhole(text: string): unknown {
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0)
    throw new ConfigError('', `not valid YAML: ${doc.errors[0]!.message.split('\n')[0]}`);
  return doc.toJS() ?? {};
}

/** Configs this long may hold 100k-entry lists (a home agent's mobileRouters): ~15 MB at 100k. */
const LARGE_CONFIG = 1 << 20;
const ITEMS_PER_SLICE = 100;

/** A slice of a long sequence did not parse on its own: the whole document is parsed instead. */
class SliceFailed extends Error {}

/**
 * A long block sequence of a large config: its items are text ranges, parsed a slice of 100 at a time. The
 * yaml package builds a node per scalar for the whole document: 15 MB of config (100k mobile routers)
 * peaked at ~1.1 GB and left the process's heap that large (bench/profiles/ha-memory.md).
 */
class LongSequence {
  private parsed = 0;
  constructor(
    private readonly text: string,
    /** Offset of each item's first line, then of the line after the last item. */
    private readonly bounds: Uint32Array,
  ) {}

  get count(): number {
    return this.bounds.length - 1;
  }

  *items(): Generator<readonly unknown[]> {
    for (let i = 0; i < this.count; i += ITEMS_PER_SLICE) {
      const slice = this.parse(i);
      this.parsed = i + ITEMS_PER_SLICE;
      if (slice === undefined) throw new SliceFailed();
      yield slice;
    }
  }

  /** Whether the slices not yet handed out parse (consumed only to look for YAML errors). */
  restParses(): boolean {
    for (let i = this.parsed; i < this.count; i += ITEMS_PER_SLICE)
      if (this.parse(i) === undefined) return false;
    return true;
  }

  private parse(first: number): unknown[] | undefined {
    const end = this.bounds[Math.min(first + ITEMS_PER_SLICE, this.count)]!;
    const doc = parseDocument(this.text.slice(this.bounds[first]!, end), { uniqueKeys: true });
    const part = doc.errors.length === 0 ? doc.toJS() : undefined;
    return Array.isArray(part) ? part : undefined;
  }
}

interface Scanned {
  /** The text with each long sequence replaced by `key: []`. */
  head: string;
  sequences: Map<string, LongSequence>;
}

/**
 * The document's top-level keys that hold long block sequences (more than a slice of items). Only plain
 * layouts are sliced — anything unusual (anchors, aliases, tags, several documents, an item indented less
 * than the sequence) returns undefined and the whole document is parsed as usual, as is any text a slice
 * fails on, so errors read the same either way.
 */
function scanSequences(text: string): Scanned | undefined {
  if (/[&*!%]|^(?:---|\.\.\.)/m.test(text)) return undefined;
  const lines = new Lines(text);
  let head = '';
  let copied = 0; // text before this offset is in `head` or in a sequence
  const sequences = new Map<string, LongSequence>();
  while (!lines.done) {
    const at = lines.offset;
    const key = /^([A-Za-z_][A-Za-z0-9_-]*)[ \t]*:[ \t]*(?:#.*)?$/.exec(lines.next())?.[1];
    if (key === undefined) continue;
    const after = lines.offset;
    const bounds = sequenceBlock(lines);
    if (bounds === undefined || bounds.length - 1 <= ITEMS_PER_SLICE) {
      lines.seek(after); // its lines are scanned as part of the head
      continue;
    }
    if (sequences.has(key)) return undefined;
    head += `${text.slice(copied, at)}${key}: []\n`;
    copied = lines.offset;
    sequences.set(key, new LongSequence(text, bounds));
  }
  if (sequences.size === 0) return undefined;
  return { head: head + text.slice(copied), sequences };
}

/** The head of a scanned document as data, its long sequences but `lazy` filled in; undefined when it does
 * not parse, is not a mapping, or a sequence's slice does not parse. */
function parseHead(scanned: Scanned, lazy?: string): Record<string, unknown> | undefined {
  const doc = parseDocument(scanned.head, { uniqueKeys: true });
  const data = doc.errors.length === 0 ? (doc.toJS() ?? {}) : undefined;
  if (!isMapping(data)) return undefined;
  try {
    for (const [key, sequence] of scanned.sequences)
      if (key !== lazy) data[key] = [...sequence.items()].flat();
  } catch (err) {
    if (err instanceof SliceFailed) return undefined;
    throw err;
  }
  return data;
}

/** The text's lines (as `split('\n')` cuts them), one at a time, by offset. */
class Lines {
  offset = 0;
  constructor(private readonly text: string) {}

  get done(): boolean {
    return this.offset > this.text.length;
  }

  peek(): string {
    const nl = this.text.indexOf('\n', this.offset);
    return this.text.slice(this.offset, nl < 0 ? this.text.length : nl);
  }

  next(): string {
    const line = this.peek();
    this.offset += line.length + 1;
    return line;
  }

  seek(offset: number): void {
    this.offset = offset;
  }
}

const BLANK = /^\s*(?:#.*)?$/;

/**
 * The block sequence starting at the line `lines` is at (`- ` items at one indentation; blank and comment
 * lines belong to the item before them): the offset of each item, then of the line after the sequence,
 * where `lines` is left. Undefined when the lines there are not such a sequence.
 */
function sequenceBlock(lines: Lines): Uint32Array | undefined {
  while (!lines.done && BLANK.test(lines.peek())) lines.next();
  const indent = /^( *)-(?: |$)/.exec(lines.done ? '' : lines.peek())?.[1];
  if (indent === undefined) return undefined;
  const starts: number[] = [];
  for (; !lines.done; lines.next()) {
    const line = lines.peek();
    if (line.startsWith(`${indent}- `) || line === `${indent}-`) starts.push(lines.offset);
    else if (BLANK.test(line) || (line.startsWith(`${indent} `) && line.length > indent.length)) continue;
    else if (/^\S/.test(line) && indent === '' && !line.startsWith('-')) break;
    else if (indent !== '' && !line.startsWith(indent)) {
      if (/^\S/.test(line)) break;
      return undefined;
    } else return undefined;
  }
  starts.push(lines.offset);
  return Uint32Array.from(starts);
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
