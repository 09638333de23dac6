// DHCPv4 on a dual-stack guest link, end to end (root, namespaces): the real HA and agents, net1 with an
// IPv4 prefix and `dhcp4` reservations. The guest (namespace g1) runs busybox's udhcpc, a real DHCPv4
// client, against the active host's dnsmasq; net1 moves to host B with an IPv4 TCP connection open; the
// same udhcpc then renews (SIGUSR1) and host B's dnsmasq acknowledges the same address and gateway; host
// A's dnsmasq stopped with the handover. An unreserved client gets nothing until an agent reload (SIGHUP)
// adds its reservation; the first guest's lease still renews after that reload.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  type AgentRig,
  addIpv4Home,
  agentStatus,
  IPV4_HOME,
  type Lab,
  migrate,
  openAgentRig,
  waitForLog,
} from './helpers/agent-lab.ts';
import type { NetnsLab } from './helpers/netns.ts';
import type { Proc, Procs } from './helpers/procs.ts';
import { dataplaneBackends, needsRoot, skipUnless } from './helpers/requirements.ts';

const V4 = IPV4_HOME;
const MAC = '02:00:5e:00:01:10';
const OTHER_MAC = '02:00:5e:00:01:99';
const TCP_PORT = 7101;
const BUSYBOX = '/usr/bin/busybox';
const DNSMASQ = '/usr/sbin/dnsmasq';

// udhcpc hands what it got to a script; this one applies it (as Debian's default.script would) and prints
// one line the test reads: the event, address, mask, router, MTU, lease and server.
const SCRIPT = `#!/bin/sh
case "$1" in
  bound|renew)
    ip -4 addr replace "$ip/$mask" dev "$interface"
    ip -4 route replace default via "$router" dev "$interface"
    ;;
esac
echo "udhcpc $1 ip=$ip mask=$mask router=$router mtu=$mtu lease=$lease server=$serverid"
`;

// IPv4 rides the bpf data plane only (seg6 refuses IPv4 prefixes: docs/dataplane.md).
const backends = (await dataplaneBackends()).filter((b) => b === 'bpf');
const missing = [BUSYBOX, DNSMASQ].find((p) => !existsSync(p));

for (const backend of backends) {
  describe(`DHCPv4 on a dual-stack guest link (dnsmasq, reservations) [${backend}]`, {
    skip: needsRoot() || skipUnless(!missing, `${missing} (scripts/bootstrap)`),
    timeout: 240_000,
  }, () => {
    let rig: AgentRig | undefined;
    let netns: NetnsLab;
    let procs: Procs;
    let lab: Lab;
    let udhcpc: Proc;
    let tcp: Proc;

    before(async () => {
      rig = await openAgentRig(backend, 'dhcp4-it', {
        net1Ipv4: V4.prefix,
        net1: `dhcp4: { leaseSeconds: 600, hosts: [{ mac: "${MAC}", address: "${V4.guest}" }] }`,
        env: { 'host-a': { OFFLINK_LOG_LEVEL: 'debug' }, 'host-b': { OFFLINK_LOG_LEVEL: 'debug' } },
      });
      ({ netns, procs, lab } = rig);
      await addIpv4Home(netns, lab);
      // the guest's NIC gets the reserved MAC; no IPv4 address until DHCP gives one
      await netns.exec(lab.ns.g1, ['ip', 'link', 'set', 'g0', 'address', MAC]);
      writeFileSync(join(rig.dir, 'udhcpc.sh'), SCRIPT, { mode: 0o755 });
    });

    after(async () => {
      await rig?.close();
    });

    /**
     * busybox udhcpc on `ns`'s g0 in the foreground, with the test's script; `once`: retry `tries` times,
     * then exit (1 without a lease), else keep the lease and renew on SIGUSR1.
     */
    const udhcpcIn = (ns: string, o: { once: boolean; tries: number }) =>
      procs.start(ns, [
        BUSYBOX,
        'udhcpc',
        '-f',
        '-i',
        'g0',
        '-s',
        join(rig!.dir, 'udhcpc.sh'),
        ...(o.once ? ['-n', '-q'] : []),
        '-t',
        String(o.tries),
        '-T',
        '1',
        '-O',
        'mtu',
      ]);
    /** What `host`'s agent logged (dnsmasq's lines are in it at debug). */
    const agentLog = (host: 'host-a' | 'host-b') =>
      `${lab.agents[host].lines.join('\n')}\n${lab.agents[host].stderr}`;
    const dnsmasqPid = (host: 'host-a' | 'host-b') => join(rig!.dir, `run-${host}`, 'dnsmasq-ofl-net1.pid');

    it('the active host serves the reservation: address, gateway .1, MTU 1460, lease', async () => {
      assert.ok(existsSync(dnsmasqPid('host-a')), 'dnsmasq runs on the active host');
      assert.ok(!existsSync(dnsmasqPid('host-b')), 'and not on the standby host');
      udhcpc = udhcpcIn(lab.ns.g1, { once: false, tries: 10 });
      const bound = await udhcpc.waitFor((l) => l.startsWith('udhcpc bound'), 30_000);
      assert.equal(
        bound,
        `udhcpc bound ip=${V4.guest} mask=24 router=${V4.gateway} mtu=1460 lease=600 server=${V4.gateway}`,
      );
      const addr = await netns.exec(lab.ns.g1, ['ip', '-4', '-o', 'addr', 'show', 'dev', 'g0']);
      assert.match(addr.stdout, new RegExp(`inet ${V4.guest.replaceAll('.', '\\.')}/24 `));
      await procs.app(lab.ns.g1, ['tcp-echo', V4.guest, String(TCP_PORT)]);
      tcp = await procs.app(lab.ns.cn, ['tcp-client', V4.guest, String(TCP_PORT)]);
      tcp.send('hello');
      assert.equal(await tcp.waitFor((l) => l === 'echo hello'), 'echo hello');
    });

    it('after net1 moved to host B, the same client renews there: same address, TCP still open', async () => {
      assert.ok(udhcpc, 'precondition: the guest holds a lease');
      const out = await migrate(lab, 'net1', 'host-a', 'host-b', 'make-before-break');
      assert.match(out, /migration \S+ succeeded: net1/, out);
      assert.equal(
        (await agentStatus(lab, 'host-b')).networks.find((n) => n.name === 'net1')?.state,
        'active',
      );
      assert.ok(existsSync(dnsmasqPid('host-b')), 'dnsmasq runs on the new active host');
      assert.ok(!existsSync(dnsmasqPid('host-a')), 'and stopped on the old one');
      // SIGUSR1: renew now (a unicast REQUEST to the server id, 10.1.0.1 — the gateway on every host)
      udhcpc.child.kill('SIGUSR1');
      const renewed = await udhcpc.waitFor((l) => l.startsWith('udhcpc renew'), 30_000);
      assert.equal(
        renewed,
        `udhcpc renew ip=${V4.guest} mask=24 router=${V4.gateway} mtu=1460 lease=600 server=${V4.gateway}`,
      );
      // host B's dnsmasq answered it (its lines are in host B's agent log at debug)
      assert.match(agentLog('host-b'), /DHCPACK\(ofl-net1\) 10\.1\.0\.10 /);
      tcp.send('after the move');
      assert.equal(
        await tcp.waitFor((l) => l === 'echo after the move' || l === 'closed'),
        'echo after the move',
      );
    });

    it('a client that is not reserved gets nothing (reservations only)', async () => {
      // a second guest on net1's bridge (host B is active now) with a MAC of its own
      const made = await netns.build({
        namespaces: [{ name: 'g3' }],
        veths: [
          {
            a: { ns: 'g3', dev: 'g0', mac: OTHER_MAC },
            b: { ns: lab.ns['host-b'], dev: 'vg-g3', master: 'ofl-net1' },
          },
        ],
      });
      const other = udhcpcIn(made.g3, { once: true, tries: 3 });
      const code = await new Promise<number | null>((r) => other.child.once('exit', (c) => r(c)));
      assert.equal(code, 1, 'udhcpc found no lease');
      assert.ok(
        agentLog('host-b').includes(`DHCPDISCOVER(ofl-net1) ${OTHER_MAC} no address available`),
        'dnsmasq saw the request and had no address for it',
      );
      const addr = await netns.exec(made.g3, ['ip', '-4', '-o', 'addr', 'show', 'dev', 'g0']);
      assert.equal(addr.stdout.trim(), '', 'no IPv4 address on the unreserved guest');

      // SIGHUP with a reservation for it: host B's dnsmasq restarts with it
      const file = lab.agentConfigs['host-b'];
      const text = readFileSync(file, 'utf8');
      const reserved = `address: "${V4.guest}" }]`;
      assert.ok(text.includes(reserved), 'precondition: the rig wrote the reservation inline');
      writeFileSync(
        file,
        text.replace(reserved, `address: "${V4.guest}" }, { mac: "${OTHER_MAC}", address: "10.1.0.99" }]`),
      );
      const seen = lab.agents['host-b'].stderr.length;
      lab.agents['host-b'].child.kill('SIGHUP');
      await waitForLog(
        lab.agents['host-b'],
        (l) =>
          l.includes('"msg":"DHCPv4 settings applied"') && lab.agents['host-b'].stderr.indexOf(l) >= seen,
        'host-b DHCPv4 reload',
      );
      assert.match(lab.agents['host-b'].stderr.slice(seen), /"dhcp4":"restarted"/);
      const again = udhcpcIn(made.g3, { once: true, tries: 5 });
      const bound = await again.waitFor((l) => l.startsWith('udhcpc bound'), 30_000);
      assert.match(bound, /^udhcpc bound ip=10\.1\.0\.99 mask=24 router=10\.1\.0\.1 /);
      // and the guest that had its lease before the reload renews it with the new dnsmasq
      udhcpc.child.kill('SIGUSR1');
      const renewed = await udhcpc.waitFor((l) => l.startsWith('udhcpc renew'), 30_000);
      assert.match(renewed, new RegExp(`^udhcpc renew ip=${V4.guest.replaceAll('.', '\\.')} `));
    });
  });
}
