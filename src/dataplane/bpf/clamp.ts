// TCP MSS clamping for the eBPF backend (home agent and mobile router alike): the encapsulation runs at
// the route's output, after the forward hook, so one static rule per direction sees every SYN that
// enters or leaves the tunnel as the plain inner packet. No per-binding elements. With `headroom 40` on
// the tunnel routes the kernel also sends correct Packet Too Big messages (IPv4: Fragmentation Needed);
// clamping only spares new connections that round trip.
//
// IPv4 (RFC 5555 dual-stack networks) gets the same rules in `table ip <name>`, clamped to `mss + 20`:
// `mss` is the IPv6 MSS (inner MTU minus 40 + 20 bytes of headers) and an IPv4 header is 20 bytes shorter,
// so both families fill the same inner packet size.
import { checkInterfaceName } from '../ifname.ts';
import type { NftFamily, NftOp } from '../kernel.ts';

/** What an IPv6 MSS is for IPv4 (the same inner packet size). */
export const IPV4_MSS_EXTRA = 20;

/** The nftables changes that (re)create `table ip6 <name>` and `table ip <name>` clamping SYNs through `uplink`. */
export function clampTable(name: string, uplink: string, mss: number): NftOp[] {
  checkInterfaceName(uplink);
  const ops: NftOp[] = [
    { op: 'delete-table', name },
    { op: 'delete-table', name, family: 'ip' },
  ];
  if (mss <= 0) return ops;
  for (const [family, size] of [
    ['ip6', mss],
    ['ip', mss + IPV4_MSS_EXTRA],
  ] as [NftFamily, number][]) {
    const set = `tcp flags syn tcp option maxseg size > ${size} tcp option maxseg size set ${size}`;
    const rules = [{ statement: `oifname "${uplink}" ${set}` }, { statement: `iifname "${uplink}" ${set}` }];
    const chains = [{ name: 'clamp', hook: 'forward' as const, priority: 'mangle' as const, rules }];
    ops.push({
      op: 'define-table',
      table: { name, ...(family === 'ip' ? { family } : {}), sets: [], chains },
    });
  }
  return ops;
}

/** The ops that remove both clamping tables. */
export function clampGone(name: string): NftOp[] {
  return clampTable(name, 'lo', 0);
}
