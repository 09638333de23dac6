// The daemons' Prometheus endpoint: `GET /metrics` (the registry as text) and `GET /healthz` (200 when
// the daemon can serve, 503 while it starts or stops), unsigned, on the address of the config's
// `metrics.listen`, so a stock Prometheus can scrape it. Read-only: nothing here changes state, and it
// reads no request body. The host agent's control API stays signed; its signed /metrics remains too.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ListenAddress } from './config/schema.ts';
import { closeServer, serverUrl } from './httpserver.ts';

export interface Health {
  /** The daemon can do its job (the HA: data plane initialised and store open; the agent: networks loaded). */
  ok: boolean;
  /** Shown in the body: why not, or what the daemon holds. */
  [detail: string]: unknown;
}

export interface ExporterHandlers {
  metrics(): Promise<{ contentType: string; body: string }>;
  health(): Health;
}

export class MetricsExporter {
  private server: Server | undefined;

  constructor(private readonly handlers: ExporterHandlers) {}

  /** Listen on `host`:`port` (0: any free port); resolves with the bound address. */
  async listen({ host, port }: ListenAddress): Promise<ListenAddress> {
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
      } else if (path === '/metrics') {
        this.handlers.metrics().then(
          (m) => res.writeHead(200, { 'content-type': m.contentType }).end(m.body),
          (err) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err}\n`),
        );
      } else if (path === '/healthz') {
        const health = this.handlers.health();
        const { ok, ...detail } = health;
        res
          .writeHead(ok ? 200 : 503, { 'content-type': 'application/json', 'cache-control': 'no-store' })
          .end(`${JSON.stringify({ status: ok ? 'ok' : 'unavailable', ...detail })}\n`);
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('GET /metrics or /healthz\n');
      }
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port, exclusive: true }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const a = server.address() as AddressInfo;
    return { host: a.address, port: a.port };
  }

  /** http://host:port of the listening server. */
  get url(): string {
    return serverUrl(this.server, 'metrics exporter');
  }

  close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    return closeServer(server);
  }
}
