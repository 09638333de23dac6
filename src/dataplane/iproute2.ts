// NetKernel through the system's tools: routes and rules as one `ip -force -batch -` process per apply,
// tc programs through `tc`, links and the forwarding database through `ip -j`/`bridge -j`, nftables
// through nftables.ts. Every command is an argv array (never a shell string); values are checked before
// they reach a command line. Tested against the real kernel in namespaces (test/kernel.test.ts).
import { OfflinkError } from '../errors.ts';
import { canonicalIPv6, isIPv4Text, parseAnyDestination, parseIPv4Destination } from '../protocol/address.ts';
import type { ProcessSpawner } from '../system/process.ts';
import type { CommandRunner } from '../system/runner.ts';
import { CommandError } from '../system/runner.ts';
import type { Family } from './family.ts';
import { checkInterfaceName } from './ifname.ts';
import {
  type AddressFlag,
  type AttachedProgram,
  type BridgeSpec,
  type Encap,
  type FdbEntry,
  type FdbEvent,
  type InstalledEncap,
  type InstalledRoute,
  type InstalledRule,
  type InterfaceAddress,
  KernelOpsError,
  type Link,
  type LinkKernel,
  type NetKernel,
  type NetOp,
  type NftOp,
  type NftTableState,
  opFamily,
  RT_PROTO,
  type Rule,
  type TableId,
  type TcProgram,
  type Watch,
} from './kernel.ts';
import { nftScript, parseNftTable } from './nftables.ts';

/** tc filter preference of offlink's programs (the signaling port, for recognisability). */
export const TC_PREF = '4191';

export interface Iproute2KernelComponents {
  runner: CommandRunner;
  /** Runs `bridge monitor fdb` for watchFdb; without one, watchFdb returns undefined. */
  spawner?: ProcessSpawner;
}

export interface Iproute2KernelOptions {
  /** How often to retry ops that failed for a lack of kernel memory (docs/dataplane.md). Default 12. */
  retries?: number;
  /** Injected for tests. */
  sleep?: (ms: number) => Promise<void>;
}

export class Iproute2Kernel implements NetKernel, LinkKernel {
  constructor(
    private readonly c: Iproute2KernelComponents,
    private readonly o: Iproute2KernelOptions = {},
  ) {}

  async rules(family: Family = 6): Promise<InstalledRule[]> {
    const { stdout } = await this.c.runner.run(['ip', '-j', `-${family}`, 'rule', 'show']);
    return stdout.trim() === '' ? [] : (JSON.parse(stdout) as JsonRule[]).map(ruleFromJson);
  }

  /**
   * Parsed from text, not `-j`: for `encap ip6` routes iproute2 6.1 prints the tunnel's `dst` as a second
   * "dst" key in the JSON object, which hides the route's own destination.
   */
  async routes(table: TableId | 'all', family: Family = 6): Promise<InstalledRoute[]> {
    const argv = ['ip', `-${family}`, 'route', 'show', 'table', String(table), 'proto', String(RT_PROTO)];
    const r = await this.c.runner.run(argv, { allowFailure: true });
    if (r.exitCode !== 0 && /table does not exist/.test(r.stderr)) return [];
    if (r.exitCode !== 0) throw new CommandError(argv, r.exitCode, r.stderr);
    return parseRoutes(r.stdout, table === 'all' ? 'main' : table, family);
  }

  /**
   * One `ip -force -batch -` process (a spawned `ip` costs ~2 ms; 200,000 routes in one batch take ~5 s).
   * With `-force`, ip goes on after a failing line and reports each failure on stderr as the message
   * followed by `Command failed -:<line>`. Lines that fail with ENOMEM are retried after a pause: seg6
   * routes allocate per-CPU memory atomically, and the kernel's atomic per-CPU pool runs dry during a
   * burst until its background refill catches up. A retried line runs after the lines that followed it,
   * so a batch must not hold two ops on the same object (the backends' diffs never do). IPv4 ops (RFC 5555
   * dual-stack networks) go to a second `ip -4` batch after the IPv6 one (a batch has one family); both run
   * even when the first has failures, which are reported together.
   */
  async apply(ops: readonly NetOp[]): Promise<{ retried: number }> {
    let retried = 0;
    const failures: KernelOpsError['failures'][number][] = [];
    for (const family of [6, 4] as const) {
      const mine = ops.filter((op) => opFamily(op) === family);
      if (mine.length === 0) continue;
      try {
        retried += (await this.applyFamily(mine, family)).retried;
      } catch (err) {
        if (!(err instanceof KernelOpsError)) throw err;
        failures.push(...err.failures);
      }
    }
    if (failures.length > 0) throw new KernelOpsError(failures);
    return { retried };
  }

  private async applyFamily(ops: readonly NetOp[], family: Family): Promise<{ retried: number }> {
    const lines = ops.map((op) => ({ op, args: batchLine(op), ignore: ignorable(op) }));
    const argv = [...bpffsPrefix(ops), 'ip', `-${family}`, '-force', '-batch', '-'];
    return retryTransient(
      lines,
      async (pending) => {
        const input = pending.map((l) => `${l.args.join(' ')}\n`).join('');
        const result = await this.c.runner.run(argv, { input, allowFailure: true });
        if (result.exitCode === 0) return [];
        const failures = parseBatchErrors(result.stderr);
        if (result.exitCode !== 1 || failures.length === 0)
          throw new CommandError(argv, result.exitCode, result.stderr);
        return failures;
      },
      this.o,
    );
  }

  async nft(ops: readonly NftOp[]): Promise<void> {
    if (ops.length === 0) return;
    await this.c.runner.run(['nft', '-f', '-'], { input: nftScript(ops) });
  }

  async nftTable(name: string): Promise<NftTableState | undefined> {
    const argv = ['nft', '-j', 'list', 'table', 'ip6', checkName(name)];
    const r = await this.c.runner.run(argv, { allowFailure: true });
    if (r.exitCode === 0) return parseNftTable(r.stdout);
    if (/No such file or directory/.test(r.stderr)) return undefined;
    throw new CommandError(argv, r.exitCode, r.stderr);
  }

  async attachProgram(p: TcProgram): Promise<void> {
    const dev = checkInterfaceName(p.dev);
    await this.c.runner.run(['tc', 'qdisc', 'replace', 'dev', dev, 'clsact']);
    await this.c.runner.run([
      ...envPrefix(p.bpffs),
      ...['tc', 'filter', 'replace', 'dev', dev, p.hook, 'pref', TC_PREF, 'handle', '1'],
      ...['bpf', 'da', 'obj', checkPath(p.object), 'sec', checkName(p.section)],
    ]);
  }

  async detachProgram(dev: string, hook: 'ingress' | 'egress'): Promise<void> {
    checkInterfaceName(dev);
    const del = await this.c.runner.run(['tc', 'filter', 'del', 'dev', dev, hook, 'pref', TC_PREF], {
      allowFailure: true,
    });
    if (del.exitCode !== 0) {
      if (/No such|Cannot find|not found|Invalid handle|Parent Qdisc/i.test(del.stderr)) return; // none of ours
      throw new OfflinkError('ERR_COMMAND', `tc filter del dev ${dev}: ${del.stderr.trim()}`);
    }
    const left = await Promise.all(
      (['ingress', 'egress'] as const).map((h) => this.filters(dev, h).catch(() => [] as JsonFilter[])),
    );
    if (left.every((f) => f.length === 0))
      await this.c.runner.run(['tc', 'qdisc', 'del', 'dev', dev, 'clsact'], { allowFailure: true });
  }

  async programs(dev: string, hook: 'ingress' | 'egress'): Promise<AttachedProgram[]> {
    const filters = await this.filters(checkInterfaceName(dev), hook).catch(() => [] as JsonFilter[]);
    const out: AttachedProgram[] = [];
    for (const f of filters) {
      const prog = f.options?.prog;
      if (f.kind === 'bpf' && prog?.id !== undefined) out.push({ id: prog.id, name: prog.name ?? '' });
    }
    return out;
  }

  async link(name: string): Promise<Link | undefined> {
    const argv = ['ip', '-j', 'link', 'show', 'dev', checkInterfaceName(name)];
    const r = await this.c.runner.run(argv, { allowFailure: true });
    if (r.exitCode !== 0 && /does not exist/.test(r.stderr)) return undefined;
    if (r.exitCode !== 0) throw new CommandError(argv, r.exitCode, r.stderr);
    return linksFromJson(r.stdout)[0];
  }

  async links(filter: { type: 'bridge' } | { master: string }): Promise<Link[]> {
    const select = 'type' in filter ? ['type', 'bridge'] : ['master', checkInterfaceName(filter.master)];
    const { stdout } = await this.c.runner.run(['ip', '-j', 'link', 'show', ...select]);
    return linksFromJson(stdout);
  }

  async fdb(bridge: string): Promise<FdbEntry[]> {
    const argv = ['bridge', '-j', 'fdb', 'show', 'br', checkInterfaceName(bridge)];
    const { stdout } = await this.c.runner.run(argv);
    return (JSON.parse(stdout || '[]') as JsonFdb[]).map((e) => ({
      mac: e.mac,
      dev: e.ifname,
      ...(e.master !== undefined ? { master: e.master } : {}),
      permanent: e.state === 'permanent',
      ...(e.vlan !== undefined ? { vlan: e.vlan } : {}),
    }));
  }

  watchFdb(onEvent: (event: FdbEvent) => void): Watch | undefined {
    const spawner = this.c.spawner;
    if (!spawner) return undefined;
    const child = spawner.spawn(['bridge', 'monitor', 'fdb'], {
      onStdoutLine: (line) => {
        const event = parseFdbLine(line);
        if (event) onEvent(event);
      },
    });
    return { stop: () => child.kill(), exited: child.exited };
  }

  async netnsInode(): Promise<string> {
    const { stdout } = await this.c.runner.run(['readlink', '/proc/self/ns/net']);
    const m = /^net:\[(\d+)\]$/.exec(stdout.trim());
    if (!m) throw new OfflinkError('ERR_DATAPLANE', `unexpected network namespace link ${stdout.trim()}`);
    return m[1]!;
  }

  async ensureBridge(spec: BridgeSpec): Promise<boolean> {
    const name = checkInterfaceName(spec.name);
    if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(spec.mac))
      throw new OfflinkError('ERR_CONFIG', `bad MAC ${spec.mac}`);
    const settings = ['address', spec.mac, 'mtu', String(spec.mtu), 'type', 'bridge'];
    const bridge = [...settings, 'forward_delay', '0', 'stp_state', '0'];
    const exists = (await this.link(name)) !== undefined;
    if (exists) await this.c.runner.run(['ip', 'link', 'set', 'dev', name, ...bridge]);
    else await this.c.runner.run(['ip', 'link', 'add', name, ...bridge]);
    // no kernel-made link-local: the gateway's link-local is the same on every host
    await this.c.runner.run(['ip', 'link', 'set', 'dev', name, 'addrgenmode', 'none']);
    return !exists;
  }

  async setUp(name: string): Promise<void> {
    await this.c.runner.run(['ip', 'link', 'set', 'dev', checkInterfaceName(name), 'up']);
  }

  async deleteLink(name: string): Promise<void> {
    const argv = ['ip', 'link', 'del', 'dev', checkInterfaceName(name)];
    const r = await this.c.runner.run(argv, { allowFailure: true });
    if (r.exitCode !== 0 && !/Cannot find device|does not exist/.test(r.stderr))
      throw new CommandError(argv, r.exitCode, r.stderr);
  }

  async addresses(dev: string, scope: 'global' | 'link'): Promise<InterfaceAddress[]> {
    const argv = ['ip', '-j', '-6', 'addr', 'show', 'dev', checkInterfaceName(dev), 'scope', scope];
    const r = await this.c.runner.run(argv, { allowFailure: true });
    if (r.exitCode !== 0 && /does not exist/.test(r.stderr)) return [];
    if (r.exitCode !== 0) throw new CommandError(argv, r.exitCode, r.stderr);
    return addressesFromJson(r.stdout);
  }

  async replaceAddress(dev: string, address: string, prefixLength: number): Promise<void> {
    // IPv4: a dual-stack network's gateway (RFC 5555); there is no DAD to skip.
    if (isIPv4Text(address)) {
      const v4 = parseIPv4Destination(`${address}/32`).address;
      await this.c.runner.run([
        'ip',
        '-4',
        'addr',
        'replace',
        `${v4}/${prefixLength}`,
        'dev',
        checkInterfaceName(dev),
      ]);
      return;
    }
    const cidr = `${canonicalIPv6(address)}/${prefixLength}`;
    await this.c.runner.run(['ip', '-6', 'addr', 'replace', cidr, 'dev', checkInterfaceName(dev), 'nodad']);
  }

  async deleteAddress(dev: string, address: string, prefixLength: number): Promise<void> {
    const argv = [
      'ip',
      '-6',
      'addr',
      'del',
      `${canonicalIPv6(address)}/${prefixLength}`,
      'dev',
      checkInterfaceName(dev),
    ];
    const r = await this.c.runner.run(argv, { allowFailure: true });
    if (
      r.exitCode !== 0 &&
      !/address not found|Cannot assign requested address|Cannot find device/.test(r.stderr)
    )
      throw new CommandError(argv, r.exitCode, r.stderr);
  }

  async flushNeighbours(dev: string): Promise<void> {
    const argv = ['ip', '-6', 'neigh', 'flush', 'dev', checkInterfaceName(dev)];
    const r = await this.c.runner.run(argv, { allowFailure: true });
    if (r.exitCode !== 0 && !/Cannot find device|does not exist/.test(r.stderr))
      throw new CommandError(argv, r.exitCode, r.stderr);
  }

  watchAddresses(onChange: () => void): Watch | undefined {
    const spawner = this.c.spawner;
    if (!spawner) return undefined;
    const child = spawner.spawn(['ip', '-6', 'monitor', 'address'], { onStdoutLine: () => onChange() });
    return { stop: () => child.kill(), exited: child.exited };
  }

  private async filters(dev: string, hook: 'ingress' | 'egress'): Promise<JsonFilter[]> {
    const { stdout } = await this.c.runner.run(['tc', '-j', 'filter', 'show', 'dev', dev, hook]);
    return stdout.trim() === '' ? [] : (JSON.parse(stdout) as JsonFilter[]);
  }
}

const transientError = /Cannot allocate memory|No buffer space available/;

/** Values that reach a command line must be one plain word (no spaces, quotes or comment marks). */
function checkWord(value: string, what: string): string {
  if (!/^[^\s"'\\#;{}]+$/.test(value))
    throw new OfflinkError('ERR_COMMAND', `unsafe ${what} ${JSON.stringify(value)}`);
  return value;
}
const checkPath = (p: string) => checkWord(p, 'path');
const checkName = (n: string) => checkWord(n, 'name');

function envPrefix(bpffs: string): string[] {
  return ['env', `TC_BPF_MNT=${checkPath(bpffs)}`];
}

/** `env TC_BPF_MNT=<bpffs>` when the batch loads the eBPF object (one daemon: one bpffs). */
function bpffsPrefix(ops: readonly NetOp[]): string[] {
  const mounts = new Set<string>();
  for (const op of ops)
    if (op.op === 'replace-route' && op.route.encap.type === 'bpf') mounts.add(op.route.encap.bpffs);
  if (mounts.size > 1)
    throw new OfflinkError('ERR_DATAPLANE', `one batch, several bpffs: ${[...mounts].join(', ')}`);
  const [bpffs] = mounts;
  return bpffs === undefined ? [] : envPrefix(bpffs);
}

const destination = (prefix: string) => {
  const text = parseAnyDestination(prefix).text;
  return text === '::/0' || text === '0.0.0.0/0' ? 'default' : text;
};
const table = (t: TableId | 'all') => {
  if (typeof t === 'number' && (!Number.isInteger(t) || t <= 0))
    throw new OfflinkError('ERR_CONFIG', `bad routing table ${t}`);
  return String(t);
};

function ruleArgs(rule: Rule, owner: 'kernel' | undefined): string[] {
  const args = ['pref', String(rule.priority)];
  if (rule.from !== undefined) args.push('from', parseAnyDestination(rule.from).text);
  if (rule.to !== undefined) args.push('to', parseAnyDestination(rule.to).text);
  if (rule.iif !== undefined) args.push('iif', checkInterfaceName(rule.iif));
  if (rule.tunnelled) args.push('ipproto', '41');
  args.push('lookup', table(rule.table));
  if (owner !== 'kernel') args.push('protocol', String(RT_PROTO));
  return args;
}

function encapArgs(encap: Encap): string[] {
  switch (encap.type) {
    case 'seg6':
      return ['encap', 'seg6', 'mode', 'encap.red', 'segs', canonicalIPv6(encap.segment)];
    case 'seg6local':
      return ['encap', 'seg6local', 'action', 'End.DX6', 'nh6', '::'];
    case 'bpf':
      return [
        ...['encap', 'bpf', 'xmit', 'obj', checkPath(encap.object), 'section', checkName(encap.section)],
        ...['headroom', String(encap.headroom)],
      ];
  }
}

/** The batch line (argv after `ip -6`, or `ip -4` for an IPv4 op: opFamily) of one op. */
export function batchLine(op: NetOp): string[] {
  const proto = ['proto', String(RT_PROTO)];
  switch (op.op) {
    case 'replace-route': {
      const r = op.route;
      const dev = checkInterfaceName(r.dev);
      return [
        'route',
        'replace',
        destination(r.dst),
        ...proto,
        ...encapArgs(r.encap),
        'dev',
        dev,
        'table',
        table(r.table),
      ];
    }
    case 'delete-route':
      return ['route', 'del', destination(op.dst), ...proto, 'table', table(op.table)];
    case 'flush-routes':
      return ['route', 'flush', 'table', table(op.table), ...proto];
    case 'add-rule':
      return ['rule', 'add', ...ruleArgs(op.rule, op.owner)];
    case 'delete-rule':
      return ['rule', 'del', ...ruleArgs(op.rule, op.owner)];
    case 'set-tunnel-source':
      return ['sr', 'tunsrc', 'set', canonicalIPv6(op.address)];
  }
}

/** Messages that mean an op's goal is already reached. */
function ignorable(op: NetOp): RegExp | undefined {
  if (op.op === 'add-rule') return /File exists/;
  if (op.op === 'delete-rule') return /No such file or directory|No such process/;
  if (op.op === 'delete-route') return /No such process/;
  return undefined;
}

/** A batch line that failed (1-based) and the kernel's message for it. */
export interface BatchFailure {
  line: number;
  message: string;
}

/** One op of a batch: `ignore` matches the messages that mean its goal is already reached. */
export interface BatchLine {
  op: NetOp;
  ignore?: RegExp | undefined;
}

/**
 * Run `lines` through `runBatch` (which returns the lines that failed) until none fails for a lack of
 * kernel memory, with a growing pause between rounds; any other failure, or running out of retries,
 * throws KernelOpsError naming the failed ops.
 */
export async function retryTransient<L extends BatchLine>(
  lines: readonly L[],
  runBatch: (pending: readonly L[]) => Promise<BatchFailure[]>,
  options: Iproute2KernelOptions = {},
): Promise<{ retried: number }> {
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  let pending = lines;
  let retried = 0;
  for (let attempt = 0; pending.length > 0; attempt++) {
    const failed: { line: L; message: string }[] = [];
    for (const f of await runBatch(pending)) {
      const line = pending[f.line - 1];
      if (line && !line.ignore?.test(f.message)) failed.push({ line, message: f.message });
    }
    if (failed.length === 0) break;
    const transient = failed.every((f) => transientError.test(f.message));
    if (!transient || attempt >= (options.retries ?? 12))
      throw new KernelOpsError(failed.map((f) => ({ op: f.line.op, message: f.message })));
    pending = failed.map((f) => f.line);
    retried += pending.length;
    await sleep(Math.min(5 * 2 ** attempt, 500));
  }
  return { retried };
}

/** Split `ip -force -batch` stderr into one failure per `Command failed -:<line>` marker. */
export function parseBatchErrors(stderr: string): BatchFailure[] {
  const failures: BatchFailure[] = [];
  let message: string[] = [];
  for (const text of stderr.split('\n')) {
    const m = /^Command failed .*:(\d+)$/.exec(text);
    if (m) {
      failures.push({ line: Number(m[1]), message: message.join('; ') });
      message = [];
    } else if (text.trim() !== '') {
      message.push(text.trim());
    }
  }
  return failures;
}

interface JsonRule {
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

function tableId(text: string | undefined): TableId {
  if (text === undefined || text === 'main') return 'main';
  if (text === 'local' || text === 'default') return text;
  const n = Number(text);
  if (!Number.isInteger(n)) throw new OfflinkError('ERR_DATAPLANE', `unknown routing table ${text}`);
  return n === 254 ? 'main' : n === 255 ? 'local' : n === 253 ? 'default' : n;
}

function side(addr: string | undefined, len: number | undefined): string | undefined {
  if (addr === undefined || addr === 'all') return undefined;
  return parseAnyDestination(`${addr}/${len ?? (addr.includes(':') ? 128 : 32)}`).text;
}

/** A rule of `ip -j -6 rule show` (or `-4`). */
export function ruleFromJson(j: JsonRule): InstalledRule {
  const from = side(j.src, j.srclen);
  const to = side(j.dst, j.dstlen);
  return {
    priority: j.priority,
    ...(from ? { from } : {}),
    ...(to ? { to } : {}),
    ...(j.iif ? { iif: j.iif } : {}),
    ...(j.ipproto === 'ipv6' || j.ipproto === '41' ? { tunnelled: true } : {}),
    table: tableId(j.table),
    ours: j.protocol === String(RT_PROTO),
  };
}

/** Lines of `ip -6 route show … proto 241` or `ip -4 …` (routes without a `table` word are in `defaultTable`). */
export function parseRoutes(text: string, defaultTable: TableId, family: Family = 6): InstalledRoute[] {
  const routes: InstalledRoute[] = [];
  for (const line of text.split('\n')) {
    const tokens = line.trim().split(/\s+/);
    let first = tokens.shift();
    if (first === undefined || first === '') continue;
    // `ip route show table all` may prefix a route type (unicast, local, ...); ours are all unicast
    if (first === 'unicast') first = tokens.shift() ?? '';
    const tableText = tokenAfter(tokens, 'table');
    const dev = tokenAfter(tokens, 'dev');
    const encap = encapOf(tokens);
    routes.push({
      dst: parseAnyDestination(first === 'default' && family === 4 ? '0.0.0.0/0' : first).text,
      table: tableText === undefined ? defaultTable : tableId(tableText),
      ...(dev !== undefined ? { dev } : {}),
      ...(encap ? { encap } : {}),
    });
  }
  return routes;
}

function encapOf(tokens: readonly string[]): InstalledEncap | undefined {
  const type = tokenAfter(tokens, 'encap');
  if (type === undefined) return undefined;
  if (type === 'seg6local') return { type, action: tokenAfter(tokens, 'action') ?? '' };
  if (type === 'bpf') return { type };
  if (type !== 'seg6') return { type: 'other' };
  const seg = tokenAfter(tokens, '[');
  if (tokenAfter(tokens, 'mode') !== 'encap.red' || tokenAfter(tokens, 'segs') !== '1' || seg === undefined)
    return { type: 'other' };
  return { type, segment: canonicalIPv6(seg) };
}

function tokenAfter(tokens: readonly string[], key: string): string | undefined {
  const i = tokens.indexOf(key);
  return i >= 0 ? tokens[i + 1] : undefined;
}

interface JsonFilter {
  kind?: string;
  options?: { prog?: { id?: number; name?: string } };
}

function linksFromJson(stdout: string): Link[] {
  return (JSON.parse(stdout || '[]') as { ifname: string; ifindex: number }[]).map((l) => ({
    name: l.ifname,
    index: l.ifindex,
  }));
}

interface JsonFdb {
  mac: string;
  ifname: string;
  master?: string;
  state?: string;
  vlan?: number;
}

/**
 * A line of `bridge monitor fdb`: `[Deleted ]<mac> dev <port> [vlan N] master <bridge> [flags]`. Only
 * dynamic entries of a port are guests: the ports' own addresses are `permanent`, the bridge's and
 * multicast ones `self`/no master; VLAN entries are not mirrored.
 */
export function parseFdbLine(line: string): FdbEvent | undefined {
  const t = line.trim().split(/\s+/);
  const deleted = t[0] === 'Deleted';
  if (deleted) t.shift();
  const mac = t[0];
  if (!mac || !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(mac)) return undefined;
  if (Number.parseInt(mac.slice(0, 2), 16) & 1) return undefined; // multicast
  const at = (k: string) => {
    const i = t.indexOf(k);
    return i > 0 ? t[i + 1] : undefined;
  };
  const dev = at('dev');
  const master = at('master');
  if (!dev || !master || dev === master || t.includes('permanent') || t.includes('vlan')) return undefined;
  return { deleted, mac, dev, master };
}

interface JsonAddress {
  family?: string;
  local?: string;
  prefixlen?: number;
  scope?: string;
  tentative?: boolean;
  deprecated?: boolean;
  dadfailed?: boolean;
  temporary?: boolean;
}

const FLAGS: readonly AddressFlag[] = ['tentative', 'deprecated', 'dadfailed', 'temporary'];

/** `ip -j -6 addr show`: every IPv6 address, oldest first (iproute2 lists the newest first). */
export function addressesFromJson(json: string): InterfaceAddress[] {
  const links = JSON.parse(json || '[]') as { addr_info?: JsonAddress[] }[];
  const out: InterfaceAddress[] = [];
  for (const a of links.flatMap((l) => l.addr_info ?? [])) {
    // iproute2 ends addr_info with an empty object
    if (!a.local || a.family !== 'inet6') continue;
    const scope = a.scope === 'global' || a.scope === 'link' || a.scope === 'host' ? a.scope : 'other';
    out.push({
      address: canonicalIPv6(a.local),
      prefixLength: a.prefixlen ?? 128,
      scope,
      flags: FLAGS.filter((f) => a[f] === true),
    });
  }
  return out.reverse();
}
