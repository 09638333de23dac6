// TCP MSS clamping for the eBPF backend (home agent and mobile router alike): the encapsulation runs at
// the route's output, after the forward hook, so one static rule per direction sees every SYN that
// enters or leaves the tunnel as the plain inner packet. No per-binding elements. With `headroom 40` on
// the tunnel routes the kernel also sends correct Packet Too Big messages; clamping only spares new
// connections that round trip.
import { checkInterfaceName } from '../ifname.ts';
import type { NftOp } from '../kernel.ts';

/** The nftables changes that (re)create `table ip6 <name>` clamping SYNs through `uplink` to `mss`. */
export function clampTable(name: string, uplink: string, mss: number): NftOp[] {
  checkInterfaceName(uplink);
  const ops: NftOp[] = [{ op: 'delete-table', name }];
  if (mss <= 0) return ops;
  const set = `tcp flags syn tcp option maxseg size > ${mss} tcp option maxseg size set ${mss}`;
  const rules = [{ statement: `oifname "${uplink}" ${set}` }, { statement: `iifname "${uplink}" ${set}` }];
  ops.push({
    op: 'define-table',
    table: { name, sets: [], chains: [{ name: 'clamp', hook: 'forward', priority: 'mangle', rules }] },
  });
  return ops;
}
