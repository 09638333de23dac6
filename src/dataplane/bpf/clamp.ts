// TCP MSS clamping for the eBPF backend (home agent and mobile router alike): the encapsulation runs at
// the route's output, after the forward hook, so one static rule per direction sees every SYN that
// enters or leaves the tunnel as the plain inner packet. No per-binding elements. With `headroom 40` on
// the tunnel routes the kernel also sends correct Packet Too Big messages; clamping only spares new
// connections that round trip.
import { checkInterfaceName } from '../ifname.ts';
import { deleteTableScript } from '../nft.ts';

/** The nftables script that (re)creates `table ip6 <name>` clamping SYNs through `uplink` to `mss`. */
export function clampTableScript(name: string, uplink: string, mss: number): string {
  checkInterfaceName(uplink);
  const lines = deleteTableScript(name).trimEnd().split('\n');
  if (mss > 0) {
    const set = `tcp flags syn tcp option maxseg size > ${mss} tcp option maxseg size set ${mss}`;
    lines.push(
      `table ip6 ${name} {`,
      '  chain clamp { type filter hook forward priority mangle; policy accept;',
      `    oifname "${uplink}" ${set}`,
      `    iifname "${uplink}" ${set}`,
      '  }',
      '}',
    );
  }
  return `${lines.join('\n')}\n`;
}
