import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Datagram, UdpTransport } from './udp.ts';

test('UdpTransport delivers a datagram with the outer source address and port', async () => {
  const a = new UdpTransport();
  const b = new UdpTransport();
  let deliver: (d: Datagram) => void = () => {};
  const received = new Promise<Datagram>((resolve) => {
    deliver = resolve;
  });
  await b.listen('::1', 0, (d) => deliver(d));
  await a.listen('::1', 0, () => {});
  try {
    await a.send(Buffer.from('hi'), '::1', b.port);
    const d = await received;
    assert.equal(d.data.toString(), 'hi');
    assert.equal(d.address, '::1');
    assert.equal(d.port, a.port);
  } finally {
    await a.close();
    await b.close();
  }
});
