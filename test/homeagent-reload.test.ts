// SIGHUP reloads the real home agent's config (root, namespaces): `offlink ha` runs with two mobile
// routers registered; the config file is rewritten (one MR removed, the other's key rotated) and the
// daemon gets SIGHUP. The removed MR's binding and tunnel go, the other binding stays exactly as it was
// and keeps carrying its guest's traffic, the old key is refused and the new one accepted. A broken file
// and a change only a restart can apply are refused, and the daemon runs on as before.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { waitUntil } from './helpers/faults.ts';
import {
  ADDR,
  type BindingView,
  type HaRig,
  type haFiles,
  haMetric,
  haRoutes,
  haStatus,
  KEY,
  KEY2,
  openHaRig,
  SPI,
  SPI2,
  specFor,
  type Topology,
} from './helpers/homeagent-lab.ts';
import type { WireSpec } from './helpers/homeagent-mr-agent.ts';
import type { NetnsLab } from './helpers/netns.ts';
import { dataplaneBackends, needsRoot } from './helpers/requirements.ts';

const NEW_SPI = 1011;
const NEW_KEY = '7a'.repeat(20);

const backends = await dataplaneBackends();

for (const backend of backends) {
  describe(`home agent config reload on SIGHUP [${backend}]`, { skip: needsRoot(), timeout: 120_000 }, () => {
    let rig: HaRig | undefined;
    let files: ReturnType<typeof haFiles>;
    let lab: NetnsLab;
    let ns: Topology;
    let ha: { child: ChildProcess; log: string[] };
    let agents: HaRig['agents'];
    let original: string;
    let sequence = 0;
    /** net1's binding before the reload. */
    let net1: BindingView | undefined;

    before(async () => {
      rig = await openHaRig(backend);
      ({ files, lab, ns, ha, agents } = rig);
      original = readFileSync(files.config, 'utf8');
    });

    after(async () => {
      await rig?.close();
    });

    const binding = async (hoa: string) => (await haStatus(lab, ns.ha)).bindings.find((b) => b.hoa === hoa);

    /** SIGHUP, then the HA's next log line about it: 'config reloaded' or 'config not reloaded'. */
    async function hangup(): Promise<string> {
      const seen = ha.log.length;
      ha.child.kill('SIGHUP');
      return waitUntil('the HA to log the reload', async () =>
        ha.log.slice(seen).find((l) => /"msg":"config (not )?reloaded"/.test(l)),
      );
    }

    it('both mobile routers register and net1 carries its guest traffic', async () => {
      assert.equal((await agents.mra.bu(specFor(ADDR.coaA, ++sequence))).ba?.status, 0);
      const net2: Partial<WireSpec> = {
        hoa: ADDR.hoa2,
        spi: SPI2,
        key: KEY2,
        algorithm: 'hmac-sha256',
        prefixes: [ADDR.mnp2],
      };
      assert.equal((await agents.mrb.bu(specFor(ADDR.coaB, ++sequence, net2))).ba?.status, 0);
      assert.notEqual(await haRoutes(lab, ns.ha, ADDR.mnp2), '');
      const probe = await agents.cn.probe(ADDR.guest, { count: 5 });
      assert.equal(probe.received, probe.sent, 'correspondent ↔ guest through the tunnel');
      net1 = await binding(ADDR.hoa);
      assert.ok(net1);
    });

    it('a removed MR loses binding and tunnel; the other binding is untouched and keeps its traffic', async () => {
      assert.ok(net1, 'precondition: both registered');
      const rotated = original
        .replace(/^ {2}- \{ name: net2.*\n/m, '')
        .replace(`spi: ${SPI}, key: ${KEY}`, `spi: ${NEW_SPI}, key: ${NEW_KEY}`);
      assert.notEqual(rotated, original);
      writeFileSync(files.config, rotated);
      // Traffic through net1 while the HA reloads: none of it may be lost.
      const during = agents.cn.probe(ADDR.guest, { count: 200, intervalMs: 5 });
      const line = await hangup();
      assert.match(line, /"msg":"config reloaded"/);
      assert.match(line, /"mobileRouters":1,"removed":1,"kept":1/);
      const probe = await during;
      assert.equal(
        probe.received,
        probe.sent,
        `no probe lost across the reload: ${probe.received}/${probe.sent}`,
      );
      assert.equal(await binding(ADDR.hoa2), undefined, "net2's binding removed");
      assert.equal(await haRoutes(lab, ns.ha, ADDR.mnp2), '', "net2's tunnel removed");
      const after = await binding(ADDR.hoa);
      assert.deepEqual({ ...after, remainingSeconds: 0 }, { ...net1, remainingSeconds: 0 }, 'net1 as it was');
      assert.equal(await haMetric(lab, ns.ha, 'offlink_ha_config_reloads_total'), 1);
    });

    it("net1's old key is refused and its new one accepted", async () => {
      const old = await agents.mra.bu(specFor(ADDR.coaA, ++sequence));
      assert.equal(old.ba?.status, 146, 'the rotated-out key no longer authenticates');
      const fresh = await agents.mra.bu(specFor(ADDR.coaA, ++sequence, { spi: NEW_SPI, key: NEW_KEY }));
      assert.equal(fresh.ba?.status, 0);
      assert.equal(fresh.ba?.authentic, true, 'BA signed with the new key');
    });

    it('a broken file or a restart-only change is refused; the daemon runs on with what it had', async () => {
      const good = readFileSync(files.config, 'utf8');
      const before = await binding(ADDR.hoa);
      assert.ok(before, 'precondition: net1 registered');
      writeFileSync(files.config, `${good}\n  - { name: broken`);
      assert.match(await hangup(), /"msg":"config not reloaded"/);
      writeFileSync(files.config, good.replace('uplink: ha-up', 'uplink: other0'));
      const refused = await hangup();
      assert.match(refused, /"msg":"config not reloaded"/);
      assert.match(refused, /homeAgent\.uplink changed, which only a restart applies/);
      assert.equal(ha.child.exitCode, null, 'still running');
      assert.deepEqual(await binding(ADDR.hoa).then((b) => b && { ...b, remainingSeconds: 0 }), {
        ...before,
        remainingSeconds: 0,
      });
      const probe = await agents.cn.probe(ADDR.guest, { count: 5 });
      assert.equal(probe.received, probe.sent);
      assert.equal(await haMetric(lab, ns.ha, 'offlink_ha_config_reloads_total'), 1);
      writeFileSync(files.config, good);
    });
  });
}
