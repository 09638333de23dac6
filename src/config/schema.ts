// The zod building blocks every role's config is made of (home agent, mobile router, host agent), so a
// value pasted from one config into another (a key, a name, a prefix) is accepted or refused the same way
// and with the same words. Imports only protocol/ and errors.ts: it sits just below homeagent/ and
// mobilerouter/.
import { isIPv4, isIPv6 as isNodeIPv6 } from 'node:net';
import { z } from 'zod';
import {
  canonicalIPv6,
  isIPv4Text,
  type Prefix,
  parseIPv4Destination,
  parsePrefix,
} from '../protocol/address.ts';

/** Shortest SA key accepted: 128 bits (RFC 2104 §3 recommends at least the hash output; 16 octets is the floor). */
export const MIN_KEY_BYTES = 16;
/** Largest lifetime a BU or BA can express: 0xffff units of 4 s (RFC 6275 §6.1.7). */
export const MAX_LIFETIME_SECONDS = 0xffff * 4;
/** Linux IFNAMSIZ is 16 including the terminating NUL. */
export const MAX_IFNAME = 15;

/** Whether `text` is one IPv6 address (no prefix length) as protocol/address.ts reads it. */
export function isIPv6(text: string): boolean {
  try {
    canonicalIPv6(text);
    return !text.includes('/');
  } catch {
    return false;
  }
}

/** An IPv6 address, returned in canonical form (RFC 5952). */
export const ipv6 = z.string().refine(isIPv6, 'not an IPv6 address').transform(canonicalIPv6);

/**
 * An IPv6 prefix, returned as canonical CIDR text. Host bits set is almost always a typo
 * (2001:db8:1::1/64), so it is refused rather than guessed at. `limit` caps the length, with the reason.
 */
export function prefix(limit?: { longest: number; why: string }, options: { ipv4?: boolean } = {}) {
  return z.string().transform((text, ctx) => {
    const refuse = (message: string) => {
      ctx.addIssue({ code: 'custom', message: `${text}: ${message}` });
      return z.NEVER;
    };
    // IPv4 prefixes of a dual-stack network (RFC 5555), where the caller takes them.
    if (options.ipv4 && isIPv4Text(text)) {
      let v4: Prefix;
      try {
        v4 = parseIPv4Destination(text);
      } catch (err) {
        return refuse(
          (err as Error).message.replace(/^invalid IPv4 prefix "[^"]*": /, 'not an IPv4 prefix: '),
        );
      }
      if (!text.includes('/')) return refuse('not a prefix (address/length)');
      if (v4.text !== text) return refuse(`host bits set (the network is ${v4.text})`);
      if (v4.length < 1) return refuse('a /0 prefix is every address');
      return v4.text;
    }
    let parsed: Prefix;
    try {
      parsed = parsePrefix(text);
    } catch {
      return refuse(
        options.ipv4 ? 'not an IPv6 or IPv4 prefix (address/length)' : 'not an IPv6 prefix (address/length)',
      );
    }
    const slash = text.indexOf('/');
    if (canonicalIPv6(text.slice(0, slash)) !== parsed.address)
      return refuse(`host bits set (the network is ${parsed.address}/${parsed.length})`);
    if (parsed.length < 1) return refuse('a /0 prefix is every address');
    if (limit && parsed.length > limit.longest)
      return refuse(`must be a /${limit.longest} or shorter (${limit.why})`);
    return `${parsed.address}/${parsed.length}`;
  });
}

/** A key given as hex text, at least `minBytes` long, returned as bytes. */
export function hexKey(minBytes: number) {
  return z
    .string()
    .regex(/^(?:[0-9a-fA-F]{2})+$/, 'not a hex string')
    .transform((k) => Buffer.from(k, 'hex'))
    .refine(
      (k) => k.length >= minBytes,
      `too short (at least ${minBytes} bytes, ${minBytes * 2} hex digits)`,
    );
}

/** A key inline (`key`, hex) or in a file (`keyFile`); load.ts `resolveKey` picks one. */
export function keySource(key: ReturnType<typeof hexKey>) {
  return { key: key.optional(), keyFile: z.string().min(1).optional() };
}

/** Names of mobile routers, networks, hosts and guests. */
export const name = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'letters, digits, ".", "_", "-" (1–63)');

const IFNAME_CHARS = /^[A-Za-z0-9_.-]+$/;

export const interfaceName = z
  .string()
  .min(1, 'empty interface name')
  .refine((s) => s.length <= MAX_IFNAME, {
    message: `longer than ${MAX_IFNAME} characters (Linux IFNAMSIZ)`,
  })
  .refine((s) => IFNAME_CHARS.test(s) && s !== '.' && s !== '..', {
    message: 'invalid characters in interface name (letters, digits, "_", ".", "-")',
  });

// RFC 4285 §5: SPI values 0–255 are reserved.
export const spi = z.number().int().min(256, 'SPI 0–255 is reserved (RFC 4285 §5)').max(0xffffffff);

export const algorithm = z.enum(['hmac-sha1', 'hmac-sha256']).default('hmac-sha1');

export const port = z.number().int().min(1).max(65535);

/** A MAC address as `52:54:00:12:34:56` (either case). */
export const macAddress = z
  .string()
  .regex(/^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$/, 'not a MAC address (52:54:00:12:34:56)');

export const routingTable = z
  .number()
  .int()
  .min(1)
  .max(0xfffffff0)
  .refine((t) => t < 253 || t > 255, 'tables 253–255 are the kernel’s default, main and local');

/** Data plane backend: `auto` takes the best one this kernel runs (dataplane/probe.ts). */
export const backend = z.enum(['auto', 'bpf', 'seg6']).default('auto');

/** TCP MSS clamp on the tunnel: 0 turns it off. */
export const mss = z
  .number()
  .int()
  .refine((m) => m === 0 || (m >= 536 && m <= 65535), '0 (off) or 536–65535')
  .default(1400);

const LISTEN = /^(?:\[(?<v6>[^\]]+)\]|(?<v4>[0-9.]+)):(?<port>[0-9]{1,5})$/;

/**
 * A listen address, `[addr]:port` or `a.b.c.d:port`, returned as `{ host, port }`. `accept` judges the
 * host (`v6`: it was bracketed); a refusal gets `message`, which should show the expected form.
 */
export function listenAddress(accept: (host: string, v6: boolean) => boolean, message: string) {
  return z.string().transform((text, ctx) => {
    const m = LISTEN.exec(text);
    const v6 = m?.groups?.['v6'];
    const host = v6 ?? m?.groups?.['v4'];
    const port = Number(m?.groups?.['port']);
    if (host === undefined || !(port > 0 && port < 65536) || !accept(host, v6 !== undefined)) {
      ctx.addIssue({ code: 'custom', message });
      return z.NEVER;
    }
    return { host, port };
  });
}

/** Host and port a daemon listens on. */
export interface ListenAddress {
  host: string;
  port: number;
}

const METRICS_FORM = '{ listen: "[::]:9180" }';

/**
 * The unsigned Prometheus endpoint (`GET /metrics`, `GET /healthz`): `{ listen: "address:port" }`, any
 * address (a scrape comes from another host), IPv6 bracketed and possibly scoped (`[fe80::1%eth0]`).
 */
export const metricsSection = z.strictObject(
  {
    listen: listenAddress(
      (host, v6) => (v6 ? isNodeIPv6(host) : isIPv4(host)),
      'must be address:port ("[::]:9180", "[2001:db8::1]:9180" or "0.0.0.0:9180")',
    ),
  },
  { error: (issue) => (issue.code === 'invalid_type' ? `must be ${METRICS_FORM}` : undefined) },
);

/**
 * Whether two listen addresses would want the same socket: the same port, and the same host or a
 * wildcard that covers the other ("::" covers IPv4 too, Linux's default; "0.0.0.0" only IPv4).
 */
export function sameSocket(a: ListenAddress, b: ListenAddress): boolean {
  if (a.port !== b.port) return false;
  const covers = (wide: string, other: string) =>
    wide === other || wide === '::' || (wide === '0.0.0.0' && !other.includes(':'));
  return covers(a.host, b.host) || covers(b.host, a.host);
}
