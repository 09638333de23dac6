import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { haBirdConf, routerBirdConf } from './bird.ts';

const HA1 = {
  name: 'ha1',
  asn: 65001,
  routerId: '10.255.0.1',
  address: '2001:db8:1::2',
  router: '2001:db8:1::1',
  address4: '172.16.1.2',
  router4: '172.16.1.1',
};

describe('BIRD configs of the HA cluster', () => {
  it("an HA announces its prefixes via the tun device, IPv4 over the IPv4 link's own session", () => {
    const conf = haBirdConf(HA1, {
      device: 'offlink-ha',
      prefixes: ['2001:db8:f::1/128', '2001:db8:100::/64'],
      prefixes4: ['10.1.0.0/24'],
    });
    assert.match(conf, /^router id 10\.255\.0\.1;$/m);
    assert.match(
      conf,
      /protocol static anycast \{\n {2}ipv6;\n {2}route 2001:db8:f::1\/128 via "offlink-ha";\n {2}route 2001:db8:100::\/64 via "offlink-ha";\n\}/,
    );
    assert.match(
      conf,
      /protocol static anycast4 \{\n {2}ipv4;\n {2}route 10\.1\.0\.0\/24 via "offlink-ha";\n\}/,
    );
    assert.match(
      conf,
      /protocol bgp uplink \{\n {2}local 2001:db8:1::2 as 65001;\n {2}neighbor 2001:db8:1::1 as 65000;/,
    );
    assert.match(conf, /ipv6 \{ import none; export where proto = "anycast"; \};/);
    assert.match(
      conf,
      /protocol bgp uplink4 \{\n {2}local 172\.16\.1\.2 as 65001;\n {2}neighbor 172\.16\.1\.1 as 65000;/,
    );
    assert.match(conf, /ipv4 \{ import none; export where proto = "anycast4"; \};/);
  });

  it('IPv6 only: no IPv4 static, session or kernel protocol', () => {
    const { address4: _a, router4: _r, ...v6 } = HA1;
    const conf = haBirdConf(v6, { device: 'offlink-ha', prefixes: ['2001:db8:f::/64'], prefixes4: [] });
    assert.doesNotMatch(conf, /ipv4|anycast4|uplink4/);
    const router = routerBirdConf([v6, { ...v6, name: 'ha2', asn: 65002, address: '2001:db8:2::2' }]);
    assert.doesNotMatch(router, /ipv4/);
    assert.match(
      router,
      /protocol bgp ha2 \{\n {2}local 2001:db8:1::1 as 65000;\n {2}neighbor 2001:db8:2::2 as 65002;/,
    );
  });

  it('the router imports every HA route (both families) into its kernel, with quick reconnects', () => {
    const conf = routerBirdConf([HA1]);
    assert.match(conf, /protocol kernel \{ ipv6 \{ import none; export all; \}; \}/);
    assert.match(conf, /protocol kernel \{ ipv4 \{ import none; export all; \}; \}/);
    assert.match(
      conf,
      /protocol bgp ha1_v4 \{\n {2}local 172\.16\.1\.1 as 65000;\n {2}neighbor 172\.16\.1\.2 as 65001;/,
    );
    assert.match(conf, /connect retry time 2;/);
  });
});
