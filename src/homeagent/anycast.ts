// The shared HA address (issue 16): every HA of a cluster holds the same address, and the network routes it
// to the healthy ones by BGP anycast. offlink itself speaks no BGP: it puts the address on a tun device
// whose only reference is a file descriptor of this process, and the routing daemon on the host (BIRD:
// a static route `via "<device>"` exported to BGP, docs/homeagent.md) announces the HA address and the home
// prefixes while that device is up. So:
//   - the HA can serve → device up, address on it → announced;
//   - it cannot (etcd unreachable past its lease, data plane not ready, stopping) → device down (the kernel
//     then drops the address) → withdrawn;
//   - the process dies, even by kill -9 → the kernel closes its fds, the non-persistent device goes with its
//     address → withdrawn, without anything of offlink running.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { buildPath, NotBuiltError } from '../dataplane/bpf/syscall.ts';
import type { CommandRunner } from '../system/runner.ts';

/** What the daemon needs: announce while it can serve, withdraw when not, close when it stops. */
export interface AnycastAddress {
  /** Create the device (not yet up: nothing is announced). */
  open(): Promise<void>;
  announce(): Promise<void>;
  withdraw(): Promise<void>;
  /** Remove the device (and so the announcement) now. */
  close(): Promise<void>;
}

interface TunAddon {
  tunOpen(name: string): number;
  close(fd: number): void;
}

function tunAddon(): TunAddon {
  const path = buildPath('offlink_bpf.node');
  if (!existsSync(path)) throw new NotBuiltError(path);
  return createRequire(import.meta.url)(path) as TunAddon;
}

export class TunAnycast implements AnycastAddress {
  private fd: number | undefined;

  constructor(
    private readonly options: { device: string; address: string; runner: CommandRunner },
    private readonly addon: TunAddon = tunAddon(),
  ) {}

  async open(): Promise<void> {
    // A device of that name left by a crash is gone with its process; one that exists now is another
    // process's, and TUNSETIFF on it fails (EBUSY) rather than sharing it.
    this.fd = this.addon.tunOpen(this.options.device);
  }

  async announce(): Promise<void> {
    const { device, address, runner } = this.options;
    await runner.run(['ip', 'link', 'set', 'dev', device, 'up']);
    // The kernel drops IPv6 addresses of a device that goes down: add it again each time.
    await runner.run(['ip', '-6', 'addr', 'replace', `${address}/128`, 'dev', device, 'nodad']);
  }

  async withdraw(): Promise<void> {
    await this.options.runner.run(['ip', 'link', 'set', 'dev', this.options.device, 'down']);
  }

  async close(): Promise<void> {
    if (this.fd === undefined) return;
    this.addon.close(this.fd);
    this.fd = undefined;
  }
}
