// What crosses the wire between two hosts, for the migration stream tests: tcpdump in a namespace (on
// its uplink), then tshark. (A libpcap filter on IPv6 hosts matched nothing on `-i any` here, so tcpdump
// takes all TCP and tshark's display filter selects.)
import { sh } from './netns.ts';
import type { Procs } from './procs.ts';

/** QEMU_VM_FILE_MAGIC, the first four bytes of a plain migration stream (hex). */
export const QEVM = '5145564d';
/** A TLS record of type 22 (handshake), version 3.0–3.4, any length, holding a ClientHello (type 1). */
export const TLS_CLIENT_HELLO = /^16030[0-4][0-9a-f]{4}01/;

export interface Segment {
  srcPort: number;
  dstPort: number;
  /** The payload, hex (the first bytes: tcpdump's snapshot length). */
  hex: string;
}

/**
 * Start capturing in `ns` on `dev`; the function returned stops and gives the payloads of the TCP
 * segments from `from` to `to`, in order.
 */
export async function capturePayloads(
  procs: Procs,
  ns: string,
  file: string,
  from: string,
  to: string,
  dev = 'up0',
): Promise<() => Promise<Segment[]>> {
  const p = procs.start(ns, ['tcpdump', '-i', dev, '-U', '-n', '-s', '128', '-w', file, 'tcp']);
  const deadline = Date.now() + 10_000;
  while (!p.stderr.includes('listening on')) {
    if (Date.now() > deadline || p.child.exitCode !== null) throw new Error(`tcpdump: ${p.stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return async () => {
    if (p.child.exitCode === null) {
      const closed = new Promise((r) => p.child.once('close', r));
      p.child.kill('SIGINT');
      await closed;
    }
    const only = `ipv6.src == ${from} && ipv6.dst == ${to} && tcp.len > 0`;
    const r = await sh([
      'tshark',
      '-r',
      file,
      '-Y',
      only,
      '-T',
      'fields',
      '-e',
      'tcp.srcport',
      '-e',
      'tcp.dstport',
      '-e',
      'tcp.payload',
    ]);
    const segments = r.stdout
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => {
        const [src, dst, hex] = l.split('\t');
        return {
          srcPort: Number(src),
          dstPort: Number(dst),
          hex: (hex ?? '').replace(/[:\s]/g, '').toLowerCase(),
        };
      });
    if (segments.length === 0) {
      // Say what was captured instead, so that an empty capture can be told from a wrong filter.
      const conv = await sh(['tshark', '-r', file, '-q', '-z', 'conv,tcp']).catch((e: Error) => ({
        stdout: e.message,
      }));
      throw new Error(
        `no TCP payload from ${from} to ${to} in ${file}; tcpdump: ${p.stderr.trim()}; ${conv.stdout}`,
      );
    }
    return segments;
  };
}
