import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CommandRunner, RunOptions, RunResult } from '../dataplane/types.ts';
import { HypervisorError } from './driver.ts';
import { NetnsDriver } from './netns.ts';

// A tiny model of the kernel's links per namespace that understands exactly the `ip` commands the driver
// uses, with the kernel's behaviour on a failed move (namespace changed, then master fails: the link stays
// in the destination, detached).
interface Link {
  ifindex: number;
  ifname: string;
  up: boolean;
  master?: string;
  kind?: string;
}
const CURRENT = '(current)';

class FakeIp implements CommandRunner {
  readonly calls: string[][] = [];
  readonly ns = new Map<string, Link[]>();
  private nextIndex = 10;
  /** Make the next move command fail the way this says. */
  failMove: 'name-clash' | 'bad-master' | undefined;

  add(ns: string, link: Omit<Link, 'ifindex'> & { ifindex?: number }): Link {
    const l = { ifindex: link.ifindex ?? this.nextIndex++, ...link };
    if (!this.ns.has(ns)) this.ns.set(ns, []);
    this.ns.get(ns)!.push(l);
    return l;
  }

  where(ifname: string): { ns: string; link: Link } | undefined {
    for (const [ns, links] of this.ns) {
      const link = links.find((l) => l.ifname === ifname);
      if (link) return { ns, link };
    }
    return undefined;
  }

  async run(argv: readonly string[], _options?: RunOptions): Promise<RunResult> {
    this.calls.push([...argv]);
    let args = argv.slice(1);
    let ns = CURRENT;
    if (args[0] === '-n') {
      ns = args[1]!;
      args = args.slice(2);
    }
    const links = this.ns.get(ns) ?? [];
    if (args.join(' ') === '-d -j link show') {
      const json = links.map((l) => ({
        ifindex: l.ifindex,
        ifname: l.ifname,
        flags: l.up ? ['BROADCAST', 'UP'] : ['BROADCAST'],
        ...(l.master ? { master: l.master } : {}),
        ...(l.kind ? { linkinfo: { info_kind: l.kind } } : {}),
      }));
      return ok(JSON.stringify(json));
    }
    if (args[0] === 'link' && args[1] === 'set') return this.linkSet(ns, links, args.slice(2));
    if (args[0] === 'neigh' && args[1] === 'flush') return ok('');
    return fail(`fake ip: unknown command ${args.join(' ')}`);
  }

  private linkSet(ns: string, links: Link[], args: string[]): RunResult {
    const link = links.find((l) => l.ifname === args[0]);
    if (!link) return fail(`Cannot find device "${args[0]}"`);
    let at = ns;
    for (let i = 1; i < args.length; i++) {
      const word = args[i];
      if (word === 'netns') {
        const target = /^\d+$/.test(args[i + 1]!) ? CURRENT : args[i + 1]!;
        i++;
        const failure = this.failMove;
        if (failure === 'name-clash') {
          this.failMove = undefined;
          return fail('Error: An interface with the same name exists in the target netns.');
        }
        this.ns.set(
          at,
          (this.ns.get(at) ?? []).filter((l) => l !== link),
        );
        if (!this.ns.has(target)) this.ns.set(target, []);
        this.ns.get(target)!.push(link);
        link.up = false;
        delete link.master;
        at = target;
        if (failure === 'bad-master') {
          this.failMove = undefined;
          return fail('RTNETLINK answers: Invalid argument');
        }
      } else if (word === 'master') {
        const ref = args[++i]!;
        const there = this.ns.get(at) ?? [];
        const m = /^if(\d+)$/.exec(ref);
        const master = there.find((l) => (m ? l.ifindex === Number(m[1]) : l.ifname === ref));
        if (master?.kind !== 'bridge') return fail('RTNETLINK answers: Invalid argument');
        link.master = master.ifname;
      } else if (word === 'up') {
        link.up = true;
      } else return fail(`fake ip: unknown word ${word}`);
    }
    return ok('');
  }
}

function ok(stdout: string): RunResult {
  return { stdout, stderr: '', exitCode: 0 };
}
function fail(stderr: string): RunResult {
  return { stdout: '', stderr, exitCode: 2 };
}

const NET = { name: 'net1', bridge: 'ofl-net1', guests: ['guest-1'] };

function setup() {
  const ip = new FakeIp();
  ip.add('ns-a', { ifname: 'ofl-net1', up: true, kind: 'bridge', ifindex: 4 });
  ip.add('ns-b', { ifname: 'dummy', up: true, ifindex: 4 });
  ip.add('ns-b', { ifname: 'ofl-net1', up: true, kind: 'bridge', ifindex: 7 });
  ip.add('ns-a', { ifname: 'vg-guest-1', up: true, master: 'ofl-net1' });
  const namespaces = { 'host-a': 'ns-a', 'host-b': 'ns-b' };
  const a = new NetnsDriver({ host: 'host-a', namespaces, runner: ip });
  const b = new NetnsDriver({ host: 'host-b', namespaces, runner: ip });
  return { ip, a, b };
}

async function moveAtoB(a: NetnsDriver, b: NetnsDriver, hook?: () => Promise<void>) {
  const incoming = await b.prepareIncoming('guest-1', { network: NET, source: 'host-a' });
  return a.migrate(
    'guest-1',
    { host: 'host-b', incoming },
    { network: NET, ...(hook ? { onSwitchover: hook } : {}) },
  );
}

describe('NetnsDriver', () => {
  it('lists the guests on this host with their state', async () => {
    const { ip, a, b } = setup();
    assert.deepEqual(await a.listGuests(NET), [
      { name: 'guest-1', network: 'net1', state: 'running', detail: 'port vg-guest-1 on ofl-net1' },
    ]);
    assert.deepEqual(await b.listGuests(NET), []);
    ip.where('vg-guest-1')!.link.up = false;
    assert.equal((await a.listGuests(NET))[0]?.state, 'detached');
  });

  it('prepareIncoming returns the destination bridge index, checked on the destination', async () => {
    const { ip, b } = setup();
    assert.deepEqual(await b.prepareIncoming('guest-1', { network: NET, source: 'host-a' }), {
      bridge: 'ofl-net1',
      bridgeIndex: 7,
    });
    assert.deepEqual(ip.calls, [['ip', '-n', 'ns-b', '-d', '-j', 'link', 'show']]);
  });

  it('prepareIncoming refuses a missing or down bridge and a port name clash', async () => {
    const { ip, a, b } = setup();
    const other = { ...NET, bridge: 'ofl-net9' };
    await assert.rejects(
      b.prepareIncoming('guest-1', { network: other, source: 'host-a' }),
      /no bridge ofl-net9/,
    );
    ip.add('ns-b', { ifname: 'ofl-net9', up: true });
    await assert.rejects(
      b.prepareIncoming('guest-1', { network: other, source: 'host-a' }),
      /no bridge ofl-net9/,
    );
    for (const l of ip.ns.get('ns-b')!) if (l.ifname === 'ofl-net1') l.up = false;
    await assert.rejects(b.prepareIncoming('guest-1', { network: NET, source: 'host-a' }), /is down/);
    await assert.rejects(
      a.prepareIncoming('guest-1', { network: NET, source: 'host-b' }),
      /already has a link/,
    );
  });

  it('moves the port with one command, attached and up on the destination bridge', async () => {
    const { ip, a, b } = setup();
    const order: string[] = [];
    const result = await moveAtoB(a, b, async () => {
      order.push(`hook while on ${ip.where('vg-guest-1')!.ns}`);
    });
    const moves = ip.calls.filter((c) => c.includes('set'));
    assert.deepEqual(moves, [
      ['ip', '-n', 'ns-a', 'link', 'set', 'vg-guest-1', 'netns', 'ns-b', 'master', 'if7', 'up'],
    ]);
    assert.deepEqual(order, ['hook while on ns-a']);
    // The destination's neighbour cache is flushed once the guest is there (beside the check).
    const afterMove = ip.calls.slice(ip.calls.findIndex((c) => c.includes('set')) + 1);
    assert.deepEqual(afterMove.at(0), ['ip', '-n', 'ns-b', 'neigh', 'flush', 'dev', 'ofl-net1']);
    const at = ip.where('vg-guest-1')!;
    assert.equal(at.ns, 'ns-b');
    assert.equal(at.link.master, 'ofl-net1');
    assert.equal(at.link.up, true);
    assert.equal(result.transferredBytes, 0);
    assert.ok(result.downtimeMs! >= 0 && result.hypervisorMs >= result.downtimeMs!);
    assert.deepEqual(
      (await b.listGuests(NET)).map((g) => g.state),
      ['running'],
    );
    // and back
    const incoming = await a.prepareIncoming('guest-1', { network: NET, source: 'host-b' });
    assert.deepEqual(incoming, { bridge: 'ofl-net1', bridgeIndex: 4 });
    await b.migrate('guest-1', { host: 'host-a', incoming }, { network: NET });
    assert.equal(ip.where('vg-guest-1')!.ns, 'ns-a');
  });

  it('runs in its own namespace when its host has no namespace name', async () => {
    const ip = new FakeIp();
    ip.add(CURRENT, { ifname: 'ofl-net1', up: true, kind: 'bridge', ifindex: 3 });
    ip.add(CURRENT, { ifname: 'vg-guest-1', up: true, master: 'ofl-net1' });
    ip.add('ns-b', { ifname: 'ofl-net1', up: true, kind: 'bridge', ifindex: 9 });
    const a = new NetnsDriver({ host: 'host-a', namespaces: { 'host-b': 'ns-b' }, runner: ip });
    await a.migrate('guest-1', { host: 'host-b', incoming: { bridgeIndex: 9 } }, { network: NET });
    assert.deepEqual(ip.calls[1], [
      'ip',
      'link',
      'set',
      'vg-guest-1',
      'netns',
      'ns-b',
      'master',
      'if9',
      'up',
    ]);
  });

  it('a refused move (name clash) leaves the guest where it was', async () => {
    const { ip, a, b } = setup();
    ip.failMove = 'name-clash';
    await assert.rejects(moveAtoB(a, b), (err: unknown) => {
      assert.ok(err instanceof HypervisorError);
      assert.equal(err.code, 'ERR_HYPERVISOR');
      assert.match(err.message, /same name exists.*rolled back to host-a/);
      return true;
    });
    const at = ip.where('vg-guest-1')!;
    assert.deepEqual([at.ns, at.link.master, at.link.up], ['ns-a', 'ofl-net1', true]);
  });

  it('a move that fails halfway (moved, not attached) is moved back onto the source bridge', async () => {
    const { ip, a, b } = setup();
    ip.failMove = 'bad-master';
    await assert.rejects(moveAtoB(a, b), /Invalid argument.*rolled back/);
    const at = ip.where('vg-guest-1')!;
    assert.deepEqual([at.ns, at.link.master, at.link.up], ['ns-a', 'ofl-net1', true]);
    const back = ip.calls.filter((c) => c.includes('set')).at(-1);
    assert.deepEqual(back, [
      'ip',
      '-n',
      'ns-b',
      'link',
      'set',
      'vg-guest-1',
      'netns',
      'ns-a',
      'master',
      'if4',
      'up',
    ]);
    assert.deepEqual(await b.listGuests(NET), []);
  });

  it('a stale bridge index (bridge recreated after prepare) is caught and rolled back', async () => {
    const { ip, a } = setup();
    ip.add('ns-b', { ifname: 'other-br', up: true, kind: 'bridge', ifindex: 8 });
    await assert.rejects(
      a.migrate(
        'guest-1',
        { host: 'host-b', incoming: { bridge: 'ofl-net1', bridgeIndex: 8 } },
        { network: NET },
      ),
      /attached to other-br, not to ofl-net1; rolled back/,
    );
    assert.equal(ip.where('vg-guest-1')!.ns, 'ns-a');
    assert.equal(ip.where('vg-guest-1')!.link.master, 'ofl-net1');
  });

  it('a failing switchover hook moves nothing', async () => {
    const { ip, a, b } = setup();
    await assert.rejects(
      moveAtoB(a, b, async () => {
        throw new Error('peer said no');
      }),
      /switchover hook failed: peer said no/,
    );
    assert.equal(ip.where('vg-guest-1')!.ns, 'ns-a');
    assert.equal(ip.calls.filter((c) => c.includes('set')).length, 0);
  });

  it('refuses unknown destinations, absent guests and bad port names', async () => {
    const { a, b } = setup();
    await assert.rejects(
      a.migrate('guest-1', { host: 'host-z', incoming: { bridgeIndex: 7 } }, { network: NET }),
      /no namespace for host host-z/,
    );
    await assert.rejects(
      b.migrate('guest-1', { host: 'host-a', incoming: { bridgeIndex: 4 } }, { network: NET }),
      /guest guest-1 is not on host host-b/,
    );
    await assert.rejects(
      a.migrate('guest-1', { host: 'host-b', incoming: {} }, { network: NET }),
      /sent no bridge index/,
    );
    const long = new NetnsDriver({ host: 'h', namespaces: {}, runner: new FakeIp() });
    assert.throws(
      () => long.portOf('a-very-long-guest-name'),
      /hypervisor.guests.a-very-long-guest-name.port/,
    );
  });

  it('an aborted signal before switchover moves nothing', async () => {
    const { ip, a, b } = setup();
    const incoming = await b.prepareIncoming('guest-1', { network: NET, source: 'host-a' });
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(
      a.migrate('guest-1', { host: 'host-b', incoming }, { network: NET, signal: ac.signal }),
      /abort/i,
    );
    assert.equal(ip.where('vg-guest-1')!.ns, 'ns-a');
  });
});
