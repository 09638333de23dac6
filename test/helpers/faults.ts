// Fault injection for the reliability and security tests (test/reliability-*.test.ts,
// test/security-*.test.ts): nftables rules that lose chosen packets inside a namespace, the kernel's UDP
// error counters, packet capture (an attacker on the path), and polling.
import { readFileSync } from 'node:fs';
import { formatIPv6 } from '../../src/protocol/address.ts';
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

export interface CapturedDatagram {
  /** Outer IPv6 source and destination, and the UDP ports. */
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
  payload: Buffer;
}

/**
 * What an attacker on the path records: `dumpcap` on `iface` in namespace `ns` with a capture filter,
 * until `count` packets. `datagrams()` waits for them and returns the UDP payloads (Ethernet, IPv6, UDP).
 */
export async function captureUdp(
  lab: NetnsLab,
  ns: string,
  o: { iface: string; filter: string; count: number; file: string },
): Promise<{ datagrams(timeoutMs?: number): Promise<CapturedDatagram[]> }> {
  const child = lab.spawn(ns, [
    'dumpcap',
    '-q',
    '-i',
    o.iface,
    '-f',
    o.filter,
    '-c',
    String(o.count),
    '-P',
    '-w',
    o.file,
  ]);
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await waitUntil(
    `dumpcap on ${o.iface}`,
    async () => /Capturing on/.test(stderr) || child.exitCode !== null,
    10_000,
  );
  if (child.exitCode !== null) throw new Error(`dumpcap exited: ${stderr}`);
  return {
    async datagrams(timeoutMs = 20_000) {
      const t = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
      const code = await exited;
      clearTimeout(t);
      if (code !== 0) throw new Error(`dumpcap exited with ${code}: ${stderr}`);
      return parsePcap(readFileSync(o.file));
    },
  };
}

/** Classic pcap (Ethernet link type) → UDP-over-IPv6 datagrams. */
function parsePcap(buf: Buffer): CapturedDatagram[] {
  const le = buf.readUInt32LE(0) === 0xa1b2c3d4;
  const u32 = (at: number) => (le ? buf.readUInt32LE(at) : buf.readUInt32BE(at));
  const out: CapturedDatagram[] = [];
  for (let at = 24; at + 16 <= buf.length; ) {
    const caplen = u32(at + 8);
    const frame = buf.subarray(at + 16, at + 16 + caplen);
    at += 16 + caplen;
    if (frame.readUInt16BE(12) !== 0x86dd || frame[14 + 6] !== 17) continue;
    const ip = frame.subarray(14);
    out.push({
      src: formatIPv6(ip.subarray(8, 24)),
      dst: formatIPv6(ip.subarray(24, 40)),
      srcPort: ip.readUInt16BE(40),
      dstPort: ip.readUInt16BE(42),
      payload: Buffer.from(ip.subarray(48, 40 + ip.readUInt16BE(4))),
    });
  }
  return out;
}

/** An IPv6 address as 32 hex digits (nft compares raw payload with `0x` + this). */
export function hexAddress(addr: string): string {
  const [head, tail = ''] = addr.split('::');
  const h = head!.split(':').filter(Boolean);
  const t = tail.split(':').filter(Boolean);
  return [...h, ...Array(8 - h.length - t.length).fill('0'), ...t].map((g) => g.padStart(4, '0')).join('');
}
