import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseNetDev, rateKbps } from './uplink.ts';

const NET_DEV = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
   up0: 1234567    890    0    0    0     0          0        12  7654321    4321    0    0    0     0       0          0
ofl-net1:     100       1    0    0    0     0          0         0      200       2    0    0    0     0       0          0
`;

describe('uplink', () => {
  it('parses /proc/net/dev', () => {
    const m = parseNetDev(NET_DEV);
    assert.deepEqual([...m.keys()], ['lo', 'up0', 'ofl-net1']);
    assert.deepEqual(m.get('up0'), { rxBytes: 1234567, txBytes: 7654321 });
    assert.deepEqual(m.get('ofl-net1'), { rxBytes: 100, txBytes: 200 });
  });

  it('turns byte counters into kbit/s', () => {
    // the report's stream: 49.4 packets of 1316 bytes a second ≈ 520 kbit/s
    assert.equal(rateKbps(0, 6500, 100), 520);
    assert.equal(rateKbps(100, 50, 100), 0);
    assert.equal(rateKbps(0, 100, 0), 0);
  });
});
