// Fakes for mobile router unit tests: a transport that captures datagrams, a data plane and guest link that
// record calls, a scripted home agent that answers captured BUs, and a builder for the whole object graph.
import { FakeClock } from '../clock.ts';
import type { MobileRouterDataplane, MobileRouterRoutes } from '../dataplane/types.ts';
import { type Logger, silentLogger } from '../log.ts';
import { ntpTimestamp } from '../protocol/auth.ts';
import { BaFlag, LIFETIME_UNIT_SECONDS, SIGNALING_PORT } from '../protocol/constants.ts';
import {
  type DecodedSignalingPacket,
  decodeSignalingPacket,
  encodeSignalingPacket,
} from '../protocol/packet.ts';
import type { BindingUpdate, MobilityOption, SecurityAssociation } from '../protocol/types.ts';
import { DEFAULT_RETRANSMIT } from '../signaling/bul.ts';
import type { Datagram } from '../signaling/udp.ts';
import type { ProcessSpawner, SpawnedProcess, SpawnOptions } from '../system/process.ts';
import { StaticCoaSource } from './coa.ts';
import { type MobileNetworkInput, parseMobileNetwork, parseMobileRouterHost } from './config.ts';
import {
  initialModel,
  type MrAction,
  type MrEnv,
  type MrEvent,
  type MrModel,
  type MrSettings,
  transition,
} from './core.ts';
import type { GuestLinkControl } from './guestlink.ts';
import { buildBindingUpdate, classifyInbound, type Inbound } from './messages.ts';
import { MobileRouter, type Registration, type SignalingTransport } from './mobilerouter.ts';

export const HA = '2001:db8:ffff::1';
export const HOA = '2001:db8:ffff::100';
export const COA = '2001:db8:a::2';
export const KEY_HEX = '00112233445566778899aabbccddeeff';
export const SPI = 1000;
export const SA: SecurityAssociation = { spi: SPI, key: Buffer.from(KEY_HEX, 'hex'), algorithm: 'hmac-sha1' };

export interface SentDatagram {
  data: Uint8Array;
  address: string;
  port: number;
  /** Local address the socket was bound to when sent. */
  from: string | undefined;
}

export class FakeTransport implements SignalingTransport {
  readonly sent: SentDatagram[] = [];
  readonly listens: string[] = [];
  closes = 0;
  private handler: ((d: Datagram) => void) | undefined;
  private boundTo: string | undefined;

  async listen(address: string, _port: number, onMessage: (d: Datagram) => void): Promise<void> {
    this.listens.push(address);
    this.boundTo = address;
    this.handler = onMessage;
  }

  async send(data: Uint8Array, address: string, port: number): Promise<void> {
    if (!this.handler) throw new Error('not listening');
    this.sent.push({ data, address, port, from: this.boundTo });
  }

  async close(): Promise<void> {
    this.closes++;
    this.handler = undefined;
    this.boundTo = undefined;
  }

  get listening(): boolean {
    return this.handler !== undefined;
  }

  /** Deliver a datagram as if it arrived from `address`:`port` (default: the HA). */
  deliver(data: Uint8Array, address = HA, port = SIGNALING_PORT): void {
    if (!this.handler) throw new Error('FakeTransport: not listening');
    this.handler({ data: Buffer.from(data), address, port });
  }

  /** Decoded BUs sent so far. */
  bus(): Array<{ bu: BindingUpdate; packet: DecodedSignalingPacket; from: string | undefined }> {
    return this.sent.map((s) => {
      const packet = decodeSignalingPacket(s.data);
      return { bu: packet.message as BindingUpdate, packet, from: s.from };
    });
  }

  last(): { bu: BindingUpdate; packet: DecodedSignalingPacket; from: string | undefined } {
    const all = this.bus();
    if (all.length === 0) throw new Error('no BU sent');
    return all[all.length - 1]!;
  }
}

export class RecordingMrDataplane implements MobileRouterDataplane {
  readonly calls: string[] = [];
  readonly active = new Map<string, MobileRouterRoutes>();
  failActivate = false;

  async initHost(host: { coa: string; haAddress: string; uplink: string; table: number }): Promise<void> {
    this.calls.push(`initHost ${host.coa}`);
  }
  async activate(r: MobileRouterRoutes): Promise<void> {
    this.calls.push(`activate ${r.network} ${r.coa}`);
    if (this.failActivate) throw new Error('activate failed');
    this.active.set(r.network, r);
  }
  async deactivate(r: MobileRouterRoutes): Promise<void> {
    this.calls.push(`deactivate ${r.network} ${r.coa}`);
    this.active.delete(r.network);
  }
}

export class FakeGuestLink implements GuestLinkControl {
  readonly calls: string[] = [];
  advertising = false;
  async ensure(): Promise<void> {
    this.calls.push('ensure');
  }
  async flushNeighbours(): Promise<void> {
    this.calls.push('flushNeighbours');
  }
  async startAdvertising(): Promise<void> {
    this.calls.push('startAdvertising');
    this.advertising = true;
  }
  async stopAdvertising(): Promise<void> {
    this.calls.push('stopAdvertising');
    this.advertising = false;
  }
  async destroy(): Promise<void> {
    this.calls.push('destroy');
  }
}

export interface BindingAckSpec {
  status?: number;
  /** Granted lifetime in seconds (default: what the BU asked for). */
  lifetimeSeconds?: number;
  /** BA sequence (default: the BU's). */
  sequence?: number;
  refreshAdviceSeconds?: number;
  /** Sign with this SA (default SA); null = unsigned. */
  signWith?: SecurityAssociation | null;
  /** CoA in the authenticator (default: the BU's outer source). */
  coa?: string;
  /** Replay timestamp: 'echo' (default), 'none', or a Unix ms value. */
  timestamp?: 'echo' | 'none' | number;
  flags?: number;
  /** Inner source address (default: the BU's inner destination, the HA address). */
  innerSrc?: string;
}

/** A BA answering a captured BU, built like the real home agent builds it. */
export function bindingAckFor(to: SentDatagram, spec: BindingAckSpec = {}): Uint8Array {
  const packet = decodeSignalingPacket(to.data);
  const bu = packet.message as BindingUpdate;
  const options: MobilityOption[] = [];
  if (spec.refreshAdviceSeconds !== undefined) {
    options.push({
      type: 'bindingRefreshAdvice',
      interval: spec.refreshAdviceSeconds / LIFETIME_UNIT_SECONDS,
    });
  }
  const ts = spec.timestamp ?? 'echo';
  if (ts === 'echo') {
    const replay = bu.options.find((x) => x.type === 'replayProtection');
    if (replay) options.push(replay);
  } else if (ts !== 'none') {
    options.push({ type: 'replayProtection', timestamp: ntpTimestamp(ts) });
  }
  const lifetime =
    spec.lifetimeSeconds === undefined
      ? bu.lifetime
      : Math.floor(spec.lifetimeSeconds / LIFETIME_UNIT_SECONDS);
  const sa = spec.signWith === undefined ? SA : spec.signWith;
  return encodeSignalingPacket(
    {
      src: spec.innerSrc ?? packet.dst,
      dst: packet.src,
      message: {
        type: 'bindingAcknowledgement',
        status: spec.status ?? 0,
        flags: spec.flags ?? BaFlag.R,
        sequence: spec.sequence ?? bu.sequence,
        lifetime,
        options,
      },
    },
    sa ? { sa, coa: spec.coa ?? to.from ?? COA, hoa: packet.src } : undefined,
  );
}

export function baseNetwork(overrides: Partial<MobileNetworkInput> = {}): MobileNetworkInput {
  return {
    name: 'net1',
    homeAddress: HOA,
    prefixes: ['2001:db8:100::/64'],
    bridge: 'ofl-net1',
    spi: SPI,
    key: KEY_HEX,
    lifetimeSeconds: 400,
    ...overrides,
  };
}

export interface Rig {
  clock: FakeClock;
  transport: FakeTransport;
  dataplane: RecordingMrDataplane;
  guestLink: FakeGuestLink;
  coa: StaticCoaSource;
  mr: MobileRouter;
}

export function makeRig(
  options: { network?: Partial<MobileNetworkInput>; coa?: string | null; logger?: Logger } = {},
): Rig {
  const clock = new FakeClock();
  const transport = new FakeTransport();
  const dataplane = new RecordingMrDataplane();
  const guestLink = new FakeGuestLink();
  const coa = new StaticCoaSource(options.coa === null ? undefined : (options.coa ?? COA));
  const mr = new MobileRouter(
    { clock, logger: options.logger ?? silentLogger(), transport, dataplane, guestLink, coa },
    {
      network: parseMobileNetwork(baseNetwork(options.network)),
      host: parseMobileRouterHost({ uplink: 'up0', haAddress: HA }),
    },
  );
  return { clock, transport, dataplane, guestLink, coa, mr };
}

/** Let queued promise work (the router's serial queue, fake I/O) run. */
export async function runPendingWork(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
}

/** A ProcessSpawner whose processes run until killed, and can print lines or die on request. */
export class FakeSpawner implements ProcessSpawner {
  readonly spawned: Array<{ argv: readonly string[]; process: FakeProcess }> = [];
  spawn(argv: readonly string[], options: SpawnOptions = {}): SpawnedProcess {
    const p = new FakeProcess(options);
    this.spawned.push({ argv, process: p });
    return p;
  }
  running(): string[] {
    return this.spawned.filter((s) => s.process.alive).map((s) => s.argv.join(' '));
  }
}

let nextPid = 1000;

export class FakeProcess implements SpawnedProcess {
  readonly pid = nextPid++;
  alive = true;
  killedWith: string | undefined;
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  private resolveExit!: (e: { code: number | null; signal: string | null }) => void;
  constructor(private readonly options: SpawnOptions) {
    this.exited = new Promise((r) => {
      this.resolveExit = r;
    });
  }
  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (!this.alive) return;
    this.killedWith = signal;
    this.exit(null, signal);
  }
  exit(code: number | null, signal: string | null = null): void {
    if (!this.alive) return;
    this.alive = false;
    this.resolveExit({ code, signal });
  }
  print(line: string): void {
    this.options.onStdoutLine?.(line);
  }
}

/** Activate and let the first BU go out; returns the activation promise (boxed: an async function would adopt it). */
export async function activateRig(
  rig: Rig,
  options: { lastSequence?: number } = {},
): Promise<{ p: Promise<Registration> }> {
  const p = rig.mr.activate(options);
  p.catch(() => {});
  await runPendingWork();
  return { p };
}

/** Activate and answer the first BU with an accepted BA. */
export async function registeredRig(rig: Rig, spec: BindingAckSpec = {}): Promise<Registration> {
  const { p } = await activateRig(rig);
  rig.transport.deliver(bindingAckFor(rig.transport.sent.at(-1)!, spec));
  await runPendingWork();
  return p;
}

/** A BU as the core sent it (its `send` action). */
export interface CoreBu {
  sequence: number;
  coa: string;
  lifetimeSeconds: number;
  timestampMs: number;
}

const EXPECT = { haAddress: HA, haPort: SIGNALING_PORT, hoa: HOA };

/** The home agent's answer to a BU the core sent, as the router classifies it (an `inbound` event). */
export function inboundAnswer(bu: CoreBu, spec: BindingAckSpec = {}): { type: 'inbound'; message: Inbound } {
  const data = buildBindingUpdate({
    hoa: HOA,
    haAddress: HA,
    sa: SA,
    mode: 'explicit',
    prefixes: ['2001:db8:100::/64'],
    ...bu,
  });
  const reply = bindingAckFor({ data, address: HA, port: SIGNALING_PORT, from: bu.coa }, spec);
  return {
    type: 'inbound',
    message: classifyInbound({ data: Buffer.from(reply), address: HA, port: SIGNALING_PORT }, EXPECT),
  };
}

/** A Binding Refresh Request (status: a Binding Error) from the home agent, as an `inbound` event. */
export function inboundFromHa(
  message: { type: 'bindingRefreshRequest' } | { type: 'bindingError'; status: number },
): {
  type: 'inbound';
  message: Inbound;
} {
  const m =
    message.type === 'bindingError'
      ? { type: 'bindingError' as const, status: message.status, homeAddress: HOA, options: [] }
      : { type: 'bindingRefreshRequest' as const, options: [] };
  const data = encodeSignalingPacket({ src: HA, dst: HOA, message: m });
  return {
    type: 'inbound',
    message: classifyInbound({ data: Buffer.from(data), address: HA, port: SIGNALING_PORT }, EXPECT),
  };
}

// The core's table tests (core.test.ts, inbound.test.ts): events through transition(), no shell.

/** The settings the core table tests run with. */
export const coreSettings: MrSettings = {
  name: 'net1',
  homeAddress: HOA,
  sa: SA,
  lifetimeSeconds: 100,
  retransmit: DEFAULT_RETRANSMIT,
};
/** The clock of the core table tests. */
export const T0 = 1_000_000;
export const coreEnv = (over: Partial<MrEnv> = {}): MrEnv => ({ now: T0, coa: COA, listening: COA, ...over });

/** Run events in order (each with its own env); returns the final model and every action. */
export function run(
  model: MrModel,
  steps: [MrEvent, Partial<MrEnv>?][],
): { model: MrModel; actions: MrAction[] } {
  const actions: MrAction[] = [];
  for (const [event, over] of steps) {
    const t = transition(model, event, coreSettings, coreEnv(over));
    model = t.model;
    actions.push(...t.actions);
  }
  return { model, actions };
}

export const kinds = (actions: MrAction[]) => actions.map((a) => a.type).filter((t) => t !== 'log');
export const sends = (actions: MrAction[]) => actions.flatMap((a) => (a.type === 'send' ? [a.bu] : []));

/** A router that sent its first BU (sequence 41, registering, routes up unless said otherwise). */
export function registering(routesReady = true): {
  model: MrModel;
  bu: Extract<MrAction, { type: 'send' }>['bu'];
} {
  const steps: [MrEvent, Partial<MrEnv>?][] = [
    [{ type: 'setSequence', lastSequence: 40, random: 0 }],
    [{ type: 'startRegistration', kind: 'first', reason: 'test' }],
    [{ type: 'readyToSend' }],
  ];
  if (routesReady) steps.push([{ type: 'routesInstalled' }]);
  const { model, actions } = run(initialModel(), steps);
  return { model, bu: sends(actions)[0]! };
}
