// The public shapes of a mobile router: its components, options, results, status and events.
import type { Clock } from '../clock.ts';
import type { MobileRouterDataplane } from '../dataplane/types.ts';
import type { Logger } from '../log.ts';
import type { ExchangeKind } from '../signaling/bul.ts';
import type { Datagram } from '../signaling/udp.ts';
import type { CoaSource } from './coa.ts';
import type { MobileNetworkConfig, MobileRouterHostConfig } from './config.ts';
import type { RegistrationAbandonedError, RegistrationRejectedError } from './errors.ts';
import type { GuestLinkControl } from './guestlink.ts';
import type { MrStateValue, Transition } from './state.ts';

/** The part of UdpTransport a mobile router uses; unit tests fake it. */
export interface SignalingTransport {
  listen(address: string, port: number, onMessage: (d: Datagram) => void): Promise<void>;
  send(data: Uint8Array, address: string, port: number): Promise<void>;
  close(): Promise<void>;
}

export interface MobileRouterComponents {
  clock: Clock;
  logger: Logger;
  /** One socket per network, bound to the CoA so the outer source of every BU is the care-of address. */
  transport: SignalingTransport;
  dataplane: MobileRouterDataplane;
  guestLink: GuestLinkControl;
  /** Usually one CoaTracker per host shared by its networks. */
  coa: CoaSource;
}

export interface MobileRouterOptions {
  network: MobileNetworkConfig;
  host: MobileRouterHostConfig;
  /** How long deregister() waits for its BA by default. */
  deregistrationTimeoutMs?: number;
}

/** One accepted registration. */
export interface Registration {
  network: string;
  homeAddress: string;
  coa: string;
  sequence: number;
  /** Granted lifetime, seconds. */
  lifetimeSeconds: number;
  /** Binding Refresh Advice, seconds, when the HA sent one. */
  refreshAdviceSeconds: number | undefined;
  /** From sending the BU that was answered to receiving its BA. */
  buToBaMs: number;
  /** From the first BU of the exchange (retransmissions included) to the BA. */
  exchangeMs: number;
  /** Retransmissions before the answered BU (0 = the first BU was answered). */
  retransmissions: number;
  kind: ExchangeKind;
}

export interface DeregistrationResult {
  acknowledged: boolean;
  status: number | undefined;
  sequence: number | undefined;
  buToBaMs: number | undefined;
}

/** What the new host needs to continue this binding (docs/agent.md step 3). */
export interface HandoverState {
  network: string;
  homeAddress: string;
  prefixes: readonly string[];
  lastSequence: number | undefined;
  lifetimeRemainingMs: number;
}

export interface MrCounters {
  buSent: number;
  buRetransmitted: number;
  /** BUs not sent because there was no usable care-of address or socket. */
  buSkipped: number;
  sendErrors: number;
  baAccepted: number;
  baRejected: number;
  /** BA 135 answered by resyncing to its sequence + 1. */
  baSequenceResync: number;
  /** BA 144/145 answered by adopting the home agent's clock. */
  baTimestampResync: number;
  ignoredMalformed: number;
  ignoredForeign: number;
  ignoredAuth: number;
  ignoredUnsolicited: number;
  ignoredReplay: number;
  ignoredStale: number;
  brrAnswered: number;
  brrIgnored: number;
  beReceived: number;
  coaChanges: number;
}

export interface MobileRouterStatus {
  network: string;
  homeAddress: string;
  prefixes: readonly string[];
  bridge: string;
  state: MrStateValue;
  coa: string | undefined;
  /** Last sequence number sent or handed over. */
  sequence: number | undefined;
  lifetimeRemainingMs: number;
  /** A BU is waiting for its BA. */
  pending: boolean;
  lastBaStatus: number | undefined;
  lastBaStatusName: string | undefined;
  lastBuToBaMs: number | undefined;
  lastError: string | undefined;
  lastIgnored: string | undefined;
  counters: MrCounters;
}

export interface MobileRouterEvents {
  state: [Transition];
  registered: [Registration];
  registrationFailed: [RegistrationRejectedError | RegistrationAbandonedError];
  deregistered: [DeregistrationResult];
  coaChanged: [string | undefined];
  ignored: [{ counter: keyof MrCounters; reason: string }];
}

export function zeroCounters(): MrCounters {
  return {
    buSent: 0,
    buRetransmitted: 0,
    buSkipped: 0,
    sendErrors: 0,
    baAccepted: 0,
    baRejected: 0,
    baSequenceResync: 0,
    baTimestampResync: 0,
    ignoredMalformed: 0,
    ignoredForeign: 0,
    ignoredAuth: 0,
    ignoredUnsolicited: 0,
    ignoredReplay: 0,
    ignoredStale: 0,
    brrAnswered: 0,
    brrIgnored: 0,
    beReceived: 0,
    coaChanges: 0,
  };
}
