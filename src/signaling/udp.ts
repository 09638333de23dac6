// UDP transport of the signaling profile (docs/architecture.md, signaling): one IPv6 socket; the payload is inner IPv6 + MH.
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';

export interface Datagram {
  data: Buffer;
  /** Outer source address (for a BU: the care-of address) and port. */
  address: string;
  port: number;
}

/**
 * Bind `socket` to `address`:`port` (port 0 = any), refusing if the bind fails. From then on a socket
 * error (an ICMP unreachable reported on a send, a link down mid-migration) is ignored: a lost datagram,
 * never a crash.
 */
export async function bindSocket(socket: Socket, address: string, port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ address, port, exclusive: true }, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  socket.on('error', () => {});
}

export class UdpTransport {
  private socket: Socket | undefined;

  /**
   * @param options.recvBufferSize SO_RCVBUF in bytes: a home agent receives bursts of BUs (the kernel's
   *   default ~200 KiB holds only a few hundred datagrams); the kernel caps it at net.core.rmem_max.
   */
  constructor(private readonly options: { recvBufferSize?: number } = {}) {}

  /** Bind to `address`:`port` (port 0 = any). Resolves once listening. */
  async listen(address: string, port: number, onMessage: (d: Datagram) => void): Promise<void> {
    const socket = createSocket({
      type: 'udp6',
      ipv6Only: true,
      ...(this.options.recvBufferSize ? { recvBufferSize: this.options.recvBufferSize } : {}),
    });
    this.socket = socket;
    socket.on('message', (data: Buffer, rinfo: RemoteInfo) =>
      onMessage({ data, address: stripZone(rinfo.address), port: rinfo.port }),
    );
    await bindSocket(socket, address, port);
  }

  get port(): number {
    if (!this.socket) throw new Error('UdpTransport: not listening');
    return this.socket.address().port;
  }

  send(data: Uint8Array, address: string, port: number): Promise<void> {
    const socket = this.socket;
    if (!socket) return Promise.reject(new Error('UdpTransport: not listening'));
    return new Promise((resolve, reject) =>
      socket.send(data, port, address, (err) => (err ? reject(err) : resolve())),
    );
  }

  close(): Promise<void> {
    const socket = this.socket;
    this.socket = undefined;
    if (!socket) return Promise.resolve();
    return new Promise((resolve) => socket.close(() => resolve()));
  }
}

function stripZone(address: string): string {
  const i = address.indexOf('%');
  return i < 0 ? address : address.slice(0, i);
}
