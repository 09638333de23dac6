import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { LineConn } from './vm-endpoint.ts';

/** A loopback server whose connection `serve` drives; a LineConn to it with a 200 ms silence limit. */
async function pair(serve: (s: Socket) => void): Promise<{ conn: LineConn; server: Server }> {
  const server = createServer(serve);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const socket = await new Promise<Socket>((r) => {
    const s = connect(port, '127.0.0.1', () => r(s));
  });
  return { conn: new LineConn(socket, 200), server };
}

describe('the VM endpoint’s line conversation with the guest', () => {
  it('a guest that sends nothing while asked breaks the conversation: the question and every later one fail', async () => {
    const { conn, server } = await pair(() => {});
    try {
      const t0 = performance.now();
      await assert.rejects(conn.ask('count'), /sent nothing for 200 ms while asked/);
      assert.ok(performance.now() - t0 >= 190);
      await assert.rejects(conn.ask('count'), /sent nothing/);
      assert.ok(conn.closed);
    } finally {
      server.close();
    }
  });

  it('a long answer arriving in pieces, each within the limit, is not a silence; answers keep their order', async () => {
    const { conn, server } = await pair((s) => {
      s.on('data', (d) => {
        if (String(d).startsWith('dump')) {
          let i = 0;
          const t = setInterval(() => {
            s.write(i < 5 ? 'x'.repeat(10) : '\n');
            if (i++ === 5) clearInterval(t);
          }, 120);
        } else s.write('counter 1\n');
      });
    });
    try {
      assert.equal(await conn.ask('count'), 'counter 1');
      assert.equal(await conn.ask('dump'), 'x'.repeat(50));
      assert.equal(conn.closed, undefined);
    } finally {
      conn.socket.destroy();
      server.close();
    }
  });
});
