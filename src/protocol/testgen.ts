// Random valid messages and packets for the property and mutation tests (not a test file).
import { formatIPv6 } from './address.ts';
import type { MobilityMessage, MobilityOption, SecurityAssociation, SignalingPacket } from './types.ts';

export type Rng = () => number;

export const int = (rng: Rng, lo: number, hi: number): number => lo + Math.floor(rng() * (hi - lo + 1));
export const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;

export function bytes(rng: Rng, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = int(rng, 0, 255);
  return out;
}

/** A random address, often with runs of zero groups so "::" compression is exercised. */
export function address(rng: Rng): string {
  const b = bytes(rng, 16);
  for (let g = 0; g < 8; g++) {
    if (rng() < 0.4) {
      b[g * 2] = 0;
      b[g * 2 + 1] = 0;
    }
  }
  return formatIPv6(b);
}

/** A random dotted-quad IPv4 address, often 0.0.0.0 (RFC 5555's "assign me one"). */
export function ipv4Address(rng: Rng): string {
  return rng() < 0.1 ? '0.0.0.0' : Array.from(bytes(rng, 4)).join('.');
}

const KNOWN_CODES = new Set([0, 1, 2, 6, 9, 10, 29, 30]);

export function option(rng: Rng): MobilityOption {
  switch (int(rng, 0, 8)) {
    case 0:
      return { type: 'pad1' };
    case 1:
      return { type: 'padN', length: int(rng, 0, 6) };
    case 2:
      return { type: 'bindingRefreshAdvice', interval: int(rng, 0, 0xffff) };
    case 3:
      return { type: 'mobileNetworkPrefix', prefix: address(rng), prefixLength: int(rng, 0, 128) };
    case 4: {
      const authenticator = bytes(rng, pick(rng, [0, 1, 12, 16, int(rng, 0, 40)]));
      return { type: 'auth', subtype: int(rng, 0, 255), spi: int(rng, 0, 0xffffffff), authenticator };
    }
    case 5: {
      const hi = BigInt(int(rng, 0, 0xffffffff));
      return { type: 'replayProtection', timestamp: (hi << 32n) | BigInt(int(rng, 0, 0xffffffff)) };
    }
    case 6:
      return {
        type: 'ipv4HomeAddress',
        homeAddress: ipv4Address(rng),
        prefixLength: int(rng, 1, 32),
        requestPrefix: rng() < 0.5,
      };
    case 7:
      return {
        type: 'ipv4AddressAcknowledgement',
        status: int(rng, 0, 255),
        homeAddress: ipv4Address(rng),
        prefixLength: int(rng, 0, 32),
      };
    default: {
      let code = int(rng, 3, 255);
      while (KNOWN_CODES.has(code)) code = int(rng, 3, 255);
      return { type: 'raw', code, data: bytes(rng, int(rng, 0, 16)) };
    }
  }
}

export function options(rng: Rng, max = 8): MobilityOption[] {
  return Array.from({ length: int(rng, 0, max) }, () => option(rng));
}

export const MESSAGE_TYPES = [
  'bindingUpdate',
  'bindingAcknowledgement',
  'bindingError',
  'bindingRefreshRequest',
] as const satisfies readonly MobilityMessage['type'][];

export function message(rng: Rng, type: MobilityMessage['type'] = pick(rng, MESSAGE_TYPES)): MobilityMessage {
  const opts = options(rng);
  switch (type) {
    case 'bindingUpdate':
      return {
        type,
        sequence: int(rng, 0, 0xffff),
        flags: int(rng, 0, 0xffff),
        lifetime: int(rng, 0, 0xffff),
        options: opts,
      };
    case 'bindingAcknowledgement':
      return {
        type,
        status: int(rng, 0, 255),
        flags: int(rng, 0, 255),
        sequence: int(rng, 0, 0xffff),
        lifetime: int(rng, 0, 0xffff),
        options: opts,
      };
    case 'bindingError':
      return { type, status: int(rng, 0, 255), homeAddress: address(rng), options: opts };
    case 'bindingRefreshRequest':
      return { type, options: opts };
  }
}

export function packet(rng: Rng): SignalingPacket {
  return { src: address(rng), dst: address(rng), hopLimit: int(rng, 0, 255), message: message(rng) };
}

export function securityAssociation(rng: Rng): SecurityAssociation {
  return {
    spi: int(rng, 0, 0xffffffff),
    key: bytes(rng, int(rng, 1, 64)),
    algorithm: pick(rng, ['hmac-sha1', 'hmac-sha256'] as const),
  };
}

/** The non-padding options, which survive a round trip unchanged (padding may be added). */
export const withoutPadding = (opts: readonly MobilityOption[]): MobilityOption[] =>
  opts.filter((option) => option.type !== 'pad1' && option.type !== 'padN');
