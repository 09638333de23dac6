// A test mobile router that runs INSIDE a network namespace (started with `ip netns exec`), so its BUs
// leave from the MR's care-of address over real UDP. Commands arrive as JSON lines on stdin, answers
// leave as JSON lines on stdout (see HomeAgentMrAgent in homeagent-lab.ts):
//   {"id":1,"op":"bu","spec":{...}}      → {"id":1,"ba":{status,sequence,lifetime,flags,authentic,bra}}
//   {"id":2,"op":"fuzz","count":100000,"seed":1,"base":{...},"probe":{...}}
//                                         → {"id":2,"sent":N,"malformed":M,"probes":P,"ms":T}
//   {"id":3,"op":"echo","port":7}         → UDP echo server on [::]:7 → {"id":3,"ok":true}
//   {"id":4,"op":"probe","to":"2001:db8:c::2","port":7,"count":5,"size":1400,"intervalMs":20,"waitMs":500}
//                                         → {"id":4,"sent":5,"received":5,"rttMs":[...]}
//   {"id":5,"op":"raw","from":ADDR,"to":HA,"hex":"...","count":1,"waitMs":1000,"verify":{spi,key,algorithm?,coa,hoa}}
//                                         → {"id":5,"replies":N,"reply":{type,status?,sequence?,authentic?,hex}|null}
//     (bytes sent as they are, `count` times, from a fresh socket on `from` (port `fromPort`, default any)
//     to port `port` (default 4191) of `to`; the replies within waitMs, the first also as it came, in hex)
// (ping is not installed here; UDP probes test the same paths and size.)
import { createSocket, type Socket } from 'node:dgram';
import { createInterface } from 'node:readline';
import { BuFlag, SIGNALING_PORT } from '../../src/protocol/constants.ts';
import { decodeSignalingPacket, encodeSignalingPacket, verifyPacketAuth } from '../../src/protocol/packet.ts';
import { mulberry32 } from '../../src/protocol/testkit.ts';
import type { MobilityOption, SecurityAssociation } from '../../src/protocol/types.ts';
import { type BuSpec, makeBindingUpdate, readBindingAck } from './homeagent-mr.ts';

export interface WireSpec {
  hoa: string;
  ha: string;
  coa: string;
  spi: number;
  key: string;
  algorithm?: 'hmac-sha1' | 'hmac-sha256';
  sequence: number;
  flags?: number;
  lifetime?: number;
  prefixes?: string[];
  /** Unix ms; omitted = now; null = no replay option. */
  timestampMs?: number | null;
  /** Sign with this key (hex) instead; null = unsigned. */
  signKey?: string | null;
  signSpi?: number;
}

function sa(spi: number, key: string, algorithm: WireSpec['algorithm']): SecurityAssociation {
  return { spi, key: Buffer.from(key, 'hex'), algorithm: algorithm ?? 'hmac-sha1' };
}

function toSpec(w: WireSpec, timestampMs?: number): BuSpec {
  const own = sa(w.spi, w.key, w.algorithm);
  return {
    hoa: w.hoa,
    ha: w.ha,
    coa: w.coa,
    sa: own,
    sequence: w.sequence,
    flags: w.flags ?? BuFlag.A | BuFlag.H | BuFlag.R,
    lifetime: w.lifetime ?? 100,
    prefixes: w.prefixes ?? [],
    timestampMs: w.timestampMs === null ? null : (w.timestampMs ?? timestampMs ?? Date.now()),
    signWith:
      w.signKey === null
        ? null
        : w.signKey !== undefined
          ? sa(w.signSpi ?? w.spi, w.signKey, w.algorithm)
          : undefined,
  };
}

class Port {
  private waiter: ((b: Buffer) => void) | undefined;
  private readonly queue: Buffer[] = [];
  /** Outer source address of the last datagram handed out. */
  lastFrom = '';
  private readonly from = new WeakMap<Buffer, string>();
  constructor(readonly socket: Socket) {
    socket.on('message', (m, rinfo) => {
      this.from.set(m, rinfo.address);
      const w = this.waiter;
      this.waiter = undefined;
      if (w) w(m);
      else if (this.queue.length < 1000) this.queue.push(m);
    });
  }
  static async open(address: string): Promise<Port> {
    const socket = createSocket({ type: 'udp6', ipv6Only: true });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind({ address, port: 0 }, () => resolve());
    });
    socket.on('error', () => {});
    return new Port(socket);
  }
  send(data: Uint8Array, address: string): Promise<void> {
    return new Promise((resolve, reject) =>
      this.socket.send(data, SIGNALING_PORT, address, (e) => (e ? reject(e) : resolve())),
    );
  }
  clear(): void {
    this.queue.length = 0;
  }
  next(ms: number): Promise<Buffer | undefined> {
    const q = this.queue.shift();
    if (q) {
      this.lastFrom = this.from.get(q) ?? '';
      return Promise.resolve(q);
    }
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.waiter = undefined;
        resolve(undefined);
      }, ms);
      this.waiter = (b) => {
        clearTimeout(t);
        this.lastFrom = this.from.get(b) ?? '';
        resolve(b);
      };
    });
  }
}

const ports = new Map<string, Port>();
async function port(address: string, role: string): Promise<Port> {
  const key = `${role} ${address}`;
  let p = ports.get(key);
  if (!p) {
    p = await Port.open(address);
    ports.set(key, p);
  }
  return p;
}

async function bu(w: WireSpec, timeoutMs = 3000) {
  const p = await port(w.coa, 'main');
  p.clear();
  const spec = toSpec(w);
  const t0 = performance.now();
  await p.send(makeBindingUpdate(spec), w.ha);
  const data = await p.next(timeoutMs);
  if (!data) return { ba: null };
  const ms = performance.now() - t0;
  const { ba, authentic } = readBindingAck(data, spec.sa, w.coa, w.hoa);
  const bra = ba.options.find((o) => o.type === 'bindingRefreshAdvice');
  return {
    ba: {
      status: ba.status,
      sequence: ba.sequence,
      lifetime: ba.lifetime,
      flags: ba.flags,
      authentic,
      bra: bra?.type === 'bindingRefreshAdvice' ? bra.interval : null,
      from: p.lastFrom,
    },
    ms,
  };
}

/** One bad packet: mutations of real BUs, garbage, and well-formed messages the HA must refuse. */
function badPacket(r: () => number, bases: Uint8Array[], w: WireSpec): Uint8Array {
  const int = (n: number) => Math.floor(r() * n);
  const base = bases[int(bases.length)]!;
  const kind = int(8);
  if (kind <= 2) {
    // flip 1–4 bytes of a real BU
    const b = Buffer.from(base);
    for (let i = 0, n = 1 + int(4); i < n; i++) b[int(b.length)] = int(256);
    return b;
  }
  if (kind === 3) return Buffer.from(base).subarray(0, int(base.length)); // truncated
  if (kind === 4) return Buffer.concat([base, randomBytes(r, 1 + int(64))]); // trailing garbage
  if (kind === 5) return randomBytes(r, int(300)); // noise
  if (kind === 6) {
    // a valid IPv6 header with next header 135 and a correct payload length, random MH
    const mh = randomBytes(r, 8 * (1 + int(12)));
    const b = Buffer.concat([Buffer.from(base.subarray(0, 40)), mh]);
    b.writeUInt16BE(mh.length, 4);
    b[6] = 135;
    b[40] = 59;
    b[41] = mh.length / 8 - 1;
    return b;
  }
  // well-formed messages with random content: unknown options, odd flags, stale or unsigned
  const options: MobilityOption[] = [];
  for (let i = 0, n = int(4); i < n; i++) {
    options.push({ type: 'raw', code: 11 + int(200), data: randomBytes(r, int(12)) });
  }
  const sign = int(3) === 0 ? undefined : { sa: sa(w.spi, w.key, w.algorithm), coa: w.coa, hoa: w.hoa };
  return encodeSignalingPacket(
    {
      src: w.hoa,
      dst: w.ha,
      message: {
        type: 'bindingUpdate',
        sequence: int(65536),
        flags: int(65536),
        lifetime: int(65536),
        options: [...options, { type: 'replayProtection', timestamp: BigInt(int(2 ** 31)) << 32n }],
      },
    },
    sign,
  );
}

function randomBytes(r: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(r() * 256);
  return b;
}

async function fuzz(cmd: { count: number; seed: number; base: WireSpec[]; probe: WireSpec; burst?: number }) {
  const r = mulberry32(cmd.seed);
  const bases = cmd.base.map((w) => makeBindingUpdate(toSpec(w)));
  const main = await port(cmd.probe.coa, 'main');
  const probePort = await port(cmd.probe.coa, 'probe');
  const burst = cmd.burst ?? 100;
  let sent = 0;
  let malformed = 0;
  let probes = 0;
  let stamp = Date.now();
  const t0 = performance.now();
  while (sent < cmd.count) {
    const n = Math.min(burst, cmd.count - sent);
    for (let i = 0; i < n; i++) {
      const pkt = badPacket(r, bases, cmd.base[0]!);
      try {
        decodeSignalingPacket(pkt);
      } catch {
        malformed++;
      }
      await main.send(pkt, cmd.probe.ha);
      sent++;
    }
    main.clear();
    // Flow control: a signed BU with the stored sequence is answered (135) only after every datagram
    // before it has been read, so the HA's socket buffer never overflows and every packet is counted.
    for (let attempt = 0; ; attempt++) {
      probePort.clear();
      stamp = Math.max(stamp + 1, Date.now());
      await probePort.send(makeBindingUpdate(toSpec(cmd.probe, stamp)), cmd.probe.ha);
      probes++;
      const answer = await probePort.next(2000);
      if (answer) break;
      if (attempt >= 3) throw new Error(`home agent stopped answering after ${sent} packets`);
    }
  }
  return { sent, malformed, probes, ms: Math.round(performance.now() - t0) };
}

const echoes: Socket[] = [];
async function echo(cmd: { port: number }) {
  const socket = createSocket({ type: 'udp6', ipv6Only: true });
  socket.on('message', (m, r) => socket.send(m, r.port, r.address));
  socket.on('error', () => {});
  await new Promise<void>((resolve) => socket.bind({ address: '::', port: cmd.port }, () => resolve()));
  echoes.push(socket);
  return { ok: true };
}

async function probe(cmd: {
  to: string;
  port: number;
  count: number;
  size: number;
  intervalMs?: number;
  waitMs?: number;
}) {
  const socket = createSocket({ type: 'udp6', ipv6Only: true });
  socket.on('error', () => {});
  await new Promise<void>((resolve) => socket.bind({ address: '::', port: 0 }, () => resolve()));
  const sentAt = new Map<number, number>();
  const rtt: number[] = [];
  socket.on('message', (m) => {
    if (m.length < 4) return;
    const at = sentAt.get(m.readUInt32BE(0));
    if (at !== undefined && m.length === cmd.size) {
      rtt.push(Math.round((performance.now() - at) * 100) / 100);
      sentAt.delete(m.readUInt32BE(0));
    }
  });
  const sendTimes: number[] = [];
  for (let i = 0; i < cmd.count; i++) {
    const b = Buffer.alloc(Math.max(4, cmd.size), 0x5a);
    b.writeUInt32BE(i, 0);
    sentAt.set(i, performance.now());
    sendTimes.push(performance.now());
    await new Promise<void>((resolve) => socket.send(b, cmd.port, cmd.to, () => resolve()));
    await new Promise((r) => setTimeout(r, cmd.intervalMs ?? 20));
  }
  await new Promise((r) => setTimeout(r, cmd.waitMs ?? 500));
  socket.close();
  // The longest run of lost probes, as time: from the last probe answered before it to the first after.
  let gapMs = 0;
  let lastOk = -1;
  for (let i = 0; i <= cmd.count; i++) {
    if (i < cmd.count && sentAt.has(i)) continue;
    if (i - lastOk > 1) {
      const from = lastOk >= 0 ? sendTimes[lastOk]! : sendTimes[0]!;
      const to = i < cmd.count ? sendTimes[i]! : sendTimes[cmd.count - 1]!;
      gapMs = Math.max(gapMs, Math.round(to - from));
    }
    lastOk = i;
  }
  return { sent: cmd.count, received: rtt.length, rttMs: rtt, gapMs };
}

async function raw(cmd: {
  from: string;
  fromPort?: number;
  to: string;
  port?: number;
  hex: string;
  count?: number;
  waitMs?: number;
  verify?: { spi: number; key: string; algorithm?: WireSpec['algorithm']; coa: string; hoa: string };
}) {
  const socket = createSocket({ type: 'udp6', ipv6Only: true });
  socket.on('error', () => {});
  const replies: Buffer[] = [];
  socket.on('message', (m) => replies.push(m));
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ address: cmd.from, port: cmd.fromPort ?? 0 }, () => resolve());
  });
  const data = Buffer.from(cmd.hex, 'hex');
  for (let i = 0; i < (cmd.count ?? 1); i++) {
    await new Promise<void>((resolve) =>
      socket.send(data, cmd.port ?? SIGNALING_PORT, cmd.to, () => resolve()),
    );
  }
  await new Promise((r) => setTimeout(r, cmd.waitMs ?? 1000));
  socket.close();
  let reply: Record<string, unknown> | null = null;
  if (replies[0]) {
    try {
      const p = decodeSignalingPacket(replies[0]);
      const m = p.message;
      const v = cmd.verify;
      reply = {
        hex: replies[0].toString('hex'),
        type: m.type,
        ...(m.type === 'bindingAcknowledgement' ? { status: m.status, sequence: m.sequence } : {}),
        ...(m.type === 'bindingError' ? { status: m.status } : {}),
        ...(v ? { authentic: verifyPacketAuth(p, sa(v.spi, v.key, v.algorithm), v.coa, v.hoa) } : {}),
      };
    } catch (err) {
      reply = { hex: replies[0].toString('hex'), type: 'undecodable', error: String(err) };
    }
  }
  return { replies: replies.length, reply };
}

// biome-ignore lint/suspicious/noExplicitAny: commands are JSON from the test process
const ops: Record<string, (cmd: any) => Promise<object>> = {
  bu: (cmd) => bu(cmd.spec, cmd.timeoutMs),
  fuzz: (cmd) => fuzz(cmd),
  echo: (cmd) => echo(cmd),
  probe: (cmd) => probe(cmd),
  raw: (cmd) => raw(cmd),
};

const rl = createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  let id: unknown;
  try {
    const cmd = JSON.parse(line);
    id = cmd.id;
    const op = ops[cmd.op];
    if (!op) throw new Error(`unknown op ${cmd.op}`);
    const out = await op(cmd);
    process.stdout.write(`${JSON.stringify({ id, ...out })}\n`);
  } catch (err) {
    process.stdout.write(`${JSON.stringify({ id, error: String((err as Error).stack ?? err) })}\n`);
  }
});
rl.on('close', () => {
  for (const p of ports.values()) p.socket.close();
  for (const e of echoes) e.close();
});
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
