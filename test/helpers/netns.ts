// Network-namespace harness for integration tests (root). Every namespace a test makes is named
// `t<pid>-<name>`, so a crashed run's leftovers are recognisable: `removeStaleNamespaces()` deletes
// those whose creating process is gone, without touching namespaces of tests running concurrently.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Backend } from '../../src/dataplane/probe.ts';
import {
  type AddressSpec,
  buildNet,
  type NamespaceSpec,
  type NetSpec,
  type RouteSpec,
  renameNamespaces,
  site,
  type VethSpec,
} from '../../src/lab/netbuild.ts';
import { pidAlive } from '../../src/lab/netns.ts';
import { ExecRunner } from '../../src/system/runner.ts';

export interface ExecResult {
  stdout: string;
  stderr: string;
}

const runner = new ExecRunner({ timeoutMs: 120_000 });

/** Run argv (no shell) through the product's runner. Throws CommandError (argv, exit, stderr) on failure. */
export async function sh(argv: readonly string[], input?: string): Promise<ExecResult> {
  const { stdout, stderr } = await runner.run(argv, input === undefined ? {} : { input });
  return { stdout, stderr };
}

/** Delete `t<pid>-*` namespaces whose creating process no longer exists (a crashed earlier run). */
export async function removeStaleNamespaces(): Promise<string[]> {
  let names: string[] = [];
  try {
    names = readdirSync('/run/netns');
  } catch {
    return [];
  }
  const stale = names.filter((n) => {
    const m = /^t(\d+)-/.exec(n);
    return m !== null && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]));
  });
  for (const n of stale) await sh(['ip', 'netns', 'del', n]).catch(() => {});
  return stale;
}

/**
 * The routed network every integration rig shares: a router `inet` and four sites around it — the home
 * agent `ha` (2001:db8:1::2, uplink ha-up), the two hosts (2001:db8:a::2 and 2001:db8:b::2, uplink up0)
 * and the correspondent `cn` (2001:db8:c::2, cn0). The HA's address is on its loopback, and `inet`
 * routes the home prefixes to the HA. A rig adds its guests and any routes of its own to these parts.
 */
export function backbone<A extends string, B extends string>(o: {
  hosts: readonly [A, B];
  haAddress: string;
  homePrefixes: readonly string[];
}): {
  namespaces: (NamespaceSpec & { name: 'inet' | 'ha' | 'cn' | A | B })[];
  veths: VethSpec[];
  addresses: AddressSpec[];
  routes: RouteSpec[];
} {
  const [a, b] = o.hosts;
  const sites = [
    site({ ns: 'ha', dev: 'ha-up', router: 'inet', routerDev: 'inet-ha', subnet: '2001:db8:1::' }),
    site({ ns: a, dev: 'up0', router: 'inet', routerDev: 'inet-a', subnet: '2001:db8:a::' }),
    site({ ns: b, dev: 'up0', router: 'inet', routerDev: 'inet-b', subnet: '2001:db8:b::' }),
    site({ ns: 'cn', dev: 'cn0', router: 'inet', routerDev: 'inet-cn', subnet: '2001:db8:c::' }),
  ];
  return {
    namespaces: [
      { name: 'inet', forwarding: true },
      { name: 'ha', forwarding: true },
      { name: a, forwarding: true },
      { name: b, forwarding: true },
      { name: 'cn' },
    ],
    veths: sites.map((s) => s.veth),
    addresses: [{ ns: 'ha', dev: 'lo', address: `${o.haAddress}/128` }],
    routes: [
      ...sites.map((s) => s.route),
      ...o.homePrefixes.map((to) => ({ ns: 'inet', to, via: '2001:db8:1::2' })),
    ],
  };
}

/**
 * A set of namespaces, veths and processes for one test. Use through `withNetns`, which cleans up in
 * `finally` even when the test fails.
 */
export class NetnsLab {
  readonly tag = `t${process.pid}-${Math.random().toString(36).slice(2, 6)}`;
  /** The data plane backend the test runs on (every daemon and data plane it makes uses it). */
  readonly backend: Backend;
  private readonly namespaces: string[] = [];
  private readonly children: ChildProcess[] = [];
  private dir: string | undefined;

  constructor(options: { backend?: Backend } = {}) {
    this.backend = options.backend ?? 'bpf';
  }

  /**
   * A directory for the test's runtime state (e.g. the bpffs of data planes the test process makes);
   * removed on cleanup, with whatever is mounted below it.
   */
  get runDir(): string {
    this.dir ??= mkdtempSync(join(tmpdir(), `offlink-${this.tag}-`));
    return this.dir;
  }

  /** The full name of this lab's namespace `name` (`<tag>-<name>`); a full name stays as it is. */
  name(name: string): string {
    return name.startsWith(`${this.tag}-`) ? name : `${this.tag}-${name}`;
  }

  /**
   * Build `spec` (src/lab/netbuild.ts, the builder the lab uses too) with this lab's namespace names:
   * every `ns` in it is a short name (`ha`) or one of this lab's full names. Returns the full names of
   * the namespaces it made, by short name. They are removed on cleanup, also when the build fails.
   */
  async build<N extends string>(
    spec: NetSpec & { namespaces?: readonly (NamespaceSpec & { name: N })[] },
  ): Promise<Record<N, string>> {
    const made = {} as Record<N, string>;
    for (const n of spec.namespaces ?? []) {
      made[n.name] = this.name(n.name);
      this.namespaces.push(made[n.name]);
    }
    await buildNet(
      renameNamespaces(spec, (ns) => this.name(ns)),
      runner,
    );
    return made;
  }

  /** Create namespace `<tag>-<name>` with lo up and DAD off; returns its full name. */
  async ns(name: string, options: { forwarding?: boolean } = {}): Promise<string> {
    await this.build({ namespaces: [{ name, forwarding: options.forwarding ?? false }] });
    return this.name(name);
  }

  /** Add an address without DAD. */
  async addr(ns: string, dev: string, cidr: string): Promise<void> {
    await this.build({ addresses: [{ ns, dev, address: cidr }] });
  }

  exec(ns: string, argv: readonly string[], input?: string): Promise<ExecResult> {
    return sh(['ip', 'netns', 'exec', ns, ...argv], input);
  }

  /** Start a long-running process in a namespace; it is killed on cleanup. */
  spawn(ns: string, argv: readonly string[], options: { env?: NodeJS.ProcessEnv } = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', ns, ...argv], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: options.env ?? process.env,
    });
    this.children.push(child);
    return child;
  }

  async cleanup(): Promise<void> {
    for (const child of this.children.reverse()) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await new Promise((r) => child.once('close', r));
      }
    }
    for (const ns of this.namespaces.reverse()) await sh(['ip', 'netns', 'del', ns]).catch(() => {});
    if (this.dir) await unmountUnder(this.dir);
  }
}

/** Unmount every mount below `dir` in this process's mount namespace (deepest first), then remove `dir`. */
export async function unmountUnder(dir: string): Promise<void> {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await sh(['umount', '-l', m]).catch(() => {});
  rmSync(dir, { recursive: true, force: true });
}

/** Run `fn` with a fresh NetnsLab; removes a crashed run's leftovers first and cleans up in `finally`. */
export async function withNetns<T>(
  fn: (lab: NetnsLab) => Promise<T>,
  options: { backend?: Backend } = {},
): Promise<T> {
  await removeStaleNamespaces();
  const lab = new NetnsLab(options);
  try {
    return await fn(lab);
  } finally {
    await lab.cleanup();
  }
}

/**
 * A fresh NetnsLab for a fixture shared by several test cases (`before` opens it, `after` calls
 * `cleanup()`); removes a crashed run's leftovers first.
 */
export async function openNetns(options: { backend?: Backend } = {}): Promise<NetnsLab> {
  await removeStaleNamespaces();
  return new NetnsLab(options);
}

/** withNetns for a test that runs on the data plane `backend`. */
export function withNetnsOn<T>(backend: Backend, fn: (lab: NetnsLab) => Promise<T>): Promise<T> {
  return withNetns(fn, { backend });
}

/** True when running as root with namespace support (benchmarks check it; tests use requirements.ts). */
export function canUseNetns(): boolean {
  return process.getuid?.() === 0;
}
