// Iproute2Kernel against the real kernel (root, network namespaces): every typed operation the backends
// use, translated into ip/tc/bridge/nft commands, and read back through the same interface. The backends'
// unit tests use FakeKernel; this file is what keeps the two honest.
//   ns "k": up0 (veth to ns "p"), bridge kbr with port kp0 (veth to ns "g")
import assert from 'node:assert/strict';
import { mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { programObject } from '../src/dataplane/bpf/syscall.ts';
import { Iproute2Kernel } from '../src/dataplane/iproute2.ts';
import {
  type FdbEvent,
  KernelOpsError,
  type NetOp,
  orderLocalRule,
  type Route,
  removeOurRules,
} from '../src/dataplane/kernel.ts';
import { haTable } from '../src/dataplane/nft.ts';
import { netnsSpawner } from '../src/system/process.ts';
import { ExecRunner } from '../src/system/runner.ts';
import { type NetnsLab, openNetns, sh } from './helpers/netns.ts';
import { dataplaneBackends, needsRoot } from './helpers/requirements.ts';

const skip = needsRoot();
const backends = skip ? [] : await dataplaneBackends();
const MAC = '52:54:00:aa:bb:01';

describe('Iproute2Kernel on the real kernel', { skip }, () => {
  let lab: NetnsLab;
  let ns: string;
  let kernel: Iproute2Kernel;
  let bpffs: string;

  before(async () => {
    lab = await openNetns();
    // k: the namespace under test, with an uplink to p and a guest bridge with g's port on it
    ({ k: ns } = await lab.build({
      namespaces: [{ name: 'k' }, { name: 'p' }, { name: 'g' }],
      bridges: [{ ns: 'k', name: 'kbr' }],
      veths: [
        { a: { ns: 'k', dev: 'up0', addresses: ['2001:db8:a::2/64'] }, b: { ns: 'p', dev: 'pu0' } },
        { a: { ns: 'g', dev: 'eth0' }, b: { ns: 'k', dev: 'kp0', master: 'kbr' } },
      ],
    }));
    kernel = new Iproute2Kernel({ runner: new ExecRunner({ netns: ns }), spawner: netnsSpawner(ns) });
    bpffs = join(lab.runDir, 'bpffs');
    mkdirSync(bpffs, { recursive: true });
    await sh(['mount', '-t', 'bpf', 'bpf', bpffs]);
  });
  after(() => lab.cleanup());

  test('netnsInode names the namespace it acts in', async () => {
    assert.equal(await kernel.netnsInode(), String(statSync(`/run/netns/${ns}`).ino));
  });

  test('rules: the kernel’s two, none ours; adding twice and deleting what is gone are no errors', async () => {
    const pristine = await kernel.rules();
    assert.deepEqual(pristine, [
      { priority: 0, table: 'local', ours: false },
      { priority: 32766, table: 'main', ours: false },
    ]);
    const decap = {
      priority: 10,
      from: '2001:db8:ffff::1/128',
      to: '2001:db8:a::2/128',
      tunnelled: true,
      table: 200,
    };
    const egress = { priority: 2000, from: '2001:db8:100::/64', iif: 'kbr', table: 100 };
    const ops: NetOp[] = [
      ...orderLocalRule(pristine),
      { op: 'add-rule', rule: decap },
      { op: 'add-rule', rule: decap },
      { op: 'add-rule', rule: egress },
    ];
    assert.deepEqual(await kernel.apply(ops), { retried: 0 });
    assert.deepEqual(await kernel.rules(), [
      { ...decap, ours: true },
      { priority: 1000, table: 'local', ours: true },
      { ...egress, ours: true },
      { priority: 32766, table: 'main', ours: false },
    ]);
    await kernel.apply(removeOurRules(await kernel.rules()));
    await kernel.apply([{ op: 'delete-rule', rule: egress }]);
    assert.deepEqual(await kernel.rules(), pristine);
  });

  for (const backend of backends) {
    test(`routes through ${backend}: replaced, read back, deleted, flushed`, async () => {
      const routes: Route[] =
        backend === 'bpf'
          ? [
              {
                dst: '2001:db8:100::/64',
                table: 'main',
                dev: 'up0',
                encap: { type: 'bpf', object: programObject(), section: 'lwt_xmit', headroom: 40, bpffs },
              },
              {
                dst: '::/0',
                table: 100,
                dev: 'up0',
                encap: { type: 'bpf', object: programObject(), section: 'lwt_xmit', headroom: 40, bpffs },
              },
            ]
          : [
              {
                dst: '2001:db8:100::/64',
                table: 'main',
                dev: 'up0',
                encap: { type: 'seg6', segment: '2001:db8:b::2' },
              },
              {
                dst: '2001:db8:a::2/128',
                table: 200,
                dev: 'up0',
                encap: { type: 'seg6local', action: 'End.DX6' },
              },
            ];
      const ops: NetOp[] = routes.map((route) => ({ op: 'replace-route', route }));
      if (backend === 'seg6') ops.push({ op: 'set-tunnel-source', address: '2001:db8:a::2' });
      await kernel.apply(ops);
      await kernel.apply(ops); // replacing is idempotent
      const read = (await kernel.routes('all')).sort((a, b) => a.dst.localeCompare(b.dst));
      const want = routes
        .map((r) => ({
          dst: r.dst,
          table: r.table,
          dev: 'up0',
          encap: r.encap.type === 'bpf' ? { type: 'bpf' } : r.encap,
        }))
        .sort((a, b) => a.dst.localeCompare(b.dst));
      assert.deepEqual(read, want);
      assert.deepEqual(await kernel.routes(routes[1]!.table), [
        want.find((w) => w.table === routes[1]!.table),
      ]);
      assert.deepEqual(await kernel.routes(4242), [], 'a table that does not exist holds nothing');
      await kernel.apply([
        { op: 'delete-route', dst: routes[0]!.dst, table: 'main' },
        { op: 'delete-route', dst: routes[0]!.dst, table: 'main' },
      ]);
      assert.equal((await kernel.routes('main')).length, 0);
      await kernel.apply([{ op: 'flush-routes', table: 'all' }]);
      assert.deepEqual(await kernel.routes('all'), []);
      if (backend === 'seg6') {
        await kernel.apply([{ op: 'set-tunnel-source', address: '::' }]);
        const { stdout } = await lab.exec(ns, ['ip', 'sr', 'tunsrc', 'show']);
        assert.match(stdout, /tunsrc addr ::$/m);
      }
    });
  }

  test('a failing op is named in the error; the ops around it are applied', async () => {
    const ok = (dst: string): NetOp => ({
      op: 'add-rule',
      rule: { priority: 3000, to: dst, table: 300 },
    });
    const bad: NetOp = {
      op: 'replace-route',
      route: {
        dst: '2001:db8:7::/64',
        table: 'main',
        dev: 'nosuchdev',
        encap: { type: 'seg6local', action: 'End.DX6' },
      },
    };
    await assert.rejects(kernel.apply([ok('2001:db8:1::/64'), bad, ok('2001:db8:2::/64')]), (err) => {
      assert.ok(err instanceof KernelOpsError);
      assert.equal(err.failures.length, 1);
      assert.deepEqual(err.failures[0]!.op, bad);
      assert.match(err.failures[0]!.message, /nosuchdev|Cannot find device|No such device/);
      return true;
    });
    const ours = (await kernel.rules()).filter((r) => r.ours).map((r) => r.to);
    assert.deepEqual(ours, ['2001:db8:1::/64', '2001:db8:2::/64']);
    await kernel.apply(removeOurRules(await kernel.rules()));
  });

  test('nftables: a table defined twice keeps its elements; elements added, read back, deleted', async () => {
    const table = haTable({ haAddress: '2001:db8:ffff::1', mss: 1400, lengths: [64, 128] });
    const element = (set: string, kind: 'set' | 'map', address: string, mark?: number) => ({
      table: 'offlink',
      set,
      kind,
      elements: [mark === undefined ? { address } : { address, mark }],
    });
    assert.equal(await kernel.nftTable('offlink'), undefined);
    await kernel.nft([
      { op: 'define-table', table },
      { op: 'add-elements', ...element('coa2id', 'map', '2001:db8:a::2', 1) },
      { op: 'add-elements', ...element('allowed_64', 'set', '2001:db8:100::', 1) },
      { op: 'add-elements', ...element('mnp_64', 'set', '2001:db8:100::') },
    ]);
    await kernel.nft([{ op: 'define-table', table }]);
    const state = await kernel.nftTable('offlink');
    assert.deepEqual(state?.sets.get('coa2id'), [{ address: '2001:db8:a::2', mark: 1 }]);
    assert.deepEqual(state?.sets.get('allowed_64'), [{ address: '2001:db8:100::', mark: 1 }]);
    assert.deepEqual(state?.sets.get('mnp_64'), [{ address: '2001:db8:100::' }]);
    assert.deepEqual(state?.sets.get('allowed_128'), []);
    assert.deepEqual(state?.counters, { 'unregistered-coa': 0, reencapsulated: 0, 'inner-source': 0 });

    // a second value for a map key fails the whole transaction: nothing of it is applied
    await assert.rejects(
      kernel.nft([
        { op: 'add-elements', ...element('mnp_128', 'set', '2001:db8:ffff::100') },
        { op: 'add-elements', ...element('coa2id', 'map', '2001:db8:a::2', 2) },
      ]),
    );
    assert.deepEqual((await kernel.nftTable('offlink'))?.sets.get('mnp_128'), []);

    // sets of a length no longer used go once the rules that look them up are rewritten without them
    await kernel.nft([
      { op: 'define-table', table: haTable({ haAddress: '2001:db8:ffff::1', mss: 1400, lengths: [64] }) },
      { op: 'delete-elements', ...element('allowed_64', 'set', '2001:db8:100::', 1) },
      { op: 'delete-elements', ...element('allowed_64', 'set', '2001:db8:100::', 1) },
      { op: 'delete-elements', ...element('coa2id', 'map', '2001:db8:a::2', 1) },
      { op: 'delete-set', table: 'offlink', set: 'allowed_128' },
      { op: 'delete-set', table: 'offlink', set: 'mnp_128' },
    ]);
    const after = await kernel.nftTable('offlink');
    assert.deepEqual(after?.sets.get('allowed_64'), []);
    assert.deepEqual(after?.sets.get('coa2id'), []);
    assert.equal(after?.sets.has('mnp_128'), false);
    await kernel.nft([{ op: 'delete-table', name: 'offlink' }]);
    await kernel.nft([{ op: 'delete-table', name: 'offlink' }]);
    assert.equal(await kernel.nftTable('offlink'), undefined);
  });

  test('tc: programs attached, listed by name, detached with their clsact', async () => {
    const program = { object: programObject(), bpffs };
    await kernel.attachProgram({ dev: 'up0', hook: 'ingress', section: 'tc', ...program });
    await kernel.attachProgram({ dev: 'up0', hook: 'ingress', section: 'tc', ...program }); // replaced
    await kernel.attachProgram({ dev: 'kbr', hook: 'egress', section: 'tc/bridge', ...program });
    const ingress = await kernel.programs('up0', 'ingress');
    assert.deepEqual(
      ingress.map((p) => p.name),
      ['ofl_decap'],
    );
    assert.ok(Number.isInteger(ingress[0]!.id) && ingress[0]!.id > 0);
    assert.deepEqual(
      (await kernel.programs('kbr', 'egress')).map((p) => p.name),
      ['ofl_bridge'],
    );
    assert.deepEqual(await kernel.programs('up0', 'egress'), []);
    for (const [dev, hook] of [
      ['up0', 'ingress'],
      ['kbr', 'egress'],
      ['kbr', 'egress'],
    ] as const)
      await kernel.detachProgram(dev, hook);
    assert.deepEqual(await kernel.programs('up0', 'ingress'), []);
    const { stdout } = await lab.exec(ns, ['tc', 'qdisc', 'show', 'dev', 'up0']);
    assert.doesNotMatch(stdout, /clsact/);
  });

  test('links and the forwarding database; a watch sees entries come and go', async () => {
    const up0 = await kernel.link('up0');
    assert.equal(up0?.name, 'up0');
    assert.ok((up0?.index ?? 0) > 1);
    assert.equal(await kernel.link('nosuchdev'), undefined);
    assert.deepEqual(
      (await kernel.links({ type: 'bridge' })).map((l) => l.name),
      ['kbr'],
    );
    assert.deepEqual(
      (await kernel.links({ master: 'kbr' })).map((l) => l.name),
      ['kp0'],
    );
    const events: FdbEvent[] = [];
    const watch = kernel.watchFdb((e) => events.push(e));
    assert.ok(watch, 'with a spawner the kernel can watch');
    try {
      await new Promise((r) => setTimeout(r, 300)); // the monitor is listening
      await lab.exec(ns, ['bridge', 'fdb', 'add', MAC, 'dev', 'kp0', 'master', 'dynamic']);
      // Linux 6.1 also lists a copy per VLAN of the port (vlan 1, the default PVID) even without VLAN
      // filtering; the entry the mirror takes is the one without a VLAN.
      const entry = (await kernel.fdb('kbr')).find((e) => e.mac === MAC && e.vlan === undefined);
      assert.deepEqual(entry, { mac: MAC, dev: 'kp0', master: 'kbr', permanent: false });
      assert.ok(
        (await kernel.fdb('kbr')).some((e) => e.permanent),
        "the ports' own addresses are permanent",
      );
      await lab.exec(ns, ['bridge', 'fdb', 'del', MAC, 'dev', 'kp0', 'master']);
      for (let i = 0; i < 50 && events.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(events, [
        { deleted: false, mac: MAC, dev: 'kp0', master: 'kbr' },
        { deleted: true, mac: MAC, dev: 'kp0', master: 'kbr' },
      ]);
    } finally {
      watch.stop();
    }
    await watch.exited;
    const plain = new Iproute2Kernel({ runner: new ExecRunner({ netns: ns }) });
    assert.equal(
      plain.watchFdb(() => {}),
      undefined,
      'without a spawner: no watch (the caller polls)',
    );
  });
  test('guest bridges and addresses: created once, adopted after, addresses read back oldest first', async () => {
    const spec = { name: 'kgl', mac: '02:00:5e:10:00:01', mtu: 1460 };
    assert.equal(await kernel.ensureBridge(spec), true);
    assert.equal(await kernel.ensureBridge({ ...spec, mtu: 1400 }), false, 'the second time adopts it');
    const { stdout } = await lab.exec(ns, ['ip', '-d', '-j', 'link', 'show', 'dev', 'kgl']);
    const [link] = JSON.parse(stdout) as { address: string; mtu: number; linkinfo: { info_kind: string } }[];
    assert.deepEqual([link?.address, link?.mtu, link?.linkinfo.info_kind], [spec.mac, 1400, 'bridge']);
    await kernel.setUp('kgl');
    assert.deepEqual(await kernel.addresses('kgl', 'link'), [], 'no kernel-made link-local');

    const changes: number[] = [];
    const watch = kernel.watchAddresses(() => changes.push(Date.now()));
    assert.ok(watch);
    try {
      await new Promise((r) => setTimeout(r, 300));
      await kernel.replaceAddress('kgl', 'fe80::1', 64);
      await kernel.replaceAddress('kgl', '2001:db8:100::1', 64);
      await kernel.replaceAddress('kgl', '2001:db8:200::1', 64);
      await kernel.replaceAddress('kgl', '2001:db8:200::1', 64);
      assert.deepEqual(await kernel.addresses('kgl', 'link'), [
        { address: 'fe80::1', prefixLength: 64, scope: 'link', flags: [] },
      ]);
      assert.deepEqual(
        (await kernel.addresses('kgl', 'global')).map((a) => a.address),
        ['2001:db8:100::1', '2001:db8:200::1'],
      );
      for (let i = 0; i < 50 && changes.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      assert.ok(changes.length > 0, 'the watch saw the new addresses');
    } finally {
      watch.stop();
    }
    // A dual-stack network's IPv4 gateway (RFC 5555): ip -4, replaced idempotently.
    await kernel.replaceAddress('kgl', '10.1.0.1', 24);
    await kernel.replaceAddress('kgl', '10.1.0.1', 24);
    const v4 = await lab.exec(ns, ['ip', '-j', '-4', 'addr', 'show', 'dev', 'kgl']);
    assert.deepEqual(
      (JSON.parse(v4.stdout) as { addr_info: { local: string; prefixlen: number }[] }[])[0]?.addr_info.map(
        (a) => `${a.local}/${a.prefixlen}`,
      ),
      ['10.1.0.1/24'],
    );
    await kernel.deleteAddress('kgl', '2001:db8:100::1', 64);
    await kernel.deleteAddress('kgl', '2001:db8:100::1', 64);
    assert.deepEqual(
      (await kernel.addresses('kgl', 'global')).map((a) => a.address),
      ['2001:db8:200::1'],
    );
    await kernel.flushNeighbours('kgl');
    await kernel.deleteLink('kgl');
    await kernel.deleteLink('kgl');
    await kernel.flushNeighbours('kgl');
    assert.equal(await kernel.link('kgl'), undefined);
    assert.deepEqual(await kernel.addresses('kgl', 'global'), [], 'no device: no addresses');
  });
});
