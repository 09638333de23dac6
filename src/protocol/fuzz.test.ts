// Mutated valid packets (bit flips, byte changes, truncation, extension, length-field edits): decoding
// either returns or throws DecodeError, nothing else (STYLE §3, RFC 6275 §9.2).
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { DecodeError } from './errors.ts';
import { mhChecksum, mobilityHeader } from './mh.ts';
import { decodeSignalingPacket, encodeSignalingPacket, verifyPacketAuth } from './packet.ts';
import * as gen from './testgen.ts';
import { mulberry32, testSeed, toHex, withSeed } from './testkit.ts';
import type { SecurityAssociation } from './types.ts';

const MUTANTS = 100_000;

function mutate(rng: gen.Rng, input: Uint8Array): Uint8Array {
  let b = input.slice();
  const edits = gen.int(rng, 1, 3);
  for (let e = 0; e < edits; e++) {
    const at = gen.int(rng, 0, Math.max(0, b.length - 1));
    switch (gen.int(rng, 0, 7)) {
      case 0: // flip one bit
        if (b.length) b[at]! ^= 1 << gen.int(rng, 0, 7);
        break;
      case 1: // change one octet
        if (b.length) b[at] = gen.int(rng, 0, 255);
        break;
      case 2: // truncate
        b = b.slice(0, gen.int(rng, 0, b.length));
        break;
      case 3: // extend
        b = Uint8Array.from([...b, ...gen.bytes(rng, gen.int(rng, 1, 24))]);
        break;
      case 4: // MH header length
        if (b.length > 41)
          b[41] = gen.pick(rng, [b[41]! + 1, b[41]! - 1, 0, 255, gen.int(rng, 0, 255)]) & 0xff;
        break;
      case 5: // an option's length octet, or its type octet
        if (b.length > 52)
          b[gen.int(rng, 52, b.length - 1)] = gen.pick(rng, [
            0,
            1,
            2,
            6,
            9,
            10,
            18,
            29,
            30,
            255,
            gen.int(rng, 0, 255),
          ]);
        break;
      case 6: // MH type
        if (b.length > 42) b[42] = gen.pick(rng, [0, 5, 6, 7, gen.int(rng, 0, 255)]);
        break;
      default: // IPv6 payload length
        if (b.length > 5) b[5] = (b[5]! + gen.pick(rng, [1, -1, 8, -8])) & 0xff;
    }
  }
  return b;
}

/** Makes the payload length and checksum agree with the mutated octets, so deeper checks are reached. */
function repair(b: Uint8Array): void {
  if (b.length < 46) return;
  const n = b.length - 40;
  b[4] = (n >> 8) & 0xff;
  b[5] = n & 0xff;
  const checksum = mhChecksum(b.subarray(40), b.subarray(8, 24), b.subarray(24, 40));
  b[44] = checksum >> 8;
  b[45] = checksum & 0xff;
}

it(`${MUTANTS} mutated packets: decode returns or throws DecodeError`, () => {
  const seed = testSeed();
  withSeed(seed, () => {
    const rng = mulberry32(seed);
    const sas: SecurityAssociation[] = [];
    const bases = Array.from({ length: 300 }, (_, i) => {
      const p = gen.packet(rng);
      if (i % 2 === 0) return encodeSignalingPacket(p);
      p.message.options = p.message.options.filter((option) => option.type !== 'auth');
      const sa = gen.securityAssociation(rng);
      sas.push(sa);
      return encodeSignalingPacket(p, { sa, coa: gen.address(rng), hoa: p.src });
    });
    const reasons = new Map<string, number>();
    let accepted = 0;
    const started = performance.now();
    for (let i = 0; i < MUTANTS; i++) {
      const b = mutate(rng, gen.pick(rng, bases));
      if (rng() < 0.6) repair(b);
      try {
        const d = decodeSignalingPacket(b);
        accepted++;
        verifyPacketAuth(d, gen.pick(rng, sas), '2001:db8::1', d.src);
        // Whatever decodes must re-encode, and decode again to the same message (a normal form).
        assert.deepEqual(decodeSignalingPacket(encodeSignalingPacket(d)).message, d.message);
      } catch (err) {
        if (!(err instanceof DecodeError)) {
          throw new Error(`mutant ${i} (${toHex(b)}) threw ${String(err)}`, { cause: err });
        }
        const reason = err.message.replace(/[0-9]+/g, 'N').replace(/^.*(aligned|overruns).*$/, '$1');
        reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
      }
      if (i % 4 === 0 && b.length > 40) {
        // The MH decoder on its own, without a checksum, reaches the option checks more often.
        try {
          mobilityHeader.decode(b, 40, b.length);
        } catch (err) {
          if (!(err instanceof DecodeError))
            throw new Error(`MH of mutant ${i} (${toHex(b)}) threw ${String(err)}`);
        }
      }
    }
    const seconds = (performance.now() - started) / 1000;
    // The mutants must reach past the checksum into the message and option checks.
    assert.ok(accepted > MUTANTS * 0.02, `only ${accepted} mutants decoded`);
    for (const want of [
      'checksum',
      'aligned',
      'overruns',
      'payload length',
      'header length',
      'unrecognized MH type',
      'IPvN Home Address length', // RFC 5555 options: their decoders are reached too
      'IPvN Address Acknowledgement length',
    ]) {
      assert.ok(
        [...reasons.keys()].some((r) => r.includes(want)),
        `no mutant was rejected for "${want}"`,
      );
    }
    assert.ok(seconds < 20, `took ${seconds.toFixed(1)} s`);
  });
});
