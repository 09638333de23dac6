// docs/deploy.md, followed as written (root, namespaces): the Debian package is built (scripts/package),
// then every step of the guide runs on the machine it names — a router, the home agent and two hosts,
// each a fresh machine (test/helpers/fresh-host.ts: its own network, and /etc, /usr and /var of its own,
// so the package is installed with apt for real and this machine is left as it was). The units are
// checked by systemd-analyze and started as systemd would start them (ExecStartPre, ExecStart, the
// capability bounding set). At the end net1 has moved to host-b, and a guest plugged into host-b's bridge
// is reached through the home agent's tunnel, through the guide's firewalls.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { site } from '../src/lab/netbuild.ts';
import { waitUntil } from './helpers/faults.ts';
import { FreshHost, removeStaleHolders } from './helpers/fresh-host.ts';
import { guideSteps } from './helpers/guide.ts';
import { ECHO_PORT, NsAgent } from './helpers/homeagent-lab.ts';
import { type NetnsLab, openNetns, sh } from './helpers/netns.ts';
import { needsRoot } from './helpers/requirements.ts';

const ROOT = new URL('../', import.meta.url).pathname;
const GUIDE = join(ROOT, 'docs/deploy.md');
const MACHINES = ['router', 'ha', 'host-a', 'host-b'] as const;
type Machine = (typeof MACHINES)[number];
const GUEST = '2001:db8:100::10';
const CN = '2001:db8:c::2';

/** The capability mask of `CapabilityBoundingSet=` names (as /proc/PID/status prints CapBnd). */
function capMask(names: string[]): bigint {
  const numbers: Record<string, number> = {
    CAP_CHOWN: 0,
    CAP_KILL: 5,
    CAP_NET_BIND_SERVICE: 10,
    CAP_SETGID: 6,
    CAP_SETUID: 7,
    CAP_NET_ADMIN: 12,
    CAP_NET_RAW: 13,
    CAP_SYS_ADMIN: 21,
    CAP_BPF: 39,
  };
  return names.reduce((m, n) => {
    assert.ok(n in numbers, `capability ${n} not in the test's table`);
    return m | (1n << BigInt(numbers[n] as number));
  }, 0n);
}

function procCaps(pid: number): { bounding: bigint; effective: bigint } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => {
    const hex = new RegExp(`^${name}:\\s*([0-9a-f]+)$`, 'm').exec(status)?.[1];
    assert.ok(hex, `${name} in /proc/${pid}/status`);
    return BigInt(`0x${hex}`);
  };
  return { bounding: field('CapBnd'), effective: field('CapEff') };
}

describe('docs/deploy.md followed on fresh machines', { skip: needsRoot(), timeout: 300_000 }, () => {
  let dir: string;
  let lab: NetnsLab;
  const hosts = {} as Record<Machine, FreshHost>;
  let agents: NsAgent[] = [];
  let installedHere: boolean;
  const failed: string[] = [];

  before(async () => {
    const tools = [
      'dpkg-deb',
      'apt-get',
      'systemd-analyze',
      'setpriv',
      'nsenter',
      'unshare',
      'openssl',
      'nft',
    ];
    const lacking = tools.filter((c) => spawnSync('sh', ['-c', `command -v ${c}`]).status !== 0);
    assert.deepEqual(lacking, [], 'tools this test needs (scripts/bootstrap installs them)');
    removeStaleHolders();
    installedHere = existsSync('/usr/lib/offlink');
    dir = mkdtempSync(join(tmpdir(), 'offlink-deploy-'));
    execFileSync(process.execPath, [join(ROOT, 'scripts/package.mjs'), '--out', join(dir, 'pkg')], {
      stdio: 'pipe',
    });
    lab = await openNetns();
    const sites = [
      site({ router: 'router', routerDev: 'to-ha', ns: 'ha', dev: 'eth0', subnet: '2001:db8:1::' }),
      site({ router: 'router', routerDev: 'to-a', ns: 'host-a', dev: 'eth0', subnet: '2001:db8:a::' }),
      site({ router: 'router', routerDev: 'to-b', ns: 'host-b', dev: 'eth0', subnet: '2001:db8:b::' }),
      site({ router: 'router', routerDev: 'to-cn', ns: 'cn', dev: 'eth0', subnet: '2001:db8:c::' }),
    ];
    // The network as the guide finds it: addressed and routed, nothing of offlink (forwarding off).
    const ns = await lab.build({
      namespaces: [
        { name: 'router', forwarding: true },
        { name: 'ha' },
        { name: 'host-a' },
        { name: 'host-b' },
        { name: 'cn' },
      ],
      veths: sites.map((s) => s.veth),
      routes: sites.map((s) => s.route),
    });
    for (const m of MACHINES) hosts[m] = await FreshHost.open(m, ns[m], join(dir, 'hosts'));
  });

  after(async () => {
    await Promise.all(agents.map((a) => a.close()));
    for (const m of MACHINES) await hosts[m]?.close();
    await lab?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('every step runs on its machine and succeeds', async (t) => {
    const steps = guideSteps(readFileSync(GUIDE, 'utf8'), MACHINES);
    assert.ok(steps.length >= 15, `the guide has its steps (${steps.length})`);
    for (const step of steps) {
      for (const m of step.hosts as Machine[]) {
        const what = `${GUIDE}:${step.line} on ${m}`;
        const r =
          step.kind === 'file'
            ? await hosts[m].writeFile(step.path ?? '', step.body)
            : await hosts[m].run(step.body, { cwd: join(dir, 'pkg') });
        if (r.code !== 0) failed.push(what);
        assert.equal(
          r.code,
          0,
          `${what} failed (${r.code}):\n${step.body}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`,
        );
        if (/offlink (migrate|status)/.test(step.body)) t.diagnostic(`${what}:\n${r.stdout.trim()}`);
      }
    }
  });

  it('the installed units pass systemd-analyze verify', async () => {
    const r = await hosts.ha.run(
      'systemd-analyze verify /lib/systemd/system/offlink-ha.service /lib/systemd/system/offlink-agent.service',
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr.trim(), '', 'no warnings');
  });

  it('the daemons run with exactly the capabilities their units allow', () => {
    assert.deepEqual(failed, [], 'precondition: the guide ran');
    for (const [m, unit] of [
      ['ha', 'offlink-ha'],
      ['host-a', 'offlink-agent'],
      ['host-b', 'offlink-agent'],
    ] as const) {
      const pid = hosts[m].unitPid(unit);
      assert.ok(pid, `${unit} runs on ${m}`);
      const text = readFileSync(join(ROOT, 'packaging', `${unit}.service`), 'utf8');
      const names = /^CapabilityBoundingSet=(.*)$/m.exec(text)?.[1]?.split(/\s+/) ?? [];
      const caps = procCaps(pid);
      assert.equal(caps.bounding, capMask(names), `${unit} bounding set`);
      assert.equal(caps.effective & ~capMask(names), 0n, `${unit} has no capability beyond its unit's`);
    }
  });

  it('net1 moved to host-b: the HA tunnels it there and a guest on host-b is reached through the firewalls', async () => {
    assert.deepEqual(failed, [], 'precondition: the guide ran');
    const status = await hosts.ha.run('offlink status --ha http://127.0.0.1:9180 --json');
    assert.equal(status.code, 0, status.stderr);
    const bindings = (JSON.parse(status.stdout) as { bindings: { hoa: string; coa: string }[] }).bindings;
    assert.deepEqual(
      bindings.map((b) => [b.hoa, b.coa]),
      [['2001:db8:ffff::101', '2001:db8:b::2']],
    );
    // A guest, as a VM's NIC would be, on host-b's bridge for net1.
    const guestNs = await lab.build({
      namespaces: [{ name: 'guest' }],
      veths: [
        {
          a: { ns: 'guest', dev: 'eth0', addresses: [`${GUEST}/64`] },
          b: { ns: 'host-b', dev: 'vg-guest', master: 'ofl-net1' },
        },
      ],
    });
    // Its default route comes from the agent's router advertisements on the bridge.
    await waitUntil('the guest to learn its router from RAs', async () => {
      const { stdout } = await sh(['ip', '-n', guestNs.guest, '-6', 'route', 'show', 'default']);
      return stdout.includes('via fe80::1') || undefined;
    });
    const guest = new NsAgent(guestNs.guest);
    const cn = new NsAgent(lab.name('cn'));
    agents = [guest, cn];
    await guest.echo(ECHO_PORT);
    const probe = await cn.probe(GUEST, { count: 20, intervalMs: 20 });
    assert.equal(
      probe.received,
      probe.sent,
      `correspondent ${CN} ↔ guest ${GUEST}: ${probe.received}/${probe.sent}`,
    );
  });

  it('this machine is as it was: nothing installed outside the fresh machines', () => {
    assert.equal(existsSync('/usr/lib/offlink'), installedHere);
    assert.equal(existsSync('/lib/systemd/system/offlink-ha.service'), installedHere);
  });
});
