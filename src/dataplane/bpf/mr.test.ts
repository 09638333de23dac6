// The eBPF mobile router data plane against FakeBpf and a recording runner: a network's rules and route
// go in once; CoA changes and a handover's forwarding and trust are map entries only.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { RecordingRunner } from '../runner.ts';
import type { MobileRouterRoutes } from '../types.ts';
import { FakeBpf } from './fake.ts';
import { BpfMobileRouterDataplane } from './mr.ts';

const HA = '2001:db8:ffff::1';
const COA = '2001:db8:a::2';
const NEW_HOST = '2001:db8:b::2';
const routes = (coa = COA): MobileRouterRoutes => ({
  network: 'net1',
  haAddress: HA,
  coa,
  uplink: 'up0',
  bridge: 'ofl-net1',
  prefixes: ['2001:db8:100::/64'],
  table: 100,
  rulePref: 2000,
});
const host = (coa = COA) => ({ coa, haAddress: HA, uplink: 'up0', table: 200 });

const LINKS: Record<string, number> = { 'ofl-net1': 5, 'vg-guest': 9 };
const FDB = [
  { mac: '52:54:00:00:00:0a', ifname: 'vg-guest', flags: [], master: 'ofl-net1', state: '' },
  { mac: 'd6:3a:f3:9c:79:17', ifname: 'vg-guest', flags: [], master: 'ofl-net1', state: 'permanent' },
  { mac: '33:33:00:00:00:01', ifname: 'ofl-net1', flags: ['self'], state: 'permanent' },
];

function kernel(fake: FakeBpf, rules: () => string): RecordingRunner {
  return new RecordingRunner((argv) => {
    if (argv[0] === 'readlink') return { stdout: 'net:[7]\n' };
    const line = argv.join(' ');
    const dev = /^ip -j link show dev (\S+)$/.exec(line)?.[1];
    if (dev) return { stdout: JSON.stringify([{ ifname: dev, ifindex: LINKS[dev] }]) };
    if (line === 'ip -j link show master ofl-net1')
      return { stdout: JSON.stringify([{ ifname: 'vg-guest', ifindex: 9 }]) };
    if (line === 'bridge -j fdb show br ofl-net1') return { stdout: JSON.stringify(FDB) };
    if (line === 'ip -j link show type bridge') return { stdout: '[{"ifname":"ofl-net1"}]' };
    const env = argv[0] === 'env' ? argv[1]!.replace('TC_BPF_MNT=', '') : undefined;
    if (env && (argv.includes('replace') || argv.includes('-batch'))) fake.load(env);
    if (argv.includes('-j') && argv.includes('filter')) return { stdout: '[]' };
    if (argv.includes('-j') && argv.includes('rule')) return { stdout: rules() };
    return undefined;
  });
}

function contents(fake: FakeBpf, bpffs: string) {
  const maps = fake.openMaps(bpffs);
  try {
    return {
      encapSrc: Object.fromEntries(maps.encapSrc.entries()),
      encapDst: Object.fromEntries(maps.encapDst.entries()),
      local: maps.local.values(),
      peers: maps.peers.values().sort(),
      fdb: maps.fdb?.entries() ?? [],
    };
  } finally {
    maps.close();
  }
}

describe('BpfMobileRouterDataplane', () => {
  let dir: string;
  let fake: FakeBpf;
  let runner: RecordingRunner;
  let dp: BpfMobileRouterDataplane;
  let bpffs: string;
  let rules = '[]';

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'offlink-bpf-mr-'));
    fake = new FakeBpf();
    rules = '[]';
    runner = kernel(fake, () => rules);
    dp = new BpfMobileRouterDataplane(
      { runner, sys: fake, object: '/x/o.bpf.o' },
      { mss: 1400, runDir: dir },
    );
    bpffs = join(dir, 'bpf', 'mr-7');
    await dp.initHost(host());
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('initHost: the CoA is the tunnel endpoint, the home agent the trusted peer', () => {
    assert.deepEqual(contents(fake, bpffs), {
      encapSrc: {},
      encapDst: {},
      local: [COA],
      peers: [HA],
      fdb: [],
    });
    assert.ok(runner.lines().some((l) => l.startsWith(`env TC_BPF_MNT=${bpffs} tc filter replace dev up0`)));
  });

  test('activate: rule and route once, then the network egress is a map entry', async () => {
    runner.clear();
    await dp.activate(routes());
    const lines = runner.lines();
    const batch = lines.indexOf(`env TC_BPF_MNT=${bpffs} ip -6 -force -batch -`);
    assert.deepEqual(lines.slice(batch, batch + 3), [
      `env TC_BPF_MNT=${bpffs} ip -6 -force -batch -`,
      '  rule add pref 2000 from 2001:db8:100::/64 iif ofl-net1 lookup 100 protocol 241',
      '  route replace default proto 241 encap bpf xmit obj /x/o.bpf.o section lwt_xmit headroom 40 dev up0 table 100',
    ]);
    assert.ok(
      lines.includes(
        `env TC_BPF_MNT=${bpffs} tc filter replace dev ofl-net1 egress pref 4191 handle 1 bpf da obj /x/o.bpf.o sec tc/bridge`,
      ),
      lines.join('\n'),
    );
    assert.deepEqual(contents(fake, bpffs).encapSrc, { '2001:db8:100::/64': { src: COA, dst: HA } });
  });

  test("the bridge fast path's map mirrors the guests of the bridge's forwarding database", async () => {
    await dp.activate(routes());
    // the guest's dynamic entry only: not the port's own (permanent) address, not multicast
    assert.deepEqual(contents(fake, bpffs).fdb, [{ bridge: 5, mac: '52:54:00:00:00:0a', port: 9 }]);
    await dp.deactivate(routes());
    assert.deepEqual(contents(fake, bpffs).fdb, []);
  });

  test('a CoA change re-points the entries; no process for the network', async () => {
    await dp.activate(routes());
    runner.clear();
    await dp.initHost(host('2001:db8:c::2'));
    await dp.activate(routes('2001:db8:c::2'));
    assert.ok(
      runner.lines().every((l) => !/route|rule|bridge|ofl-net1/.test(l)),
      runner.lines().join('\n'),
    );
    const c = contents(fake, bpffs);
    assert.deepEqual(c.local, ['2001:db8:c::2']);
    assert.deepEqual(c.encapSrc, { '2001:db8:100::/64': { src: '2001:db8:c::2', dst: HA } });
  });

  test('handover: the old host forwards, the new one trusts it; all map entries', async () => {
    await dp.activate(routes());
    runner.clear();
    await dp.forward(routes(), NEW_HOST);
    await dp.acceptTunnelFrom({ coa: COA, table: 200 }, '2001:db8:d::2');
    assert.deepEqual(runner.lines(), []);
    const c = contents(fake, bpffs);
    assert.deepEqual(c.encapDst, { '2001:db8:100::/64': { src: COA, dst: NEW_HOST } });
    assert.deepEqual(c.peers, ['2001:db8:d::2', HA]);
    // the guests come back: activation ends the forwarding; the next initHost the extra trust
    await dp.activate(routes());
    await dp.initHost(host());
    assert.deepEqual(contents(fake, bpffs).encapDst, {});
    assert.deepEqual(contents(fake, bpffs).peers, [HA]);
  });

  test('deactivate: entries, rules and route of the network go', async () => {
    await dp.activate(routes());
    rules = JSON.stringify([
      { priority: 2000, src: '2001:db8:100::', srclen: 64, iif: 'ofl-net1', table: '100', protocol: '241' },
    ]);
    runner.clear();
    await dp.deactivate(routes());
    assert.deepEqual(contents(fake, bpffs).encapSrc, {});
    assert.deepEqual(runner.lines().slice(1, 4), [
      'ip -6 -force -batch -',
      '  rule del pref 2000 from 2001:db8:100::/64 iif ofl-net1 lookup 100 protocol 241',
      '  route del default proto 241 table 100',
    ]);
  });

  test('bad input is refused before anything changes', async () => {
    runner.clear();
    await assert.rejects(dp.activate({ ...routes(), rulePref: 1000 }), /bad rule preference/);
    await assert.rejects(dp.forward(routes(), 'not-an-address'), /invalid IPv6 address/);
    await assert.rejects(dp.initHost({ ...host(), uplink: 'bad name' }), /bad interface name/);
    assert.deepEqual(runner.lines(), []);
  });
});
