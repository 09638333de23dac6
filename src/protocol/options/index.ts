// A list of mobility options (RFC 6275 §6.2): alignment padding on encode, validation on decode.
// Offsets for alignment are reckoned from the start of the Mobility Header (RFC 6275 §6.2: "xn+y").
import { DecodeError, type InvalidValue, InvalidValueError, OptionValueError } from '../errors.ts';
import type { MobilityOption, MobilityOptionType } from '../types.ts';
import { readU8 } from '../wire.ts';
import * as auth from './auth.ts';
import * as bindingRefreshAdvice from './bindingRefreshAdvice.ts';
import * as ipv4AddressAcknowledgement from './ipv4AddressAcknowledgement.ts';
import * as ipv4HomeAddress from './ipv4HomeAddress.ts';
import * as mobileNetworkPrefix from './mobileNetworkPrefix.ts';
import * as pad1 from './pad1.ts';
import * as padN from './padN.ts';
import * as raw from './raw.ts';
import * as replayProtection from './replayProtection.ts';

interface OptionCodec<T> {
  encodingLength(v: T): number;
  encode(v: T, buf: Uint8Array, offset: number): Uint8Array;
  decode(buf: Uint8Array, offset: number, end: number): T;
}
type Codecs = { [K in MobilityOptionType]: OptionCodec<Extract<MobilityOption, { type: K }>> };

const codecs: Codecs = {
  pad1,
  padN,
  bindingRefreshAdvice,
  mobileNetworkPrefix,
  auth,
  replayProtection,
  ipv4HomeAddress,
  ipv4AddressAcknowledgement,
  raw,
};

/** Option type octet → decoded form, for the types this codec knows (the rest decode as raw). */
const byCode: ReadonlyMap<number, MobilityOptionType> = new Map<number, MobilityOptionType>([
  [0, 'pad1'],
  [1, 'padN'],
  [2, 'bindingRefreshAdvice'],
  [6, 'mobileNetworkPrefix'],
  [9, 'auth'],
  [10, 'replayProtection'],
  [29, 'ipv4HomeAddress'],
  [30, 'ipv4AddressAcknowledgement'],
]);

type Alignment = { readonly multiple: number; readonly plus: number };
const alignments: Partial<Record<MobilityOptionType, Alignment>> = {
  bindingRefreshAdvice: bindingRefreshAdvice.alignment, // RFC 6275 §6.2.4: 2n
  mobileNetworkPrefix: mobileNetworkPrefix.alignment, // RFC 3963 §4.3: 8n+4
  auth: auth.alignment, // RFC 4285 §5: 4n+1
  replayProtection: replayProtection.alignment, // RFC 4285 §6: 8n+2
  ipv4HomeAddress: ipv4HomeAddress.alignment, // RFC 5555 §3.1.1: 4n
  ipv4AddressAcknowledgement: ipv4AddressAcknowledgement.alignment, // RFC 5555 §3.2.1: 4n
};

const mod = (a: number, m: number) => ((a % m) + m) % m;

export function optionLength(option: MobilityOption): number {
  return (codecs[option.type] as OptionCodec<MobilityOption>).encodingLength(option);
}

/**
 * Padding to insert before `o` when it would start at MH offset `pos`. A final authentication option
 * is placed so that it also ends the 8-octet-aligned MH, so nothing follows it (RFC 4285 §5: it is the
 * last option, and the authenticator then covers everything before it).
 */
function padBefore(option: MobilityOption, pos: number, isLast: boolean): number {
  const a = alignments[option.type];
  if (!a) return 0;
  if (option.type === 'auth' && isLast) {
    const len = optionLength(option);
    for (let d = 0; d < 8; d++) if (mod(pos + d, 4) === 1 && mod(pos + d + len, 8) === 0) return d;
  }
  return mod(a.plus - pos, a.multiple);
}

/** Pad1 for one octet, PadN for more (RFC 6275 §6.2.2). */
function writePadding(buf: Uint8Array, at: number, n: number): void {
  if (n === 0) return;
  if (n === 1) {
    buf[at] = 0;
    return;
  }
  padN.encode({ type: 'padN', length: n - 2 }, buf, at);
}

/**
 * Octets the options take when the first would start at MH offset `at`, including the padding that
 * aligns them and the padding that ends the MH on a multiple of 8 octets (RFC 6275 §6.1.1).
 */
export function optionsEncodingLength(options: readonly MobilityOption[], at: number): number {
  let pos = at;
  options.forEach((option, i) => {
    pos += padBefore(option, pos, i === options.length - 1) + optionLength(option);
  });
  return pos + mod(-pos, 8) - at;
}

/** Writes `options` at `offset`, which is MH offset `at`. Explicit pad options are written as given. */
export function encodeOptions(
  options: readonly MobilityOption[],
  buf: Uint8Array,
  offset: number,
  at: number,
): Uint8Array {
  const base = at - offset;
  let pos = offset;
  options.forEach((option, i) => {
    const d = padBefore(option, pos + base, i === options.length - 1);
    writePadding(buf, pos, d);
    pos += d;
    (codecs[option.type] as OptionCodec<MobilityOption>).encode(option, buf, pos);
    pos += optionLength(option);
  });
  writePadding(buf, pos, mod(-(pos + base), 8));
  return buf;
}

/** Offset (in `buf`) of the type octet of the option at `pos`, and of the octet after it. */
function optionBounds(buf: Uint8Array, pos: number, end: number): number {
  if (buf[pos] === 0) return pos + 1;
  if (pos + 2 > end) throw new DecodeError(`option at ${pos} overruns the message`);
  const next = pos + 2 + readU8(buf, pos + 1);
  if (next > end) throw new DecodeError(`option at ${pos} overruns the message`);
  return next;
}

/**
 * Decodes the options in `offset..end` (MH offset `at`), padding kept. Drops (DecodeError) an option
 * that overruns, or a known option that is misaligned or has the wrong length (RFC 6275 §6.2). A known
 * option with an invalid value (InvalidValueError) is dropped too, unless `invalid` collects it: then
 * it is kept raw and the rest decoded. One whose invalid value the RFC answers per option
 * (OptionValueError: RFC 5555's) is always kept raw.
 */
export function decodeOptions(
  buf: Uint8Array,
  offset: number,
  end: number,
  at: number,
  invalid?: InvalidValue[],
): MobilityOption[] {
  const base = at - offset;
  const out: MobilityOption[] = [];
  for (let pos = offset; pos < end; ) {
    const next = optionBounds(buf, pos, end);
    const type = byCode.get(readU8(buf, pos)) ?? 'raw';
    const a = alignments[type];
    if (a && mod(pos + base, a.multiple) !== a.plus) {
      throw new DecodeError(
        `${type} option at MH offset ${pos + base} is not aligned ${a.multiple}n+${a.plus}`,
      );
    }
    out.push(decodeOption(type, buf, pos, next, invalid));
    pos = next;
  }
  return out;
}

function decodeOption(
  type: MobilityOptionType,
  buf: Uint8Array,
  pos: number,
  next: number,
  invalid: InvalidValue[] | undefined,
): MobilityOption {
  try {
    return codecs[type].decode(buf, pos, next);
  } catch (err) {
    if (err instanceof OptionValueError) return raw.decode(buf, pos, next);
    if (!(err instanceof InvalidValueError) || !invalid) throw err;
    invalid.push({ status: err.status, reason: err.message });
    return raw.decode(buf, pos, next);
  }
}

/** Offset in `buf` of the type octet of the last option in `offset..end`, or undefined if none. */
export function lastOptionOffset(buf: Uint8Array, offset: number, end: number): number | undefined {
  let last: number | undefined;
  for (let pos = offset; pos < end; pos = optionBounds(buf, pos, end)) last = pos;
  return last;
}
