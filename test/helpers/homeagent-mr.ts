// A minimal mobile-router client for home agent tests, built only from the wire codec: it makes signed
// Binding Updates and sends them over real UDP, and decodes and verifies the Binding Acknowledgements.
import { createSocket, type Socket } from 'node:dgram';
import { parseIPv6 } from '../../src/protocol/address.ts';
import { ntpTimestamp } from '../../src/protocol/auth.ts';
import { BuFlag, OptionType, SIGNALING_PORT } from '../../src/protocol/constants.ts';
import {
  type DecodedSignalingPacket,
  decodeSignalingPacket,
  encodeSignalingPacket,
  verifyPacketAuth,
} from '../../src/protocol/packet.ts';
import type {
  BindingAcknowledgement,
  MobilityOption,
  SecurityAssociation,
} from '../../src/protocol/types.ts';

export const REGISTER_FLAGS = BuFlag.A | BuFlag.H | BuFlag.R;

export interface BuSpec {
  hoa: string;
  ha: string;
  /** Care-of address that enters the authenticator (the outer source the HA will see). */
  coa: string;
  sa: SecurityAssociation;
  sequence: number;
  flags?: number;
  /** Units of 4 s. */
  lifetime?: number;
  /**
   * Explicit mode MNPs as CIDR; [] = implicit. A length over 128 (RFC 3963 §6.1.2's invalid prefix) is
   * sent as the same octets in a raw option, which only the first option's position aligns (8n+4).
   */
  prefixes?: string[];
  /** Unix ms for the replay timestamp; null = no replay option. */
  timestampMs?: number | null;
  /** Sign with this SA instead (wrong key tests); null = unsigned. */
  signWith?: SecurityAssociation | null;
  extraOptions?: MobilityOption[];
}

export function makeBindingUpdate(s: BuSpec): Uint8Array {
  const options: MobilityOption[] = [];
  for (const p of s.prefixes ?? []) {
    const [prefix, len] = p.split('/');
    const prefixLength = Number(len);
    options.push(
      prefixLength > 128
        ? {
            type: 'raw',
            code: OptionType.MobileNetworkPrefix,
            data: Uint8Array.of(0, prefixLength, ...parseIPv6(prefix!)),
          }
        : { type: 'mobileNetworkPrefix', prefix: prefix!, prefixLength },
    );
  }
  options.push(...(s.extraOptions ?? []));
  if (s.timestampMs !== null) {
    options.push({ type: 'replayProtection', timestamp: ntpTimestamp(s.timestampMs ?? Date.now()) });
  }
  const sa = s.signWith === undefined ? s.sa : s.signWith;
  return encodeSignalingPacket(
    {
      src: s.hoa,
      dst: s.ha,
      message: {
        type: 'bindingUpdate',
        sequence: s.sequence,
        flags: s.flags ?? REGISTER_FLAGS,
        lifetime: s.lifetime ?? 100,
        options,
      },
    },
    sa === null ? undefined : { sa, coa: s.coa, hoa: s.hoa },
  );
}

export interface ReceivedBa {
  ba: BindingAcknowledgement;
  packet: DecodedSignalingPacket;
  /** Whether the BA verifies with the MR's SA. */
  authentic: boolean;
}

/** Decode a BA; `authentic` tells whether it is signed with `sa` over (coa, hoa). */
export function readBindingAck(
  data: Uint8Array,
  sa: SecurityAssociation,
  coa: string,
  hoa: string,
): ReceivedBa {
  const packet = decodeSignalingPacket(data);
  if (packet.message.type !== 'bindingAcknowledgement')
    throw new Error(`expected a BA, got ${packet.message.type}`);
  return { ba: packet.message, packet, authentic: verifyPacketAuth(packet, sa, coa, hoa) };
}

/** One UDP socket bound to the CoA; sends BUs to the HA and waits for the next BA. */
export class MrClient {
  private socket: Socket | undefined;
  private readonly queue: Buffer[] = [];
  private waiter: ((b: Buffer) => void) | undefined;

  constructor(
    readonly opts: {
      coa: string;
      hoa: string;
      ha: string;
      sa: SecurityAssociation;
      /** Outer destination, when the HA listens elsewhere than its address (unit tests on ::1). */
      haTarget?: string;
      haPort?: number;
    },
  ) {}

  async open(bindAddress = this.opts.coa): Promise<void> {
    const socket = createSocket({ type: 'udp6', ipv6Only: true });
    socket.on('message', (m) => {
      if (this.waiter) {
        const w = this.waiter;
        this.waiter = undefined;
        w(m);
      } else this.queue.push(m);
    });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind({ address: bindAddress, port: 0 }, () => resolve());
    });
    this.socket = socket;
  }

  send(data: Uint8Array): Promise<void> {
    const socket = this.socket!;
    return new Promise((resolve, reject) =>
      socket.send(data, this.opts.haPort ?? SIGNALING_PORT, this.opts.haTarget ?? this.opts.ha, (e) =>
        e ? reject(e) : resolve(),
      ),
    );
  }

  /** Next datagram, or throws after `ms`. */
  next(ms = 2000): Promise<Buffer> {
    const q = this.queue.shift();
    if (q) return Promise.resolve(q);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`no BA within ${ms} ms`));
      }, ms);
      this.waiter = (b) => {
        clearTimeout(t);
        resolve(b);
      };
    });
  }

  /** Send a BU and return the BA that answers it. */
  async bu(
    spec: Omit<BuSpec, 'hoa' | 'ha' | 'coa' | 'sa'> & Partial<BuSpec>,
    ms = 2000,
  ): Promise<ReceivedBa> {
    this.queue.length = 0;
    const o = this.opts;
    await this.send(makeBindingUpdate({ hoa: o.hoa, ha: o.ha, coa: o.coa, sa: o.sa, ...spec }));
    return readBindingAck(await this.next(ms), o.sa, o.coa, spec.hoa ?? o.hoa);
  }

  close(): void {
    this.socket?.close();
    this.socket = undefined;
  }
}
