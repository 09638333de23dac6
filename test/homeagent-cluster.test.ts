// Home agent cluster end to end (issue 16; root, namespaces, real etcd): two `offlink ha` processes with
// store: etcd and the same HA address, the real data plane in each. What one HA accepts, the other
// programs into its kernel from the etcd watch, so when the Internet's route to the HA address moves to it,
// it forwards at once without a new BU; CoA changes and deregistrations reach both.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { hasEtcd } from './helpers/etcd.ts';
import { type ClusterRig, HA_NAMES, openHaClusterRig } from './helpers/ha-cluster-lab.ts';
import { ADDR, haRoutes, haStatus, STATUS, specFor } from './helpers/homeagent-lab.ts';
import { dataplaneBackends, needsRoot, skipUnless } from './helpers/requirements.ts';

const backends = await dataplaneBackends();
const BIN = new URL('../bin/offlink.js', import.meta.url).pathname;

async function until(what: string, cond: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

for (const backend of backends) {
  describe(`home agent cluster [${backend}]`, {
    skip: needsRoot() || skipUnless(hasEtcd(), 'etcd (apt-get install etcd-server)'),
    timeout: 180_000,
  }, () => {
    let rig: ClusterRig | undefined;
    let sequence = 0;

    before(async () => {
      rig = await openHaClusterRig(backend);
    });
    after(async () => {
      await rig?.close();
    });

    /** Where each HA's kernel tunnels the MNP. */
    async function tunnels(): Promise<string[]> {
      const r = rig!;
      return Promise.all(HA_NAMES.map((name) => haRoutes(r.lab, r.ns[name], ADDR.mnp)));
    }

    async function reaches(from: 'cn' | 'ga' | 'gb', to: string): Promise<boolean> {
      const r = await rig!.agents[from].probe(to, { count: 3, size: 1400 });
      return r.received === r.sent;
    }

    it('a BU accepted by HA1 is programmed in both kernels; HA2 then forwards without any BU', async () => {
      const r = rig!;
      await r.routeHomeTo('ha1');
      const reg = await r.agents.mra.bu(specFor(ADDR.coaA, ++sequence));
      assert.equal(reg.ba?.status, 0);
      const want = `tunnel ${ADDR.ha} -> ${ADDR.coaA}`;
      await until('both HAs tunnel the MNP to CoA A', async () => (await tunnels()).every((t) => t === want));
      assert.ok(await reaches('cn', ADDR.guest), 'through HA1');
      await r.routeHomeTo('ha2');
      assert.ok(await reaches('cn', ADDR.guest), 'correspondent → guest through HA2');
      assert.ok(await reaches('ga', ADDR.cn), 'guest → correspondent through HA2');
      const [b2] = (await haStatus(r.lab, r.ns.ha2)).bindings;
      assert.equal(b2?.sequence, sequence, 'HA2 holds the binding HA1 accepted, no BU sent to HA2');
    });

    it('offlink status --ha on HA2 lists both members, serving, and that HA1 served the binding', async () => {
      const r = rig!;
      const status = async () =>
        (await r.lab.exec(r.ns.ha2, [process.execPath, BIN, 'status', '--ha', STATUS])).stdout;
      await until('both members serving', async () => (await status()).match(/ serving /g)?.length === 2);
      const text = await status();
      assert.match(text, /^cluster \(2 members; this HA: ha2, etcd reachable/m);
      assert.match(text, /^ha1 +serving +(yes|-) /m);
      assert.match(text, /^ha2 +serving +(yes|-) /m);
      assert.equal(text.match(/ yes /g)?.length, 1, 'one expiry owner');
      assert.match(text, new RegExp(`^${ADDR.hoa} +${ADDR.coaA} .* ha1$`, 'm'), 'served by HA1');
    });

    it('a CoA change accepted by HA2 moves the tunnel in HA1 too', async () => {
      const r = rig!;
      await r.routeHomeTo('ha2');
      const move = await r.agents.mrb.bu(specFor(ADDR.coaB, ++sequence));
      assert.equal(move.ba?.status, 0);
      const want = `tunnel ${ADDR.ha} -> ${ADDR.coaB}`;
      await until('both HAs tunnel the MNP to CoA B', async () => (await tunnels()).every((t) => t === want));
      await r.routeHomeTo('ha1');
      assert.ok(await reaches('cn', ADDR.guest), 'through HA1 to the guest behind B');
    });

    it('a deregistration accepted by HA1 removes the binding from both', async () => {
      const r = rig!;
      await r.routeHomeTo('ha1');
      const dereg = await r.agents.mrb.bu(specFor(ADDR.coaB, ++sequence, { lifetime: 0 }));
      assert.equal(dereg.ba?.status, 0);
      await until('neither HA tunnels the MNP', async () => (await tunnels()).every((t) => t === ''));
      for (const name of HA_NAMES)
        assert.deepEqual((await haStatus(r.lab, r.ns[name])).bindings, [], `${name} holds no binding`);
    });
  });
}
