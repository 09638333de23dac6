// The public API of the wire codec (docs/architecture.md: protocol/ imports nothing of ours but ../errors.ts).
export * from './address.ts';
export * from './auth.ts';
export * from './constants.ts';
export * from './errors.ts';
export type { Ipv6Header } from './ipv6.ts';
export * as ipv6 from './ipv6.ts';
export * from './mh.ts';
export * from './packet.ts';
export * from './sequence.ts';
export type * from './types.ts';
