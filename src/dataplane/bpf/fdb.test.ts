import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseFdbLine } from './fdb.ts';

test('bridge monitor fdb lines: guests are dynamic entries of a port; the rest is not a guest', () => {
  const table: [string, ReturnType<typeof parseFdbLine>][] = [
    [
      '52:54:00:12:34:56 dev vg-guest-1 master ofl-net1 ',
      { deleted: false, mac: '52:54:00:12:34:56', dev: 'vg-guest-1', master: 'ofl-net1' },
    ],
    [
      'Deleted 52:54:00:12:34:56 dev vg-guest-1 master ofl-net1 ',
      { deleted: true, mac: '52:54:00:12:34:56', dev: 'vg-guest-1', master: 'ofl-net1' },
    ],
    ['02:11:22:33:44:55 dev vp1 master br9 permanent', undefined], // a port's own address
    ['Deleted d6:3a:f3:9c:79:17 dev br9 master br9 permanent', undefined],
    ['33:33:00:00:00:01 dev br9 self permanent', undefined], // multicast, the bridge's own
    ['01:00:5e:00:00:01 dev vp1 master br9', undefined], // multicast
    ['52:54:00:12:34:56 dev vp1 vlan 10 master br9', undefined], // VLAN entries: not mirrored
    ['garbage', undefined],
    ['', undefined],
  ];
  for (const [line, want] of table) assert.deepEqual(parseFdbLine(line), want, line);
});
