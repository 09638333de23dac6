// Property tests over random valid messages (seeded; a failure prints OFFLINK_SEED to replay it).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mobilityHeader } from './mh.ts';
import { decodeSignalingPacket, encodeSignalingPacket, verifyPacketAuth } from './packet.ts';
import * as gen from './testgen.ts';
import { checkCodec, mulberry32, testSeed, withSeed } from './testkit.ts';
import type { MobilityMessage } from './types.ts';

const RUNS = 1500;

describe('encode → decode → encode is byte-exact', () => {
  for (const type of gen.MESSAGE_TYPES) {
    it(`${type} with random options (${RUNS} messages)`, () => {
      const seed = testSeed();
      withSeed(seed, () => {
        const rng = mulberry32(seed);
        for (let i = 0; i < RUNS; i++) {
          const msg = gen.message(rng, type);
          const pseudo = { src: gen.address(rng), dst: gen.address(rng) };
          const len = mobilityHeader.encodingLength(msg);
          const first = mobilityHeader.encode(msg, new Uint8Array(len), 0, pseudo);
          const decoded = mobilityHeader.decode(first, 0, len, pseudo);
          const second = mobilityHeader.encode(decoded, new Uint8Array(len), 0, pseudo);
          assert.deepEqual(second, first, `message ${i}`);
          const { options, ...fields } = msg;
          const { options: decodedOptions, ...decodedFields } = decoded;
          assert.deepEqual(decodedFields, fields);
          assert.deepEqual(gen.withoutPadding(decodedOptions), gen.withoutPadding(options));
        }
      });
    });
  }

  it('the shared codec check holds for random messages', () => {
    const seed = testSeed();
    withSeed(seed, () => {
      const rng = mulberry32(seed);
      for (let i = 0; i < 200; i++) {
        const pseudo = { src: gen.address(rng), dst: gen.address(rng) };
        const codec = {
          encodingLength: (m: MobilityMessage) => mobilityHeader.encodingLength(m),
          encode: (m: MobilityMessage, b: Uint8Array, offset: number) =>
            mobilityHeader.encode(m, b, offset, pseudo),
          decode: (b: Uint8Array, offset: number, e: number) => mobilityHeader.decode(b, offset, e, pseudo),
        };
        const msg = gen.message(rng);
        const len = codec.encodingLength(msg);
        const canonical = codec.decode(codec.encode(msg, new Uint8Array(len), 0), 0, len);
        checkCodec(codec, canonical);
      }
    });
  });
});

describe('signed signaling packets', () => {
  it('sign → decode → verify, and re-encoding the decoded packet is byte-exact', () => {
    const seed = testSeed();
    withSeed(seed, () => {
      const rng = mulberry32(seed);
      for (let i = 0; i < 500; i++) {
        const p = gen.packet(rng);
        p.message.options = p.message.options.filter((option) => option.type !== 'auth');
        const sa = gen.securityAssociation(rng);
        const coa = gen.address(rng);
        const bytes = encodeSignalingPacket(p, { sa, coa, hoa: p.src });
        assert.equal((bytes.length - 40) % 8, 0);
        const d = decodeSignalingPacket(bytes);
        assert.equal(d.src, p.src);
        assert.equal(d.dst, p.dst);
        assert.equal(d.hopLimit, p.hopLimit);
        assert.notEqual(d.authOffset, undefined);
        assert.equal(
          d.authOffset! + 7 + (sa.algorithm === 'hmac-sha1' ? 12 : 16),
          d.mh.length,
          'auth ends the MH',
        );
        assert.equal(verifyPacketAuth(d, sa, coa, p.src), true);
        assert.equal(verifyPacketAuth(d, { ...sa, spi: (sa.spi + 1) >>> 0 }, coa, p.src), false);
        assert.equal(verifyPacketAuth(d, sa, coa, p.dst === p.src ? '::1' : p.dst), false);
        const key = sa.key.slice();
        key[0]! ^= 0x80;
        assert.equal(verifyPacketAuth(d, { ...sa, key }, coa, p.src), false);
        assert.deepEqual(encodeSignalingPacket(d), bytes);
      }
    });
  });

  it('unsigned packets round-trip and do not verify', () => {
    const seed = testSeed();
    withSeed(seed, () => {
      const rng = mulberry32(seed);
      for (let i = 0; i < 500; i++) {
        const p = gen.packet(rng);
        const bytes = encodeSignalingPacket(p);
        const d = decodeSignalingPacket(bytes);
        assert.deepEqual(encodeSignalingPacket(d), bytes);
        const sa = gen.securityAssociation(rng);
        if (d.message.options.at(-1)?.type !== 'auth')
          assert.equal(verifyPacketAuth(d, sa, '::1', p.src), false);
      }
    });
  });
});
