// Reading and writing policy rules and routes, shared by the backends. Everything offlink installs carries
// the routing protocol number RT_PROTO, so reconcile and flush recognise their own routes and rules and
// never touch anyone else's.
import { parseDestination } from '../protocol/address.ts';
import { CommandError, type IpBatch } from './runner.ts';
import type { CommandRunner } from './types.ts';

/** `proto 241` on every route and rule offlink installs (not in /etc/iproute2/rt_protos: free for local use). */
export const RT_PROTO = '241';

/** One rule as `ip -j -6 rule show` prints it. */
export interface KernelRule {
  priority: number;
  src?: string;
  srclen?: number;
  dst?: string;
  dstlen?: number;
  iif?: string;
  ipproto?: string;
  table?: string;
  protocol?: string;
}

/** A rule offlink wants. `from`/`to` are prefixes or addresses. */
export interface RuleSpec {
  priority: number;
  from?: string;
  to?: string;
  iif?: string;
  /** Only IPv6-in-IPv6 packets (protocol 41, RFC 2473). */
  tunnelled?: boolean;
  table: string | number;
}

export async function readRules(runner: CommandRunner): Promise<KernelRule[]> {
  const { stdout } = await runner.run(['ip', '-j', '-6', 'rule', 'show']);
  return stdout.trim() === '' ? [] : (JSON.parse(stdout) as KernelRule[]);
}

export function ruleArgs(spec: RuleSpec): string[] {
  const args = ['pref', String(spec.priority)];
  if (spec.from !== undefined) args.push('from', parseDestination(spec.from).text);
  if (spec.to !== undefined) args.push('to', parseDestination(spec.to).text);
  if (spec.iif !== undefined) args.push('iif', spec.iif);
  if (spec.tunnelled) args.push('ipproto', '41');
  args.push('lookup', String(spec.table), 'protocol', RT_PROTO);
  return args;
}

function side(addr: string | undefined, len: number | undefined): string | undefined {
  if (addr === undefined || addr === 'all') return undefined;
  return parseDestination(`${addr}/${len ?? 128}`).text;
}

/** The kernel rule as a RuleSpec (to compare, or to delete it). */
export function ruleSpecOf(rule: KernelRule): RuleSpec {
  const from = side(rule.src, rule.srclen);
  const to = side(rule.dst, rule.dstlen);
  return {
    priority: rule.priority,
    ...(from ? { from } : {}),
    ...(to ? { to } : {}),
    ...(rule.iif ? { iif: rule.iif } : {}),
    ...(rule.ipproto === 'ipv6' || rule.ipproto === '41' ? { tunnelled: true } : {}),
    table: rule.table ?? 'main',
  };
}

export function sameRule(a: RuleSpec, b: RuleSpec): boolean {
  return ruleArgs(a).join(' ') === ruleArgs(b).join(' ');
}

export function isOurs(rule: KernelRule): boolean {
  return rule.protocol === RT_PROTO;
}

/** Add the wanted rules that are missing, and delete our rules within `scope` that are not wanted. */
export function syncRules(
  batch: IpBatch,
  installed: readonly KernelRule[],
  wanted: readonly RuleSpec[],
  scope: (rule: KernelRule) => boolean,
): void {
  const have = installed.filter(isOurs).map((r) => ({ rule: r, spec: ruleSpecOf(r) }));
  for (const { rule, spec } of have) {
    if (scope(rule) && !wanted.some((w) => sameRule(w, spec)))
      batch.add(['rule', 'del', ...ruleArgs(spec)], noSuchRule);
  }
  for (const w of wanted) {
    if (!have.some((h) => sameRule(w, h.spec))) batch.add(['rule', 'add', ...ruleArgs(w)], /File exists/);
  }
}

const noSuchRule = /No such file or directory|No such process/;

/**
 * docs/dataplane.md: decapsulation rules (pref 10) must run before local delivery, so the `lookup local` rule
 * moves from pref 0 to pref 1000 (ours, so that flush can move it back).
 */
export function orderLocalRule(batch: IpBatch, installed: readonly KernelRule[]): void {
  const local = installed.filter((r) => r.table === 'local');
  if (!local.some((r) => r.priority === 1000))
    batch.add(['rule', 'add', ...ruleArgs({ priority: 1000, table: 'local' })], /File exists/);
  if (local.some((r) => r.priority === 0))
    batch.add(['rule', 'del', 'pref', '0', 'lookup', 'local'], noSuchRule);
}

/** Undo orderLocalRule: `lookup local` back at pref 0, and our pref-1000 copy gone. */
export function restoreLocalRule(batch: IpBatch, installed: readonly KernelRule[]): void {
  const local = installed.filter((r) => r.table === 'local');
  if (!local.some((r) => r.priority === 0))
    batch.add(['rule', 'add', 'pref', '0', 'lookup', 'local'], /File exists/);
  for (const r of local) {
    if (r.priority === 1000 && isOurs(r)) batch.add(['rule', 'del', ...ruleArgs(ruleSpecOf(r))], noSuchRule);
  }
}

/** One line of `ip -6 route show`: destination (canonical prefix text) and the remaining tokens. */
export interface KernelRoute {
  dst: string;
  tokens: string[];
  table?: string;
}

/**
 * Routes with our protocol in `table` ('main', a number or 'all'). Parsed from text, not `-j`: for
 * `encap ip6` routes iproute2 6.1 prints the tunnel's `dst` as a second "dst" key in the JSON object,
 * which hides the route's own destination.
 */
export async function readRoutes(runner: CommandRunner, table: string | number): Promise<KernelRoute[]> {
  const argv = ['ip', '-6', 'route', 'show', 'table', String(table), 'proto', RT_PROTO];
  const r = await runner.run(argv, { allowFailure: true });
  if (r.exitCode !== 0 && /table does not exist/.test(r.stderr)) return [];
  if (r.exitCode !== 0) throw new CommandError(argv, r.exitCode, r.stderr);
  return parseRoutes(r.stdout);
}

export function parseRoutes(text: string): KernelRoute[] {
  const routes: KernelRoute[] = [];
  for (const line of text.split('\n')) {
    const tokens = line.trim().split(/\s+/);
    if (tokens[0] === undefined || tokens[0] === '') continue;
    let first = tokens.shift()!;
    // `ip route show table all` may prefix a route type (unicast, local, ...); ours are all unicast
    if (first === 'unicast') first = tokens.shift() ?? '';
    const t = tokens.indexOf('table');
    routes.push({ dst: parseDestination(first).text, tokens, ...(t >= 0 ? { table: tokens[t + 1]! } : {}) });
  }
  return routes;
}

/** The token after `key` (first occurrence after `from`), e.g. value(tokens, 'dev'). */
export function tokenAfter(tokens: readonly string[], key: string, from = 0): string | undefined {
  const i = tokens.indexOf(key, from);
  return i >= 0 ? tokens[i + 1] : undefined;
}
