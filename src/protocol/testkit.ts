// Shared test helpers (not a test file): the dns-packet codec check, a seeded PRNG, hex literals.
import assert from 'node:assert/strict';

export interface Codec<T> {
  encodingLength(v: T): number;
  encode(v: T, buf: Uint8Array, offset: number): Uint8Array;
  decode(buf: Uint8Array, offset: number, end: number): T;
}

const OFFSETS = [0, 1, 7, 13];

/**
 * dns-packet's testEncoder: encodes `value` at several offsets into buffers pre-filled with 0x00 and
 * with 0xff, and checks that exactly encodingLength(value) octets are written (the fill around them is
 * untouched, and both fills give the same octets, so every octet in the range is written), that the
 * octets do not depend on the offset, that decoding gives `expected`, and that re-encoding the decoded
 * value gives the same octets. Returns the encoding.
 */
export function checkCodec<T>(codec: Codec<T>, value: T, expected: T = value): Uint8Array {
  const len = codec.encodingLength(value);
  let first: Uint8Array | undefined;
  for (const offset of OFFSETS) {
    for (const fill of [0x00, 0xff]) {
      const buf = new Uint8Array(offset + len + 5).fill(fill);
      const out = codec.encode(value, buf, offset);
      assert.equal(out, buf, 'encode returns the buffer it wrote into');
      for (let i = 0; i < offset; i++)
        assert.equal(buf[i], fill, `octet ${i} before offset ${offset} changed`);
      for (let i = offset + len; i < buf.length; i++) {
        assert.equal(buf[i], fill, `octet ${i} past encodingLength ${len} (offset ${offset}) changed`);
      }
      const bytes = buf.slice(offset, offset + len);
      if (first) assert.deepEqual(bytes, first, `encoding at offset ${offset} (fill ${fill}) differs`);
      else first = bytes;
      const decoded = codec.decode(buf, offset, offset + len);
      assert.deepEqual(decoded, expected, `decode at offset ${offset}`);
      assert.equal(codec.encodingLength(decoded), len, 'encodingLength of the decoded value');
      const again = new Uint8Array(len);
      codec.encode(decoded, again, 0);
      assert.deepEqual(again, bytes, 're-encoding the decoded value');
    }
  }
  return first!;
}

/** mulberry32: a tiny seeded PRNG with 32-bit state, uniform in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Seed for a randomized test: OFFLINK_SEED if set (to replay a failure), else a fresh one. */
export function testSeed(): number {
  const fromEnv = process.env['OFFLINK_SEED'];
  return fromEnv ? Number(fromEnv) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
}

/** Runs `body` and, if it throws, rethrows with the seed in the message so the run can be replayed. */
export function withSeed(seed: number, body: () => void): void {
  try {
    body();
  } catch (err) {
    const message = `failed with OFFLINK_SEED=${seed}: ${(err as Error).message}`;
    throw Object.assign(new Error(message, { cause: err }), { seed });
  }
}

/** Octets from hex text; whitespace and `//` comments to the end of a line are ignored. */
export function hex(text: string): Uint8Array {
  const digits = text.replace(/\/\/[^\n]*/g, '').replace(/\s+/g, '');
  assert.match(digits, /^(?:[0-9a-fA-F]{2})*$/, 'hex literal must be whole octets');
  return new Uint8Array(Buffer.from(digits, 'hex'));
}

export function toHex(buf: Uint8Array): string {
  return Buffer.from(buf).toString('hex');
}
