// Fault injection for the reliability and security tests (test/reliability-*.test.ts,
// test/security-*.test.ts): nftables rules that lose chosen packets inside a namespace, the kernel's UDP
// error counters, and polling.
import type { NetnsLab } from './netns.ts';

/**
 * Drops the first `count` packets matching `match` (an nft expression, e.g. `udp dport 4191`) at `hook`
 * (`output`: what the namespace sends; `input`: what it receives; `forward`: what it routes) in namespace
 * `ns`, then lets everything through. The kernel counts: `limit rate 1/day burst <count> packets` matches
 * exactly the first `count` packets (checked on this kernel: burst 1 drops one, burst 3 three), and a
 * named counter says how many it has dropped so far.
 */
export class DropFirst {
  private constructor(
    private readonly lab: NetnsLab,
    private readonly ns: string,
    readonly table: string,
  ) {}

  static async install(
    lab: NetnsLab,
    ns: string,
    o: {
      hook: 'input' | 'output' | 'forward';
      match: string;
      count: number;
      /** What happens to them (default `drop`; e.g. `reject with tcp reset`). */
      verdict?: string;
    },
  ): Promise<DropFirst> {
    if (!(o.count >= 1)) throw new Error('DropFirst: count must be at least 1');
    const table = `tfault${Math.random().toString(36).slice(2, 7)}`;
    const script = `table inet ${table} {
  counter dropped {}
  chain c {
    type filter hook ${o.hook} priority -300; policy accept;
    ${o.match} limit rate 1/day burst ${o.count} packets counter name dropped ${o.verdict ?? 'drop'}
  }
}
`;
    await lab.exec(ns, ['nft', '-f', '-'], script);
    return new DropFirst(lab, ns, table);
  }

  /** Packets dropped so far. */
  async dropped(): Promise<number> {
    const { stdout } = await this.lab.exec(this.ns, [
      'nft',
      'list',
      'counter',
      'inet',
      this.table,
      'dropped',
    ]);
    return Number(/packets (\d+)/.exec(stdout)?.[1] ?? 0);
  }

  async remove(): Promise<void> {
    await this.lab.exec(this.ns, ['nft', 'delete', 'table', 'inet', this.table]).catch(() => {});
  }
}

/** Udp6 counters of a namespace's /proc/net/snmp6 (InDatagrams, InErrors, RcvbufErrors, …). */
export async function udp6Counters(lab: NetnsLab, ns: string): Promise<Record<string, number>> {
  const { stdout } = await lab.exec(ns, ['cat', '/proc/net/snmp6']);
  const out: Record<string, number> = {};
  for (const line of stdout.split('\n')) {
    const m = /^Udp6(\w+)\s+(\d+)/.exec(line);
    if (m) out[m[1]!] = Number(m[2]);
  }
  return out;
}

/** Polls `check` every `everyMs` until it returns a value other than undefined/false; throws after `timeoutMs`. */
export async function waitUntil<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  timeoutMs = 20_000,
  everyMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
