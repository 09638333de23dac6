import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HypervisorError } from './driver.ts';
import type { LinkControl, LinkState } from './links.ts';
import { NetnsDriver } from './netns.ts';

// A model of the kernel's links per namespace behind the driver's typed seam, with the kernel's behaviour
// on a failed move (namespace changed, then master fails: the link stays in the destination, detached).
// The real thing: test/netns-driver.test.ts.
const CURRENT = '(current)';

type LinkCall =
  | { call: 'list'; namespace: string }
  | { call: 'move'; port: string; from: string; to: string; masterIndex: number }
  | { call: 'attach'; namespace: string; port: string; bridge: string }
  | { call: 'flushNeighbours'; namespace: string; dev: string };

class FakeLinks implements LinkControl {
  readonly calls: LinkCall[] = [];
  readonly ns = new Map<string, LinkState[]>();
  private nextIndex = 10;
  /** Make the next move fail the way this says. */
  failMove: 'name-clash' | 'bad-master' | undefined;

  add(
    ns: string,
    link: Omit<LinkState, 'index' | 'bridge'> & { index?: number; bridge?: boolean },
  ): LinkState {
    const l = { index: link.index ?? this.nextIndex++, bridge: false, ...link };
    this.in(ns).push(l);
    return l;
  }

  where(name: string): { ns: string; link: LinkState } | undefined {
    for (const [ns, links] of this.ns) {
      const link = links.find((l) => l.name === name);
      if (link) return { ns, link };
    }
    return undefined;
  }

  /** The calls that change something. */
  changes(): LinkCall[] {
    return this.calls.filter((call) => call.call === 'move' || call.call === 'attach');
  }

  async list(namespace: string | undefined): Promise<LinkState[]> {
    this.calls.push({ call: 'list', namespace: namespace ?? CURRENT });
    return structuredClone(this.ns.get(namespace ?? CURRENT) ?? []);
  }

  async move(
    port: string,
    from: string | undefined,
    to: string | undefined,
    masterIndex: number,
  ): Promise<void> {
    const [src, dst] = [from ?? CURRENT, to ?? CURRENT];
    this.calls.push({ call: 'move', port, from: src, to: dst, masterIndex });
    const link = this.in(src).find((l) => l.name === port);
    if (!link) throw new Error(`Cannot find device "${port}"`);
    const failure = this.failMove;
    this.failMove = undefined;
    if (failure === 'name-clash')
      throw new Error('An interface with the same name exists in the target netns.');
    this.ns.set(
      src,
      this.in(src).filter((l) => l !== link),
    );
    this.in(dst).push(link);
    link.up = false;
    delete link.master;
    if (failure === 'bad-master') throw new Error('Invalid argument');
    const master = this.in(dst).find((l) => l.index === masterIndex);
    if (!master?.bridge) throw new Error('Invalid argument');
    link.master = master.name;
    link.up = true;
  }

  async attach(namespace: string | undefined, port: string, bridge: string): Promise<void> {
    const ns = namespace ?? CURRENT;
    this.calls.push({ call: 'attach', namespace: ns, port, bridge });
    const link = this.in(ns).find((l) => l.name === port);
    const master = this.in(ns).find((l) => l.name === bridge);
    if (!link) throw new Error(`Cannot find device "${port}"`);
    if (!master?.bridge) throw new Error('Invalid argument');
    link.master = bridge;
    link.up = true;
  }

  async flushNeighbours(namespace: string | undefined, dev: string): Promise<void> {
    this.calls.push({ call: 'flushNeighbours', namespace: namespace ?? CURRENT, dev });
  }

  private in(ns: string): LinkState[] {
    const links = this.ns.get(ns) ?? [];
    this.ns.set(ns, links);
    return links;
  }
}

const driver = (host: string, namespaces: Record<string, string>, links: FakeLinks) =>
  new NetnsDriver({
    host,
    namespaces,
    links,
    runner: {
      run: () => {
        throw new Error('the driver reached for a command');
      },
    },
  });

const NET = { name: 'net1', bridge: 'ofl-net1', guests: ['guest-1'] };

function setup() {
  const ip = new FakeLinks();
  ip.add('ns-a', { name: 'ofl-net1', up: true, bridge: true, index: 4 });
  ip.add('ns-b', { name: 'dummy', up: true, index: 4 });
  ip.add('ns-b', { name: 'ofl-net1', up: true, bridge: true, index: 7 });
  ip.add('ns-a', { name: 'vg-guest-1', up: true, master: 'ofl-net1' });
  const namespaces = { 'host-a': 'ns-a', 'host-b': 'ns-b' };
  const a = driver('host-a', namespaces, ip);
  const b = driver('host-b', namespaces, ip);
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
    assert.deepEqual(ip.calls, [{ call: 'list', namespace: 'ns-b' }]);
  });

  it('prepareIncoming refuses a missing or down bridge and a port name clash', async () => {
    const { ip, a, b } = setup();
    const other = { ...NET, bridge: 'ofl-net9' };
    await assert.rejects(
      b.prepareIncoming('guest-1', { network: other, source: 'host-a' }),
      /no bridge ofl-net9/,
    );
    ip.add('ns-b', { name: 'ofl-net9', up: true });
    await assert.rejects(
      b.prepareIncoming('guest-1', { network: other, source: 'host-a' }),
      /no bridge ofl-net9/,
    );
    for (const l of ip.ns.get('ns-b') ?? []) if (l.name === 'ofl-net1') l.up = false;
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
    assert.deepEqual(ip.changes(), [
      { call: 'move', port: 'vg-guest-1', from: 'ns-a', to: 'ns-b', masterIndex: 7 },
    ]);
    assert.deepEqual(order, ['hook while on ns-a']);
    // The destination's neighbour cache is flushed once the guest is there (beside the check).
    const afterMove = ip.calls.slice(ip.calls.findIndex((call) => call.call === 'move') + 1);
    assert.deepEqual(afterMove.at(0), { call: 'flushNeighbours', namespace: 'ns-b', dev: 'ofl-net1' });
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
    const ip = new FakeLinks();
    ip.add(CURRENT, { name: 'ofl-net1', up: true, bridge: true, index: 3 });
    ip.add(CURRENT, { name: 'vg-guest-1', up: true, master: 'ofl-net1' });
    ip.add('ns-b', { name: 'ofl-net1', up: true, bridge: true, index: 9 });
    const a = driver('host-a', { 'host-b': 'ns-b' }, ip);
    await a.migrate('guest-1', { host: 'host-b', incoming: { bridgeIndex: 9 } }, { network: NET });
    assert.deepEqual(ip.calls.slice(0, 2), [
      { call: 'list', namespace: CURRENT },
      { call: 'move', port: 'vg-guest-1', from: CURRENT, to: 'ns-b', masterIndex: 9 },
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
    assert.deepEqual(ip.changes().at(-1), {
      call: 'move',
      port: 'vg-guest-1',
      from: 'ns-b',
      to: 'ns-a',
      masterIndex: 4,
    });
    assert.deepEqual(await b.listGuests(NET), []);
  });

  it('a stale bridge index (bridge recreated after prepare) is caught and rolled back', async () => {
    const { ip, a } = setup();
    ip.add('ns-b', { name: 'other-br', up: true, bridge: true, index: 8 });
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
    assert.deepEqual(ip.changes(), []);
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
    const long = driver('h', {}, new FakeLinks());
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
