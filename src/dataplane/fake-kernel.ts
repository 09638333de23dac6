// A CommandRunner that plays the kernel for unit tests (STYLE: tailscale's router test keeps a fake OS
// state and checks it after each config). It understands exactly the `ip` and `nft` commands this
// folder emits, keeps routes, rules, tunnel source, links and nftables elements, and prints them back
// the way iproute2 6.1 and nft 1.0.6 do (as far as the backends read them). Unknown commands fail loudly.
import { parseDestination } from '../protocol/address.ts';
import type { KernelRule } from './kernel.ts';
import { RecordingRunner } from './runner.ts';
import type { RunResult } from './types.ts';

interface NftTable {
  maps: Map<string, Map<string, string>>;
  sets: Map<string, Set<string>>;
  chains: Map<string, string[]>;
}

const ok = (stdout = ''): RunResult => ({ stdout, stderr: '', exitCode: 0 });
const fail = (stderr: string, exitCode = 1): RunResult => ({ stdout: '', stderr, exitCode });

function tableName(t: string): string {
  return t === '255' ? 'local' : t === '254' ? 'main' : t;
}

export class FakeKernel extends RecordingRunner {
  /** `${table} ${dst}` → the route as `ip route show` prints it after the destination. */
  routes = new Map<string, string>();
  rules: KernelRule[] = [
    { priority: 0, src: 'all', table: 'local' },
    { priority: 32766, src: 'all', table: 'main' },
    { priority: 32767, src: 'all', table: 'default' },
  ];
  tunsrc = '::';
  links = new Set<string>(['lo']);
  nft = new Map<string, NftTable>();
  /** Fail the next `ip -batch` this many lines into it (transient ENOMEM if `enomem`). */
  failBatch: { atLine: number; enomem?: boolean } | undefined;

  constructor() {
    super((argv, input) => this?.answer(argv, input));
  }

  /** Routes of one table as dst → text (for assertions). */
  table(t: string | number): Map<string, string> {
    const out = new Map<string, string>();
    for (const [k, v] of this.routes) if (k.startsWith(`${t} `)) out.set(k.slice(String(t).length + 1), v);
    return out;
  }

  private answer(argv: readonly string[], input?: string): RunResult {
    const a = argv.join(' ');
    if (a === 'ip -6 -force -batch -') return this.batch(input ?? '');
    if (a === 'ip -j -6 rule show') return ok(JSON.stringify(this.rules));
    if (a.startsWith('ip -6 route show table ')) return this.showRoutes(argv[5]!);
    if (a.startsWith('ip -j link show dev '))
      return this.links.has(argv[5]!) ? ok('[{}]') : fail(`Device "${argv[5]}" does not exist.`);
    if (a === 'nft -f -') return this.nftScript(input ?? '');
    if (a.startsWith('nft -j list table ip6 ')) return this.listTable(argv[5]!);
    return fail(`FakeKernel: unknown command ${a}`, 127);
  }

  private showRoutes(table: string): RunResult {
    const lines: string[] = [];
    for (const [k, v] of this.routes) {
      const [t, dst] = k.split(' ') as [string, string];
      if (table === 'all')
        lines.push(
          `${dst.endsWith('/128') ? dst.slice(0, -4) : dst} ${v}${t === 'main' ? '' : ` table ${t}`}`,
        );
      else if (t === table) lines.push(`${dst.endsWith('/128') ? dst.slice(0, -4) : dst} ${v}`);
    }
    if (
      table !== 'all' &&
      table !== 'main' &&
      lines.length === 0 &&
      ![...this.routes.keys()].some((k) => k.startsWith(`${table} `))
    ) {
      return fail('Error: ipv6: FIB table does not exist.\nDump terminated', 2);
    }
    return ok(lines.map((l) => `${l}\n`).join(''));
  }

  private batch(input: string): RunResult {
    const errors: string[] = [];
    const lines = input.split('\n').filter((l) => l !== '');
    lines.forEach((line, i) => {
      const failAt = this.failBatch;
      if (failAt && failAt.atLine === i + 1) {
        this.failBatch = undefined;
        errors.push(
          failAt.enomem ? 'RTNETLINK answers: Cannot allocate memory' : 'RTNETLINK answers: Invalid argument',
        );
        errors.push(`Command failed -:${i + 1}`);
        return;
      }
      const err = this.ipCommand(line.split(' '));
      if (err) errors.push(err, `Command failed -:${i + 1}`);
    });
    return errors.length === 0 ? ok() : fail(`${errors.join('\n')}\n`);
  }

  private ipCommand(w: string[]): string | undefined {
    const [obj, verb] = w;
    const after = (key: string) => {
      const i = w.indexOf(key, 2);
      return i >= 0 ? w[i + 1] : undefined;
    };
    if (obj === 'route') {
      const table = after('table') ?? 'main';
      if (verb === 'flush') {
        for (const k of [...this.routes.keys()])
          if (table === 'all' || k.startsWith(`${table} `)) this.routes.delete(k);
        return undefined;
      }
      const dst = parseDestination(w[2]!).text;
      const key = `${table} ${w[2] === 'default' ? 'default' : dst}`;
      if (verb === 'del') return this.routes.delete(key) ? undefined : 'RTNETLINK answers: No such process';
      if (verb !== 'replace') return `unknown route verb ${verb}`;
      this.routes.set(key, routeText(w.slice(3)));
      return undefined;
    }
    if (obj === 'rule') {
      const rule = ruleOf(w.slice(2));
      const same = (r: KernelRule) => JSON.stringify(r) === JSON.stringify(rule);
      if (verb === 'add') {
        if (this.rules.some(same)) return 'RTNETLINK answers: File exists';
        this.rules.push(rule);
        this.rules.sort((x, y) => x.priority - y.priority);
        return undefined;
      }
      const i = this.rules.findIndex((r) => matches(r, rule));
      if (i < 0) return 'RTNETLINK answers: No such file or directory';
      this.rules.splice(i, 1);
      return undefined;
    }
    if (obj === 'sr' && verb === 'tunsrc' && w[2] === 'set') {
      this.tunsrc = w[3]!;
      return undefined;
    }
    if (obj === 'link') {
      const name = verb === 'add' ? after('name')! : w[2]!;
      if (verb === 'add') {
        if (this.links.has(name)) return 'RTNETLINK answers: File exists';
        this.links.add(name);
        return undefined;
      }
      if (verb === 'del') return this.links.delete(name) ? undefined : `Cannot find device "${name}"`;
      return this.links.has(name) ? undefined : `Cannot find device "${name}"`;
    }
    return `unknown ip command ${w.join(' ')}`;
  }

  private nftScript(script: string): RunResult {
    const next = new Map([...this.nft].map(([k, t]) => [k, cloneTable(t)]));
    const lines = script.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!.trim();
      if (line === '') continue;
      const block = /^table ip6 (\S+)( \{)?$/.exec(line);
      if (block) {
        const t = next.get(block[1]!) ?? { maps: new Map(), sets: new Map(), chains: new Map() };
        next.set(block[1]!, t);
        while (block[2] && lines[++i]!.trim() !== '}') {
          const d = /^(map|set|chain) (\S+) \{/.exec(lines[i]!.trim());
          if (!d) return fail(`FakeKernel: bad table body line ${lines[i]}`);
          if (d[1] === 'map' && !t.maps.has(d[2]!)) t.maps.set(d[2]!, new Map());
          if (d[1] === 'set' && !t.sets.has(d[2]!)) t.sets.set(d[2]!, new Set());
          if (d[1] === 'chain' && !t.chains.has(d[2]!)) t.chains.set(d[2]!, []);
        }
        continue;
      }
      const m =
        /^(delete table|flush chain|add rule|add element|delete element|delete set) ip6 (\S+) ?(\S+)? ?(.*)$/.exec(
          line,
        );
      const t = m ? next.get(m[2]!) : undefined;
      if (!m || !t) return fail(`Error: No such file or directory\n${line}`);
      const [, op, name, obj, rest] = m as unknown as [string, string, string, string, string];
      if (op === 'delete table') next.delete(name);
      else if (op === 'flush chain' || op === 'add rule') {
        const chain = t.chains.get(obj);
        if (!chain) return fail(`Error: No such file or directory\n${line}`);
        if (op === 'flush chain') chain.length = 0;
        else chain.push(rest);
      } else if (op === 'delete set') {
        if (!t.sets.delete(obj)) return fail(`Error: No such file or directory\n${line}`);
      } else {
        const elems = rest.replace(/^\{ | \}$/g, '').split(', ');
        const map = t.maps.get(obj);
        const set = t.sets.get(obj);
        for (const e of elems) {
          if (map) {
            const [k, v] = e.split(' : ') as [string, string | undefined];
            const have = map.get(k);
            if (op === 'add element' && have !== undefined && have !== v)
              return fail(`Error: Could not process rule: File exists\n${line}`);
            if (op === 'delete element' && have === undefined)
              return fail(`Error: Could not process rule: No such file or directory\n${line}`);
            if (op === 'add element') map.set(k, v!);
            else map.delete(k);
          } else if (set) {
            if (op === 'delete element' && !set.has(e))
              return fail(`Error: Could not process rule: No such file or directory\n${line}`);
            if (op === 'add element') set.add(e);
            else set.delete(e);
          } else return fail(`Error: No such file or directory\n${line}`);
        }
      }
    }
    this.nft = next;
    return ok();
  }

  private listTable(name: string): RunResult {
    const t = this.nft.get(name);
    if (!t) return fail(`Error: No such file or directory\nlist table ip6 ${name}`);
    const items: unknown[] = [{ metainfo: { version: '1.0.6' } }, { table: { family: 'ip6', name } }];
    for (const [n, m] of t.maps)
      items.push({ map: { name: n, table: name, elem: [...m].map(([k, v]) => [k, Number(v)]) } });
    for (const [n, s] of t.sets) {
      const elem = [...s].map((e) =>
        e.includes(' . ') ? { concat: e.split(' . ').map((x, i) => (i === 1 ? Number(x) : x)) } : e,
      );
      items.push({ set: { name: n, table: name, ...(elem.length ? { elem } : {}) } });
    }
    for (const [chain, rules] of t.chains) {
      for (const r of rules) {
        const comment = /comment "([^"]+)"/.exec(r)?.[1];
        items.push({
          rule: {
            chain,
            ...(comment ? { comment } : {}),
            expr: r.includes('counter') ? [{ counter: { packets: 0, bytes: 0 } }] : [],
          },
        });
      }
    }
    return ok(JSON.stringify({ nftables: items }));
  }
}

function cloneTable(t: NftTable): NftTable {
  return {
    maps: new Map([...t.maps].map(([k, v]) => [k, new Map(v)])),
    sets: new Map([...t.sets].map(([k, v]) => [k, new Set(v)])),
    chains: new Map([...t.chains].map(([k, v]) => [k, [...v]])),
  };
}

/** `route replace` arguments after the destination → how `ip route show proto 241` prints the route. */
function routeText(w: string[]): string {
  const out: string[] = [];
  for (let i = 0; i < w.length; i++) {
    const k = w[i]!;
    if (k === 'proto' || k === 'table') i++;
    else if (k === 'segs') out.push('segs', '1', '[', w[++i]!, ']');
    else if (k === 'encap' && w[i + 1] === 'ip6') {
      const get = (key: string) => w[w.indexOf(key, i) + 1]!;
      out.push(
        'encap',
        'ip6',
        'id',
        '0',
        'src',
        w.includes('src') ? get('src') : '::',
        'dst',
        get('dst'),
        'hoplimit',
        '0',
        'tc',
        '0',
      );
      i = w.indexOf('dev') - 1;
    } else out.push(k);
  }
  return [...out, 'metric', '1024', 'pref', 'medium'].join(' ');
}

function ruleOf(w: string[]): KernelRule {
  const r: Record<string, unknown> = {};
  for (let i = 0; i < w.length; i += 2) {
    const [k, v] = [w[i]!, w[i + 1]!];
    if (k === 'pref') r['priority'] = Number(v);
    else if (k === 'from' || k === 'to') {
      const p = parseDestination(v);
      r[k === 'from' ? 'src' : 'dst'] = p.address;
      if (p.length !== 128) r[k === 'from' ? 'srclen' : 'dstlen'] = p.length;
    } else if (k === 'iif') r['iif'] = v;
    else if (k === 'ipproto') r['ipproto'] = v === '41' ? 'ipv6' : v;
    else if (k === 'lookup') r['table'] = tableName(v);
    else if (k === 'protocol') r['protocol'] = v;
  }
  if (r['src'] === undefined) r['src'] = 'all';
  const order = ['priority', 'src', 'srclen', 'dst', 'dstlen', 'iif', 'ipproto', 'table', 'protocol'];
  return Object.fromEntries(
    order.filter((k) => r[k] !== undefined).map((k) => [k, r[k]]),
  ) as unknown as KernelRule;
}

/** `ip rule del` matches on the selectors it was given. */
function matches(have: KernelRule, want: KernelRule): boolean {
  return Object.entries(want).every(([k, v]) => (have as unknown as Record<string, unknown>)[k] === v);
}
