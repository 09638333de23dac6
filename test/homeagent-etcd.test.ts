// The home agent daemon with `store: etcd` (issue 16), in process with a fake data plane, registering MRs
// over real UDP on ::1 against a real 3-member etcd cluster (Debian's etcd-server): the binding is in etcd
// before the BA, a restarted HA serves what etcd holds, every HA programs the bindings another HA accepted
// (the watch), and a second HA whose watch has not delivered the first one's move yet refuses a BU processed
// on the stale binding (130, nothing committed), then takes the stored one.
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { systemClock } from '../src/clock.ts';
import { FakeHomeAgentDataplane } from '../src/dataplane/fake.ts';
import type { HomeAgentConfig } from '../src/homeagent/config.ts';
import { HomeAgent } from '../src/homeagent/daemon.ts';
import { EtcdError } from '../src/homeagent/etcd.ts';
import { EtcdBindingStore } from '../src/homeagent/etcdstore.ts';
import { silentLogger } from '../src/log.ts';
import { BaStatus } from '../src/protocol/constants.ts';
import type { SecurityAssociation } from '../src/protocol/types.ts';
import { EtcdCluster, hasEtcd } from './helpers/etcd.ts';
import { MrClient } from './helpers/homeagent-mr.ts';
import { skipUnless } from './helpers/requirements.ts';

const HA = '2001:db8:ffff::1';
const HOA = '2001:db8:ffff::101';
const SA: SecurityAssociation = { spi: 1001, key: Buffer.alloc(20, 0x11), algorithm: 'hmac-sha1' };
const PREFIX = '2001:db8:100::/64';

let cluster: EtcdCluster;
let n = 0;
const running: HomeAgent[] = [];
const clients: MrClient[] = [];

function config(prefix: string): HomeAgentConfig {
  return {
    homeAgent: {
      address: HA,
      uplink: 'ha-mr',
      listen: { address: '::1', port: 0 },
      status: undefined,
      database: ':memory:',
      store: 'etcd',
      etcd: { endpoints: cluster.endpoints, prefix, timeoutMs: 3000, maxTxnOps: 128, leaseTtlSeconds: 2 },
      runDir: '/run/offlink',
      dataplane: { backend: 'auto', table: 200, mss: 1400 },
      maxLifetimeSeconds: 3600,
      refreshAdviceSeconds: undefined,
      replayWindowSeconds: 7,
      retainOnStop: true,
    },
    mobileRouters: [{ name: 'mr1', homeAddress: HOA, prefixes: [PREFIX], ...SA }],
  };
}

/** An HA whose watch has not delivered anything yet (it never does): what a BU racing the watch meets. */
class UnwatchedStore extends EtcdBindingStore {
  override watch(): () => void {
    return () => {};
  }
}

/**
 * An HA whose first watch is held back: the test ends it with an error of its choosing (as the real stream
 * would, e.g. after a compaction); the watches the daemon opens after that are real.
 */
class HeldWatchStore extends EtcdBindingStore {
  end: ((err: Error) => void) | undefined;
  override watch(...args: Parameters<EtcdBindingStore['watch']>): () => void {
    if (this.end) return super.watch(...args);
    this.end = args[1];
    return () => {};
  }
}

async function homeAgent(
  prefix: string,
  options: { watch?: boolean; store?: EtcdBindingStore } = {},
): Promise<{ ha: HomeAgent; dp: FakeHomeAgentDataplane; mr: MrClient }> {
  const dp = new FakeHomeAgentDataplane();
  const c = config(prefix);
  // Otherwise no store component: the daemon opens the etcd store its config names.
  const store =
    options.store ?? (options.watch === false ? new UnwatchedStore(c.homeAgent.etcd!) : undefined);
  const ha = new HomeAgent(
    { clock: systemClock, logger: silentLogger(), dataplane: dp, ...(store ? { store } : {}) },
    c,
  );
  await ha.start();
  running.push(ha);
  const mr = new MrClient({ coa: '::1', hoa: HOA, ha: HA, sa: SA, haTarget: '::1', haPort: ha.port });
  await mr.open('::1');
  clients.push(mr);
  return { ha, dp, mr };
}

async function stored(prefix: string) {
  const s = new EtcdBindingStore({ endpoints: cluster.endpoints, prefix });
  try {
    return (await s.load()).bindings;
  } finally {
    await s.close();
  }
}

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Two HAs on a fresh prefix (the first is the expiry owner). */
async function twoHomeAgents() {
  const prefix = `/offlink-ha-test/${++n}/`;
  const a = await homeAgent(prefix);
  const b = await homeAgent(prefix);
  return { prefix, a, b };
}

/** The BA status of a BU for PREFIX with a fresh timestamp. */
async function register(mr: MrClient, sequence: number, lifetime: number): Promise<number> {
  return (await mr.bu({ sequence, lifetime, prefixes: [PREFIX], timestampMs: at() })).ba.status;
}

let stamp = 0;
const at = () => Date.now() + ++stamp / 1000;

describe('home agent with store: etcd', {
  skip: skipUnless(hasEtcd(), 'etcd (apt-get install etcd-server)'),
}, () => {
  before(async () => {
    cluster = await EtcdCluster.start(3);
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    for (const ha of running.splice(0)) await ha.stop();
  });
  after(async () => {
    await cluster?.stop();
  });

  test('registers over real UDP: the binding is in etcd when the BA arrives; a restarted HA serves it', async () => {
    const prefix = `/offlink-ha-test/${++n}/`;
    const { ha, dp, mr } = await homeAgent(prefix);
    const { ba, authentic } = await mr.bu({
      sequence: 1,
      lifetime: 25,
      prefixes: [PREFIX],
      timestampMs: at(),
    });
    assert.equal(ba.status, 0);
    assert.ok(authentic);
    const [b] = await stored(prefix);
    assert.deepEqual([b?.hoa, b?.coa, b?.sequence, b?.prefixes], [HOA, '::1', 1, [PREFIX]]);
    assert.deepEqual([...dp.bindings.keys()], [HOA]);
    // Deregistration deletes it from etcd; its replay state stays (an old BU cannot bring it back).
    assert.equal(
      (await mr.bu({ sequence: 2, lifetime: 0, prefixes: [PREFIX], timestampMs: at() })).ba.status,
      0,
    );
    assert.deepEqual(await stored(prefix), []);
    assert.equal(
      (await mr.bu({ sequence: 3, lifetime: 25, prefixes: [PREFIX], timestampMs: at() })).ba.status,
      0,
    );
    await ha.stop();
    running.length = 0;

    const second = await homeAgent(prefix);
    assert.equal(second.ha.cache.get(HOA)?.sequence, 3, 'loaded from etcd');
    assert.deepEqual([...second.dp.bindings.keys()], [HOA], 'and reconciled into the data plane');
    const old = await second.mr.bu({ sequence: 3, lifetime: 25, prefixes: [PREFIX], timestampMs: at() });
    assert.equal(old.ba.status, 135, 'sequence 3 is not newer than the stored 3');
  });

  test('two HAs on one prefix: a BU processed on a binding the other HA has since moved gets 130, then the stored binding is taken', async () => {
    const prefix = `/offlink-ha-test/${++n}/`;
    const a = await homeAgent(prefix);
    assert.equal(await register(a.mr, 1, 25), 0);
    const b = await homeAgent(prefix, { watch: false }); // loads sequence 1
    assert.equal(b.ha.cache.get(HOA)?.sequence, 1);
    // The MR moves through A: sequence 2 from ::1.
    assert.equal(await register(a.mr, 2, 25), 0);
    // B, its watch behind, still holds sequence 1: a BU with sequence 2 would be accepted there and must not
    // replace A's sequence 2 in etcd.
    const stale = await b.mr.bu({ sequence: 2, lifetime: 30, prefixes: [PREFIX], timestampMs: at() });
    assert.equal(stale.ba.status, 130);
    const [s] = await stored(prefix);
    assert.equal(s?.lifetimeSeconds, 100, "A's binding (25 × 4 s) is what etcd holds");
    // B took the stored binding: the retransmission is answered against it.
    assert.equal(b.ha.cache.get(HOA)?.sequence, 2);
    const again = await b.mr.bu({ sequence: 2, lifetime: 30, prefixes: [PREFIX], timestampMs: at() });
    assert.equal(again.ba.status, 135, 'sequence 2 is not newer than the stored 2');
    const next = await b.mr.bu({ sequence: 3, lifetime: 30, prefixes: [PREFIX], timestampMs: at() });
    assert.equal(next.ba.status, 0);
    assert.equal((await stored(prefix))[0]?.sequence, 3);
  });
  test('two watching HAs: a BU accepted by one is programmed on the other, a deregistration removed on both', async () => {
    const { a, b } = await twoHomeAgents();
    assert.equal(await register(a.mr, 1, 25), 0);
    await until('B programs the binding A accepted', () => b.dp.bindings.has(HOA));
    assert.deepEqual(b.dp.routes(), a.dp.routes());
    assert.equal(b.ha.cache.get(HOA)?.sequence, 1);
    // B now answers on top of A's binding: the same sequence is not newer, the next one is accepted.
    assert.equal(await register(b.mr, 1, 25), 135);
    assert.equal(await register(b.mr, 2, 30), 0);
    await until("A takes B's refresh", () => a.ha.cache.get(HOA)?.sequence === 2);
    assert.equal(a.ha.cache.get(HOA)?.lifetimeSeconds, 120);
    // Deregistration through A: gone from both data planes.
    assert.equal(await register(a.mr, 3, 0), 0);
    assert.equal(a.dp.bindings.size, 0);
    await until('B removes it', () => !b.dp.bindings.has(HOA));
    assert.equal(b.ha.cache.size, 0);
    // A BU older than the deregistration (inside the clock window) is refused by B too: the replay state
    // came with the delete; without it B, holding no binding, would accept it.
    const replayed = await b.mr.bu({
      sequence: 4,
      lifetime: 25,
      prefixes: [PREFIX],
      timestampMs: Date.now() - 2000,
    });
    assert.equal(replayed.ba.status, BaStatus.MIPV6_ID_MISMATCH);
  });
  async function expiredCount(ha: HomeAgent): Promise<number> {
    return (await ha.metrics.expired.get()).values.reduce((sum, v) => sum + v.value, 0);
  }

  const membership = (ha: HomeAgent) => ha.health()['cluster'] as { expiryOwner: boolean; etcd: string };

  test('one expiry per binding: only the expiry owner removes it, and both HAs drop it', async () => {
    const { prefix, a, b } = await twoHomeAgents();
    assert.deepEqual([membership(a.ha).expiryOwner, membership(b.ha).expiryOwner], [true, false]);
    assert.equal(membership(b.ha).etcd, 'reachable');
    // Accepted by B (not the owner): 4 s.
    const reg = await b.mr.bu({ sequence: 1, lifetime: 1, prefixes: [PREFIX], timestampMs: at() });
    assert.equal(reg.ba.status, 0);
    await until('A has it', () => a.dp.bindings.has(HOA));
    await until('both dropped it', () => !a.dp.bindings.has(HOA) && !b.dp.bindings.has(HOA), 15_000);
    assert.deepEqual([a.ha.cache.size, b.ha.cache.size], [0, 0]);
    assert.deepEqual([await expiredCount(a.ha), await expiredCount(b.ha)], [1, 0]);
    assert.deepEqual(await stored(prefix), []);
  });

  test('a refresh through one HA keeps the binding on the owner, which would otherwise expire it', async () => {
    const { a, b } = await twoHomeAgents();
    assert.equal(await register(b.mr, 1, 1), 0);
    // Refreshed through B every 2 s for 6 s: past the first 4 s lifetime, A (the owner) must not expire it.
    for (let seq = 2; seq <= 4; seq++) {
      await new Promise((r) => setTimeout(r, 2000));
      assert.equal(await register(b.mr, seq, 1), 0);
    }
    assert.ok(a.dp.bindings.has(HOA), 'still programmed on the owner');
    assert.equal(await expiredCount(a.ha), 0);
  });

  test('the expiry owner stops: another HA takes the expiry over', async () => {
    const { prefix, a, b } = await twoHomeAgents();
    assert.equal(await register(a.mr, 1, 1), 0);
    await until('B has it', () => b.dp.bindings.has(HOA));
    await a.ha.stop(); // revokes its lease: the expiry key goes with it
    running.splice(running.indexOf(a.ha), 1);
    await until('B owns expiry', () => membership(b.ha).expiryOwner, 5000);
    await until('B expired it', () => !b.dp.bindings.has(HOA), 15_000);
    assert.equal(await expiredCount(b.ha), 1);
    assert.deepEqual(await stored(prefix), []);
  });
  test('a watch compacted past its revision: the HA reloads every binding from etcd and watches on', async () => {
    const prefix = `/offlink-ha-test/${++n}/`;
    const a = await homeAgent(prefix);
    const held = new HeldWatchStore({ ...config(prefix).homeAgent.etcd!, name: 'held' });
    const b = await homeAgent(prefix, { store: held });
    // What B's (held) watch misses: a registration through A; then etcd compacts that history away.
    assert.equal(await register(a.mr, 1, 25), 0);
    const { revision } = await held.snapshot();
    const res = await fetch(`${cluster.endpoints[0]}/v3/kv/compaction`, {
      method: 'POST',
      body: JSON.stringify({ revision: String(revision) }),
    });
    assert.equal(res.status, 200);
    assert.ok(!b.dp.bindings.has(HOA), 'B missed it');
    held.end!(new EtcdError('ERR_ETCD_COMPACTED', 'watch: compacted past revision 1'));
    await until('B reloaded the binding from etcd', () => b.dp.bindings.has(HOA));
    assert.equal(b.ha.cache.get(HOA)?.sequence, 1);
    // And watches from the snapshot's revision: A's deregistration reaches B.
    assert.equal(await register(a.mr, 2, 0), 0);
    await until('B removes it', () => !b.dp.bindings.has(HOA));
  });
});
