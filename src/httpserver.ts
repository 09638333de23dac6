// What the daemons' small HTTP servers (the HA's status endpoint, the metrics exporter) share.
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** http://host:port of a listening `server` (IPv6 hosts in brackets); throws naming `what` when it is not. */
export function serverUrl(server: Server | undefined, what: string): string {
  const a = server?.address() as AddressInfo | null | undefined;
  if (!a) throw new Error(`${what} not listening`);
  return a.family === 'IPv6' ? `http://[${a.address}]:${a.port}` : `http://${a.address}:${a.port}`;
}

/** Close `server` and every connection it holds; resolves at once when there is none. */
export function closeServer(server: Server | undefined): Promise<void> {
  if (!server) return Promise.resolve();
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}
