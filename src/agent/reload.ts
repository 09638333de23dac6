// What `offlink agent` may change on SIGHUP without a restart, and what it must refuse.
//
// A reload applies the cluster key and the control API's clock skew and history, the peers (names and
// URLs), each network's security association with the home agent (SPI, key, algorithm): the next
// request and the next BU use them; no binding, route or guest is touched — and each network's DHCPv4
// settings (a running dnsmasq restarts with them; dhcp4.ts). Anything else — the host's
// name, uplink, data plane, hypervisor, the set of networks or their prefixes, bridges and guests — is
// fixed for the life of the process: a change there is refused with the names of the settings, and the
// agent runs on as it was.
import { isDeepStrictEqual } from 'node:util';
import { refuseRestartOnly } from '../config/reload.ts';
import type { AgentConfig, AgentNetworkConfig } from './config.ts';

/** The config with what a reload applies left out: two configs with equal skeletons differ only there. */
function skeleton(c: AgentConfig) {
  const { control, peers: _peers, networks, ...rest } = c;
  return {
    ...rest,
    control: { listen: control.listen },
    networks: networks.map(({ spi: _spi, key: _key, algorithm: _algorithm, dhcp4: _dhcp4, ...n }) => n),
  };
}

/** The settings that differ between `running` and `next` and that only a restart can change. */
export function restartOnlyChanges(running: AgentConfig, next: AgentConfig): string[] {
  const a = skeleton(running);
  const b = skeleton(next);
  const changed: string[] = [];
  const names = (c: AgentConfig) => c.networks.map((n) => n.name);
  const added = names(next).filter((n) => !names(running).includes(n));
  const removed = names(running).filter((n) => !names(next).includes(n));
  if (added.length > 0) changed.push(`networks added (${added.join(', ')})`);
  if (removed.length > 0) changed.push(`networks removed (${removed.join(', ')})`);
  for (const n of a.networks) {
    const m = b.networks.find((x) => x.name === n.name);
    if (m && !isDeepStrictEqual(n, m)) changed.push(`networks.${n.name}`);
  }
  for (const key of new Set([...Object.keys(a), ...Object.keys(b)]) as Set<keyof typeof a>) {
    if (key !== 'networks' && !isDeepStrictEqual(a[key], b[key]))
      changed.push(key === 'control' ? 'control.listen' : key);
  }
  return changed;
}

/** Throws ERR_RELOAD naming what needs a restart; returns when `next` can be applied by a reload. */
export function checkReloadable(running: AgentConfig, next: AgentConfig): void {
  refuseRestartOnly(restartOnlyChanges(running, next));
}

/** The networks whose security association `next` changes. */
export function rekeyedNetworks(running: AgentConfig, next: AgentConfig): AgentNetworkConfig[] {
  return next.networks.filter((n) => {
    const was = running.networks.find((m) => m.name === n.name);
    return (
      was !== undefined && !isDeepStrictEqual([was.spi, was.key, was.algorithm], [n.spi, n.key, n.algorithm])
    );
  });
}

/** The networks whose DHCPv4 settings `next` changes (added, removed or different). */
export function dhcp4Changed(running: AgentConfig, next: AgentConfig): AgentNetworkConfig[] {
  return next.networks.filter((n) => {
    const was = running.networks.find((m) => m.name === n.name);
    return was !== undefined && !isDeepStrictEqual(was.dhcp4, n.dhcp4);
  });
}

/** What a reload did. */
export interface AgentReloadResult {
  peers: number;
  rekeyed: string[];
  clusterKeyChanged: boolean;
  /** Networks whose DHCPv4 settings changed (applied by the guest links, after the result). */
  dhcp4: string[];
}
