// 16-bit sequence numbers of Binding Updates compared as serial numbers (RFC 6275 §9.5.1, docs/architecture.md, signaling).

const MOD = 0x10000;
const HALF = 0x8000;

/** Whether `a` is newer than `b`: (a − b) mod 2^16 lies in [1, 2^15). */
export function seqNewer(a: number, b: number): boolean {
  const d = (((a - b) % MOD) + MOD) % MOD;
  return d >= 1 && d < HALF;
}

/** `a + n` modulo 2^16 (n may be negative). */
export function seqAdd(a: number, n: number): number {
  return (((a + n) % MOD) + MOD) % MOD;
}
