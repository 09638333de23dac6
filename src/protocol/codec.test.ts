// Every wire element through the shared dns-packet style check (round trip, length, offset).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DecodeError, EncodeError, OptionValueError } from './errors.ts';
import * as ipv6 from './ipv6.ts';
import * as bindingAcknowledgement from './messages/bindingAcknowledgement.ts';
import * as bindingError from './messages/bindingError.ts';
import * as bindingRefreshRequest from './messages/bindingRefreshRequest.ts';
import * as bindingUpdate from './messages/bindingUpdate.ts';
import { mobilityHeader } from './mh.ts';
import * as auth from './options/auth.ts';
import * as bra from './options/bindingRefreshAdvice.ts';
import { decodeOptions, encodeOptions, optionsEncodingLength } from './options/index.ts';
import * as ipv4Ack from './options/ipv4AddressAcknowledgement.ts';
import * as ipv4Hoa from './options/ipv4HomeAddress.ts';
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

  it('IPv4 Home Address (RFC 5555 §3.1.1): prefix length in the top 6 bits, P below it', () => {
    const prefix = {
      type: 'ipv4HomeAddress',
      homeAddress: '192.0.2.0',
      prefixLength: 24,
      requestPrefix: true,
    } as const;
    // 24 << 2 = 0x60, P = 0x02; reserved 9 bits zero
    assert.deepEqual(checkCodec(ipv4Hoa, prefix), hex('1d06 62 00 c0000200'));
    const address = { ...prefix, homeAddress: '198.51.100.7', prefixLength: 32, requestPrefix: false };
    assert.deepEqual(checkCodec(ipv4Hoa, address), hex('1d06 80 00 c6336407'));
    // 0.0.0.0 asks the HA to assign (RFC 5555 §3.1.1); the shortest and the longest prefix length.
    checkCodec(ipv4Hoa, { ...prefix, homeAddress: '0.0.0.0', prefixLength: 1 });
    checkCodec(ipv4Hoa, { ...address, homeAddress: '255.255.255.255' });
  });

  it('IPv4 Address Acknowledgement (RFC 5555 §3.2.1): status, then prefix length in the top 6 bits', () => {
    const ok = {
      type: 'ipv4AddressAcknowledgement',
      status: 0,
      homeAddress: '192.0.2.0',
      prefixLength: 24,
    } as const;
    assert.deepEqual(checkCodec(ipv4Ack, ok), hex('1e06 00 60 c0000200'));
    const refused = { ...ok, status: 133, homeAddress: '198.51.100.7', prefixLength: 0 };
    assert.deepEqual(checkCodec(ipv4Ack, refused), hex('1e06 85 00 c6336407'));
    checkCodec(ipv4Ack, { ...ok, status: 255, prefixLength: 32 });
  });

  it('IPv4 options: reserved bits are ignored on decode and sent as zero', () => {
    const hoa = ipv4Hoa.decode(hex('1d06 63 ff c0000200'), 0, 8);
    assert.deepEqual(hoa, {
      type: 'ipv4HomeAddress',
      homeAddress: '192.0.2.0',
      prefixLength: 24,
      requestPrefix: true,
    });
    assert.deepEqual(ipv4Hoa.encode(hoa, new Uint8Array(8), 0), hex('1d06 62 00 c0000200'));
    const ack = ipv4Ack.decode(hex('1e06 80 63 c0000200'), 0, 8);
    assert.deepEqual(ack, {
      type: 'ipv4AddressAcknowledgement',
      status: 128,
      homeAddress: '192.0.2.0',
      prefixLength: 24,
    });
    assert.deepEqual(ipv4Ack.encode(ack, new Uint8Array(8), 0), hex('1e06 80 60 c0000200'));
  });

  it('IPv4 options: a length other than 6 or a truncated buffer is a DecodeError', () => {
    for (const [codec, name, type] of [
      [ipv4Hoa, 'IPv4 Home Address', '1d'],
      [ipv4Ack, 'IPv4 Address Acknowledgement', '1e'],
    ] as const) {
      const five = hex(`${type}05 6000 c00002`);
      assert.throws(() => codec.decode(five, 0, 7), {
        name: 'DecodeError',
        message: `${name} length is 5, not 6`,
      });
      const seven = hex(`${type}07 6000 c0000200 00`);
      assert.throws(() => codec.decode(seven, 0, 9), {
        name: 'DecodeError',
        message: `${name} length is 7, not 6`,
      });
      // The option's end lies past the buffer: the missing octets are not read as zero.
      assert.throws(
        () => codec.decode(hex(`${type}06 6000 c000`), 0, 8),
        (err: unknown) => {
          assert.ok(err instanceof DecodeError && /truncated/.test(err.message), String(err));
          return true;
        },
      );
    }
  });

  it('IPv4 options: a prefix length outside the RFC 5555 range is an OptionValueError (a DecodeError)', () => {
    for (const [octets, why] of [
      ['1d06 00 00 c0000200', /prefix length 0 is not 1\.\.32/],
      ['1d06 86 00 c0000200', /prefix length 33 is not 1\.\.32/],
      ['1d06 fe 00 c0000200', /prefix length 63 is not 1\.\.32/],
      ['1e06 00 84 c0000200', /prefix length 33 > 32/],
      ['1e06 00 fc c0000200', /prefix length 63 > 32/],
    ] as const) {
      const codec = octets.startsWith('1d') ? ipv4Hoa : ipv4Ack;
      assert.throws(
        () => codec.decode(hex(octets), 0, 8),
        (err: unknown) => {
          assert.ok(err instanceof OptionValueError && err instanceof DecodeError, String(err));
          assert.match(err.message, why);
          return true;
        },
      );
    }
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
      [ipv4Hoa, { type: 'ipv4HomeAddress', homeAddress: '192.0.2.0', prefixLength: 0, requestPrefix: true }],
      [ipv4Hoa, { type: 'ipv4HomeAddress', homeAddress: '192.0.2.0', prefixLength: 33, requestPrefix: true }],
      [
        ipv4Hoa,
        { type: 'ipv4HomeAddress', homeAddress: '192.0.2.0', prefixLength: 2.5, requestPrefix: true },
      ],
      [ipv4Hoa, { type: 'ipv4HomeAddress', homeAddress: '192.0.2', prefixLength: 24, requestPrefix: true }],
      [
        ipv4Hoa,
        { type: 'ipv4HomeAddress', homeAddress: '192.0.02.0', prefixLength: 24, requestPrefix: true },
      ],
      [
        ipv4Hoa,
        { type: 'ipv4HomeAddress', homeAddress: '::ffff:192.0.2.0', prefixLength: 24, requestPrefix: true },
      ],
      [
        ipv4Ack,
        { type: 'ipv4AddressAcknowledgement', status: 256, homeAddress: '192.0.2.0', prefixLength: 24 },
      ],
      [
        ipv4Ack,
        { type: 'ipv4AddressAcknowledgement', status: -1, homeAddress: '192.0.2.0', prefixLength: 24 },
      ],
      [
        ipv4Ack,
        { type: 'ipv4AddressAcknowledgement', status: 0, homeAddress: '192.0.2.0', prefixLength: 33 },
      ],
      [
        ipv4Ack,
        { type: 'ipv4AddressAcknowledgement', status: 0, homeAddress: '192.0.2.256', prefixLength: 24 },
      ],
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

  it('IPv4 Home Address and Acknowledgement 4n (RFC 5555 §3.1.1, §3.2.1)', () => {
    const hoa = {
      type: 'ipv4HomeAddress',
      homeAddress: '192.0.2.0',
      prefixLength: 24,
      requestPrefix: true,
    } as const;
    const ack = {
      type: 'ipv4AddressAcknowledgement',
      status: 0,
      homeAddress: '192.0.2.0',
      prefixLength: 24,
    } as const;
    // at 12 (the BU's and BA's first option): 4n already, back to back, the MH ends at 28 + 4 = 32
    checkCodec(optionList(12), [hoa, ack], [hoa, ack, { type: 'padN', length: 2 }]);
    // at 13: three octets of padding first, then it ends the MH at 24
    checkCodec(optionList(13), [hoa], [{ type: 'padN', length: 1 }, hoa]);
    // at 14: two
    checkCodec(optionList(14), [ack], [{ type: 'padN', length: 0 }, ack]);
    // after an MNP (8n+4, 20 octets) the next 4n offset is where it ends
    const mnp = { type: 'mobileNetworkPrefix', prefix: '2001:db8:100::', prefixLength: 64 } as const;
    checkCodec(optionList(12), [mnp, hoa], [mnp, hoa]);
  });

  it('IPv4 Home Address and Acknowledgement off 4n are refused', () => {
    for (const octets of ['1d06 6200 c0000200', '1e06 0060 c0000200']) {
      const buf = hex(`00 ${octets} 000000`);
      assert.throws(() => decodeOptions(buf, 0, 12, 12), /at MH offset 13 is not aligned 4n\+0/);
      const two = hex(`0100 ${octets} 0100`);
      assert.throws(() => decodeOptions(two, 0, 12, 12), /at MH offset 14 is not aligned 4n\+0/);
    }
  });

  it('an IPv4 option with an invalid prefix length is kept raw and the rest decoded (RFC 5555 answers it per option)', () => {
    const buf = hex('1d06 86 00 c0000200 1e06 00 60 c0000200');
    assert.deepEqual(decodeOptions(buf, 0, 16, 8), [
      { type: 'raw', code: 29, data: hex('8600 c0000200') },
      { type: 'ipv4AddressAcknowledgement', status: 0, homeAddress: '192.0.2.0', prefixLength: 24 },
    ]);
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
