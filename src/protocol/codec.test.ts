// Every wire element through the shared dns-packet style check (round trip, length, offset).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DecodeError, EncodeError } from './errors.ts';
import * as ipv6 from './ipv6.ts';
import * as bindingAcknowledgement from './messages/bindingAcknowledgement.ts';
import * as bindingError from './messages/bindingError.ts';
import * as bindingRefreshRequest from './messages/bindingRefreshRequest.ts';
import * as bindingUpdate from './messages/bindingUpdate.ts';
import { mobilityHeader } from './mh.ts';
import * as auth from './options/auth.ts';
import * as bra from './options/bindingRefreshAdvice.ts';
import { decodeOptions, encodeOptions, optionsEncodingLength } from './options/index.ts';
import * as mnp from './options/mobileNetworkPrefix.ts';
import * as pad1 from './options/pad1.ts';
import * as padN from './options/padN.ts';
import * as raw from './options/raw.ts';
import * as replay from './options/replayProtection.ts';
import { type Codec, checkCodec, hex } from './testkit.ts';
import type { MobilityMessage, MobilityOption } from './types.ts';

const A = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);

describe('options, one at a time', () => {
  it('pad1, padN', () => {
    assert.deepEqual(checkCodec(pad1, { type: 'pad1' }), hex('00'));
    assert.deepEqual(checkCodec(padN, { type: 'padN', length: 0 }), hex('0100'));
    assert.deepEqual(checkCodec(padN, { type: 'padN', length: 3 }), hex('0103 000000'));
  });

  it('Binding Refresh Advice', () => {
    assert.deepEqual(checkCodec(bra, { type: 'bindingRefreshAdvice', interval: 0x1234 }), hex('0202 1234'));
  });

  it('Mobile Network Prefix', () => {
    const v = { type: 'mobileNetworkPrefix', prefix: '2001:db8:100::', prefixLength: 64 } as const;
    assert.deepEqual(checkCodec(mnp, v), hex('0612 00 40 20010db8 01000000 00000000 00000000'));
    checkCodec(mnp, { type: 'mobileNetworkPrefix', prefix: '::', prefixLength: 0 });
    checkCodec(mnp, { type: 'mobileNetworkPrefix', prefix: '2001:db8::1', prefixLength: 128 });
  });

  it('Mobility Message Authentication', () => {
    const v = { type: 'auth', subtype: 1, spi: 0xdeadbeef, authenticator: A } as const;
    assert.deepEqual(checkCodec(auth, v), hex('0911 01 deadbeef 0102030405060708090a0b0c'));
    checkCodec(auth, { type: 'auth', subtype: 2, spi: 0, authenticator: new Uint8Array(0) });
  });

  it('Replay Protection', () => {
    const v = { type: 'replayProtection', timestamp: 0xe93c7f00_80000000n } as const;
    assert.deepEqual(checkCodec(replay, v), hex('0a08 e93c7f00 80000000'));
    checkCodec(replay, { type: 'replayProtection', timestamp: 0xffff_ffff_ffff_ffffn });
  });

  it('raw (unknown types)', () => {
    assert.deepEqual(checkCodec(raw, { type: 'raw', code: 0x7f, data: hex('aabb') }), hex('7f02 aabb'));
    checkCodec(raw, { type: 'raw', code: 0xff, data: new Uint8Array(255) });
  });

  it('encoders refuse out-of-range values with EncodeError', () => {
    const buf = new Uint8Array(300);
    const bad: [{ encode(v: never, buf: Uint8Array, offset: number): unknown }, unknown][] = [
      [bra, { type: 'bindingRefreshAdvice', interval: 0x10000 }],
      [mnp, { type: 'mobileNetworkPrefix', prefix: '::', prefixLength: 129 }],
      [auth, { type: 'auth', subtype: 256, spi: 0, authenticator: A }],
      [auth, { type: 'auth', subtype: 1, spi: -1, authenticator: A }],
      [auth, { type: 'auth', subtype: 1, spi: 1, authenticator: new Uint8Array(251) }],
      [replay, { type: 'replayProtection', timestamp: 1n << 64n }],
      [raw, { type: 'raw', code: 0, data: A }],
      [raw, { type: 'raw', code: 3, data: new Uint8Array(256) }],
      [padN, { type: 'padN', length: 256 }],
    ];
    for (const [codec, v] of bad) assert.throws(() => codec.encode(v as never, buf, 0), EncodeError);
  });
});

/** The options codec as a Codec, starting at MH offset `at`. */
const optionList = (at: number): Codec<MobilityOption[]> => ({
  encodingLength: (v) => optionsEncodingLength(v, at),
  encode: (v, buf, offset) => encodeOptions(v, buf, offset, at),
  decode: (buf, offset, end) => decodeOptions(buf, offset, end, at),
});

describe('option lists: alignment (RFC 6275 §6.2, RFC 3963 §4.3, RFC 4285 §5–6)', () => {
  const mnp64 = { type: 'mobileNetworkPrefix', prefix: '2001:db8:100::', prefixLength: 64 } as const;
  const ts = { type: 'replayProtection', timestamp: 1n } as const;
  const sig = { type: 'auth', subtype: 1, spi: 7, authenticator: A } as const;

  it('MNP at MH offset 12 needs no padding; the MH is padded to 8n', () => {
    const bytes = checkCodec(optionList(12), [mnp64, mnp64], [mnp64, { type: 'padN', length: 2 }, mnp64]);
    assert.equal((12 + bytes.length) % 8, 0);
  });

  it('BRA 2n, replay 8n+2, auth 4n+1 placed to end the MH', () => {
    const bra2 = { type: 'bindingRefreshAdvice', interval: 5 } as const;
    // at 13: BRA needs an even offset → Pad1; then 18 ≡ 2 (mod 8) suits replay; auth at 28 → pad to 29 ends at 48.
    checkCodec(optionList(13), [bra2, ts, sig], [{ type: 'pad1' }, bra2, ts, { type: 'pad1' }, sig]);
  });

  it('an auth option that is not last is only 4n+1 aligned', () => {
    const v: MobilityOption[] = [sig, bra2()];
    checkCodec(optionList(12), v, [{ type: 'pad1' }, sig, bra2(), { type: 'padN', length: 2 }]);
  });

  it('explicit padding is kept as given, even when more than needed', () => {
    // 8 octets of padding where none is needed, then 8 more at the end.
    const v: MobilityOption[] = [
      { type: 'pad1' },
      { type: 'pad1' },
      { type: 'padN', length: 4 },
      mnp64,
      { type: 'padN', length: 6 },
    ];
    checkCodec(optionList(12), v, v);
  });

  it('an empty list at 12 is one PadN of length 2', () => {
    checkCodec(optionList(12), [], [{ type: 'padN', length: 2 }]);
    checkCodec(optionList(8), [], []);
  });
});

function bra2(): MobilityOption {
  return { type: 'bindingRefreshAdvice', interval: 5 };
}

describe('messages', () => {
  const opts: MobilityOption[] = [
    { type: 'mobileNetworkPrefix', prefix: '2001:db8:100::', prefixLength: 64 },
  ];
  it('Binding Update', () => {
    const v = { type: 'bindingUpdate', sequence: 1, flags: 0xc400, lifetime: 150, options: opts } as const;
    checkCodec(bindingUpdate as Codec<MobilityMessage>, v);
  });
  it('Binding Acknowledgement', () => {
    const v = {
      type: 'bindingAcknowledgement',
      status: 142,
      flags: 0x40,
      sequence: 9,
      lifetime: 0,
      options: opts,
    } as const;
    checkCodec(bindingAcknowledgement as Codec<MobilityMessage>, v);
  });
  it('Binding Error', () => {
    const v: MobilityMessage = {
      type: 'bindingError',
      status: 2,
      homeAddress: '2001:db8:ffff::100',
      options: [],
    };
    checkCodec(bindingError as Codec<MobilityMessage>, v);
  });
  it('Binding Refresh Request', () => {
    checkCodec(bindingRefreshRequest as Codec<MobilityMessage>, {
      type: 'bindingRefreshRequest',
      options: [],
    });
  });
  it('a body shorter than its fixed fields is dropped', () => {
    assert.throws(() => bindingUpdate.decode(new Uint8Array(5), 0, 5), DecodeError);
    assert.throws(() => bindingAcknowledgement.decode(new Uint8Array(5), 0, 5), DecodeError);
    assert.throws(() => bindingError.decode(new Uint8Array(17), 0, 17), DecodeError);
    assert.throws(() => bindingRefreshRequest.decode(new Uint8Array(1), 0, 1), DecodeError);
  });
});

describe('headers', () => {
  it('inner IPv6 header', () => {
    const h = {
      trafficClass: 0xab,
      flowLabel: 0xcdef1,
      payloadLength: 88,
      nextHeader: 135,
      hopLimit: 64,
      src: '2001:db8:ffff::100',
      dst: '2001:db8:ffff::1',
    };
    const bytes = checkCodec(ipv6, h);
    assert.deepEqual(bytes.subarray(0, 8), hex('6abcdef1 0058 87 40'));
  });

  it('Mobility Header with its checksum', () => {
    const pseudo = { src: '2001:db8:ffff::100', dst: '2001:db8:ffff::1' };
    const mh: Codec<MobilityMessage> = {
      encodingLength: (m) => mobilityHeader.encodingLength(m),
      encode: (m, buf, offset) => mobilityHeader.encode(m, buf, offset, pseudo),
      decode: (buf, offset, end) => mobilityHeader.decode(buf, offset, end, pseudo),
    };
    for (const m of [
      { type: 'bindingRefreshRequest', options: [] },
      {
        type: 'bindingUpdate',
        sequence: 0xffff,
        flags: 0xffff,
        lifetime: 0xffff,
        options: [{ type: 'padN', length: 2 }],
      },
      { type: 'bindingError', status: 1, homeAddress: '::', options: [] },
    ] as MobilityMessage[]) {
      const bytes = checkCodec(mh, m);
      assert.equal(bytes.length % 8, 0);
      assert.equal(bytes[1], bytes.length / 8 - 1);
    }
  });

  it('refuses an MH longer than 2048 octets', () => {
    const options: MobilityOption[] = Array.from({ length: 9 }, () => ({
      type: 'raw',
      code: 99,
      data: new Uint8Array(255),
    }));
    const m: MobilityMessage = { type: 'bindingRefreshRequest', options };
    assert.throws(
      () => mobilityHeader.encode(m, new Uint8Array(4000), 0, { src: '::', dst: '::' }),
      EncodeError,
    );
  });
});
