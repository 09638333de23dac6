// Which data plane backends this kernel can run, found by trying each in a throwaway network namespace
// (kernels of one distribution differ: some have seg6 lightweight tunnels, some not even ip6_tunnel), and
// which one `backend: auto` takes.
//
// The order of preference comes from measurements on one machine (bench/RESULTS.md, docs/dataplane.md):
// bpf changes a binding with one map update (~5 µs, no process) where seg6 installs routes and nftables
// elements (two processes, 20–30 ms a registration), a handover is a map update on each side instead of
// `ip` and `nft` at the switchover, its routes send correct Packet Too Big messages, and it tunnels at
// the same TCP throughput as seg6 or better. So bpf first, seg6 where bpf is not usable.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { OfflinkError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { CommandRunner } from '../system/runner.ts';
import { type BpfSyscalls, kernelBpf, programObject } from './bpf/syscall.ts';

export const BACKENDS = ['bpf', 'seg6'] as const;
export type Backend = (typeof BACKENDS)[number];
export type BackendChoice = Backend | 'auto';

/** Kernel options each backend needs (all of them, =y or =m). */
export const REQUIRED_OPTIONS: Record<Backend, readonly string[]> = {
  bpf: [
    'CONFIG_BPF_SYSCALL',
    'CONFIG_LWTUNNEL_BPF',
    'CONFIG_NET_CLS_BPF',
    'CONFIG_NET_SCH_INGRESS',
    'CONFIG_IPV6_MULTIPLE_TABLES',
  ],
  seg6: ['CONFIG_IPV6_SEG6_LWTUNNEL', 'CONFIG_IPV6_MULTIPLE_TABLES', 'CONFIG_NF_TABLES'],
};

export interface BackendProbe {
  backend: Backend;
  usable: boolean;
  /** Why not (the failing step and what the kernel or tool said). */
  reason?: string;
}

export interface ProbeResult {
  backends: BackendProbe[];
  /** The kernel's build options that matter here, from /proc/config.gz (absent when it is not readable). */
  kernelOptions?: Record<string, string>;
  kernelRelease: string;
}

export class NoBackendError extends OfflinkError {
  constructor(result: ProbeResult) {
    const missing = result.backends.map((b) => {
      const off = REQUIRED_OPTIONS[b.backend].filter(
        (option) => result.kernelOptions && !/^[ym]$/.test(result.kernelOptions[option] ?? ''),
      );
      return `${b.backend}: ${off.length > 0 ? `kernel lacks ${off.join(', ')}` : b.reason}`;
    });
    super(
      'ERR_NO_DATAPLANE',
      `no data plane backend works on this kernel (${result.kernelRelease}): ${missing.join('; ')}`,
    );
  }
}

/** The options of REQUIRED_OPTIONS as this kernel was built, or undefined without /proc/config.gz. */
export function kernelOptions(path = '/proc/config.gz'): Record<string, string> | undefined {
  let text: string;
  try {
    text = gunzipSync(readFileSync(path)).toString();
  } catch {
    return undefined;
  }
  const wanted = new Set(Object.values(REQUIRED_OPTIONS).flat());
  const out: Record<string, string> = {};
  for (const option of wanted) out[option] = 'n';
  for (const line of text.split('\n')) {
    const m = /^(CONFIG_\w+)=(.*)$/.exec(line);
    if (m && wanted.has(m[1]!)) out[m[1]!] = m[2]!;
  }
  return out;
}

export interface ProbeComponents {
  /** Runs commands on this host (not inside a namespace). */
  runner: CommandRunner;
  /** bpf(2) (default: the addon; a missing build makes bpf unusable, with the reason). */
  sys?: () => BpfSyscalls;
  object?: () => string;
}

function message(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n')[0]!.slice(0, 300);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM';
  }
}

/** Namespaces of probes whose process is gone (a probe killed midway). */
function staleProbes(): string[] {
  let names: string[];
  try {
    names = readdirSync('/run/netns');
  } catch {
    return [];
  }
  return names.filter((n) => {
    const m = /^ofl-probe-(\d+)-/.exec(n);
    return m !== null && !alive(Number(m[1]));
  });
}

/**
 * Try every backend in a throwaway namespace `ofl-probe-<pid>-<random>`, removed afterwards (and a killed
 * probe's namespace by the next probe).
 */
export async function probeBackends(components: ProbeComponents): Promise<ProbeResult> {
  for (const stale of staleProbes())
    await components.runner.run(['ip', 'netns', 'del', stale], { allowFailure: true });
  const ns = `ofl-probe-${process.pid}-${randomBytes(3).toString('hex')}`;
  const run = (argv: string[]) => components.runner.run(['ip', 'netns', 'exec', ns, ...argv]);
  const result: ProbeResult = {
    backends: [],
    kernelRelease: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
  };
  const options = kernelOptions();
  if (options) result.kernelOptions = options;
  await components.runner.run(['ip', 'netns', 'add', ns]);
  try {
    await run(['ip', 'link', 'set', 'lo', 'up']);
    result.backends.push(await probeBpf(components, run));
    result.backends.push(await probeSeg6(run));
  } finally {
    await components.runner.run(['ip', 'netns', 'del', ns], { allowFailure: true });
  }
  return result;
}

async function probeBpf(
  components: ProbeComponents,
  run: (argv: string[]) => Promise<unknown>,
): Promise<BackendProbe> {
  let sys: BpfSyscalls;
  let object: string;
  try {
    sys = (components.sys ?? kernelBpf)();
    object = (components.object ?? programObject)();
  } catch (err) {
    return { backend: 'bpf', usable: false, reason: message(err) };
  }
  const dir = mkdtempSync(join(tmpdir(), 'offlink-probe-'));
  let step = 'mount a bpffs';
  try {
    sys.mountBpffs(dir);
    const env = ['env', `TC_BPF_MNT=${dir}`];
    step = 'route through the encapsulation program (CONFIG_LWTUNNEL_BPF)';
    await run([
      ...env,
      ...['ip', '-6', 'route', 'add', '2001:db8:ffff::/64', 'encap', 'bpf', 'xmit', 'obj', object],
      ...['section', 'lwt_xmit', 'headroom', '40', 'dev', 'lo'],
    ]);
    step = 'clsact qdisc (CONFIG_NET_SCH_INGRESS)';
    await run(['tc', 'qdisc', 'add', 'dev', 'lo', 'clsact']);
    step = 'tc filter with the decapsulation program (CONFIG_NET_CLS_BPF)';
    await run([
      ...env,
      'tc',
      'filter',
      'add',
      'dev',
      'lo',
      'ingress',
      'bpf',
      'da',
      'obj',
      object,
      'sec',
      'tc',
    ]);
    return { backend: 'bpf', usable: true };
  } catch (err) {
    return { backend: 'bpf', usable: false, reason: `${step}: ${message(err)}` };
  } finally {
    try {
      if (sys.isBpffs(dir)) sys.unmount(dir);
      rmdirSync(dir);
    } catch {}
  }
}

async function probeSeg6(run: (argv: string[]) => Promise<unknown>): Promise<BackendProbe> {
  let step = 'seg6 encapsulation route (CONFIG_IPV6_SEG6_LWTUNNEL)';
  try {
    await run([
      ...['ip', '-6', 'route', 'add', '2001:db8:fffd::/64', 'encap', 'seg6', 'mode', 'encap.red'],
      ...['segs', '2001:db8::1', 'dev', 'lo'],
    ]);
    step = 'seg6local End.DX6 route (CONFIG_IPV6_SEG6_LWTUNNEL)';
    await run([
      ...['ip', '-6', 'route', 'add', '2001:db8:fffe::1/128', 'encap', 'seg6local', 'action', 'End.DX6'],
      ...['nh6', '::', 'dev', 'lo'],
    ]);
    step = 'nftables table (CONFIG_NF_TABLES)';
    await run(['nft', 'add', 'table', 'ip6', 'offlink-probe']);
    return { backend: 'seg6', usable: true };
  } catch (err) {
    return { backend: 'seg6', usable: false, reason: `${step}: ${message(err)}` };
  }
}

/** The backend `choice` means here: itself if usable, else an error; for auto the first usable one. */
export function chooseBackend(choice: BackendChoice, result: ProbeResult): { backend: Backend; why: string } {
  if (choice !== 'auto') {
    const p = result.backends.find((b) => b.backend === choice);
    if (!p?.usable)
      throw new OfflinkError(
        'ERR_NO_DATAPLANE',
        `data plane backend ${choice} does not work on this kernel (${result.kernelRelease}): ${p?.reason ?? 'not probed'}`,
      );
    return { backend: choice, why: 'configured' };
  }
  const usable = result.backends.filter((b) => b.usable);
  if (usable.length === 0) throw new NoBackendError(result);
  const skipped = result.backends.filter((b) => !b.usable).map((b) => `${b.backend}: ${b.reason}`);
  const why =
    usable[0]!.backend === 'bpf'
      ? 'bpf: a binding or a handover is a map update, no process; seg6 needs ip and nft for each'
      : `the only usable backend (${skipped.join('; ')})`;
  return { backend: usable[0]!.backend, why };
}

/** Probe, choose, and log the choice with its reason. */
export async function resolveBackend(
  choice: BackendChoice,
  components: ProbeComponents & { logger?: Logger },
): Promise<Backend> {
  const result = await probeBackends(components);
  const { backend, why } = chooseBackend(choice, result);
  components.logger?.info(
    {
      backend,
      why,
      requested: choice,
      kernel: result.kernelRelease,
      usable: result.backends.filter((b) => b.usable).map((b) => b.backend),
      unusable: Object.fromEntries(
        result.backends.filter((b) => !b.usable).map((b) => [b.backend, b.reason]),
      ),
    },
    'data plane backend chosen',
  );
  return backend;
}
