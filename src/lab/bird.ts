// BGP anycast of the home agents' shared address (issue 16; docs/homeagent.md), as `offlink lab --home-agents 2`
// and the HA cluster rig (test/helpers/ha-cluster-lab.ts) run it: BIRD 2 in the router's namespace imports
// from each HA's BIRD and installs the best route in the router's kernel; each HA's BIRD announces the HA
// address and the home prefixes while the HA's tun device (homeAgent.anycast.device, held by the `offlink
// ha` process) is up. IPv4 prefixes (a dual-stack lab) go over a second session on the IPv4 link.
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnInNamespace } from './netns.ts';

/** One HA's BGP session with the router: each side's address on their link (and on the IPv4 link). */
export interface BgpPeer {
  name: string;
  asn: number;
  /** Distinct per speaker (an IPv4 address in form). */
  routerId: string;
  /** The HA's address on its link to the router, and the router's. */
  address: string;
  router: string;
  /** Dual-stack: the same over IPv4. */
  address4?: string;
  router4?: string;
}

export const ROUTER_ASN = 65000;

/**
 * Quick sessions for a lab: the first connection attempt 1 s after start and a retry every 2 s (BIRD's
 * defaults, 5 s and 120 s, would leave a lab without routes for minutes when one BIRD starts late).
 */
const TIMERS = '  connect delay time 1;\n  connect retry time 2;\n  hold time 9;';

/** The router's BIRD: a session per HA (two with IPv4), every imported route into the kernel. */
export function routerBirdConf(peers: readonly BgpPeer[]): string {
  const ipv4 = peers.some((p) => p.address4 && p.router4);
  const sessions = peers.flatMap((p) => [
    `protocol bgp ${p.name} {
  local ${p.router} as ${ROUTER_ASN};
  neighbor ${p.address} as ${p.asn};
${TIMERS}
  ipv6 { import all; export none; };
}`,
    ...(p.address4 && p.router4
      ? [
          `protocol bgp ${p.name}_v4 {
  local ${p.router4} as ${ROUTER_ASN};
  neighbor ${p.address4} as ${p.asn};
${TIMERS}
  ipv4 { import all; export none; };
}`,
        ]
      : []),
  ]);
  return `log stderr all;
router id 10.255.0.254;
protocol device { }
protocol kernel { ipv6 { import none; export all; }; }
${ipv4 ? 'protocol kernel { ipv4 { import none; export all; }; }\n' : ''}${sessions.join('\n')}
`;
}

/**
 * An HA host's BIRD: `prefixes` (the HA address /128, the home prefix, the mobile networks' prefixes) and
 * `prefixes4` while `device` is up, to its router.
 */
export function haBirdConf(
  peer: BgpPeer,
  options: { device: string; prefixes: readonly string[]; prefixes4?: readonly string[] },
): string {
  const routes = (ps: readonly string[]) => ps.map((p) => `  route ${p} via "${options.device}";`).join('\n');
  const v4 = (options.prefixes4?.length ?? 0) > 0 && peer.address4 && peer.router4;
  return `log stderr all;
router id ${peer.routerId};
protocol device { }
protocol static anycast {
  ipv6;
${routes(options.prefixes)}
}
${
  v4
    ? `protocol static anycast4 {
  ipv4;
${routes(options.prefixes4!)}
}
`
    : ''
}protocol bgp uplink {
  local ${peer.address} as ${peer.asn};
  neighbor ${peer.router} as ${ROUTER_ASN};
${TIMERS}
  ipv6 { import none; export where proto = "anycast"; };
}
${
  v4
    ? `protocol bgp uplink4 {
  local ${peer.address4} as ${peer.asn};
  neighbor ${peer.router4} as ${ROUTER_ASN};
${TIMERS}
  ipv4 { import none; export where proto = "anycast4"; };
}
`
    : ''
}`;
}

/**
 * `bird -f` with `conf` in namespace `ns` (its config and control socket DIR/bird-NAME.conf, .ctl; its log
 * DIR/bird-NAME.log, or `logDir`).
 */
export function startBird(
  ns: string,
  name: string,
  conf: string,
  options: { dir: string; logDir?: string; detached?: boolean },
): { child: ChildProcess; ctl: string } {
  const file = join(options.dir, `bird-${name}.conf`);
  const ctl = join(options.dir, `bird-${name}.ctl`);
  writeFileSync(file, conf);
  const child = spawnInNamespace(ns, ['bird', '-f', '-c', file, '-s', ctl], {
    logFile: join(options.logDir ?? options.dir, `bird-${name}.log`),
    detached: options.detached ?? false,
  });
  return { child, ctl };
}

/** How many paths the router's BIRD (control socket `ctl`) holds for `prefix` (one per HA announcing it). */
export async function birdPaths(
  run: (argv: string[]) => Promise<string>,
  ctl: string,
  prefix: string,
): Promise<number> {
  const out = await run(['birdc', '-s', ctl, 'show', 'route', prefix]);
  return out.split('\n').filter((l) => /^\s+via /.test(l)).length;
}
