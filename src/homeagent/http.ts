// The home agent's status endpoint on a loopback address: GET /status (binding cache, JSON) and
// GET /metrics (Prometheus text). Read-only; nothing here changes state.
import { createServer, type Server } from 'node:http';
import { closeServer, serverUrl } from '../httpserver.ts';

export interface StatusHandlers {
  status(): unknown;
  metrics(): Promise<{ contentType: string; body: string }>;
}

export class StatusServer {
  private server: Server | undefined;

  constructor(private readonly handlers: StatusHandlers) {}

  async listen(host: string, port: number): Promise<void> {
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      if (path === '/status') {
        const body = JSON.stringify(this.handlers.status(), null, 1);
        res.writeHead(200, { 'content-type': 'application/json' }).end(body);
      } else if (path === '/metrics') {
        this.handlers.metrics().then(
          (m) => res.writeHead(200, { 'content-type': m.contentType }).end(m.body),
          (err) => res.writeHead(500).end(String(err)),
        );
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('GET /status or /metrics\n');
      }
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  }

  /** http://host:port of the listening server. */
  get url(): string {
    return serverUrl(this.server, 'status server');
  }

  close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    return closeServer(server);
  }
}
