// Golden vectors written octet by octet from the RFC layouts (RFC 8200 §3, RFC 6275 §6.1, RFC 3963 §4,
// RFC 4285 §5–6, RFC 5555 §3.1.1 and §3.2.1), not produced by the encoder. Only the authenticator (HMAC) and the checksum are
// computed here, each by its own straightforward code.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import { BaFlag, BaStatus, BuFlag, IPv4AckStatus } from './constants.ts';
import { decodeSignalingPacket, encodeSignalingPacket, verifyPacketAuth } from './packet.ts';
import { hex, toHex } from './testkit.ts';
import type { SecurityAssociation } from './types.ts';

const HOA = '2001:db8:ffff::100';
const HA = '2001:db8:ffff::1';
const COA = '2001:db8:a::2';
const sa: SecurityAssociation = {
  spi: 0x100,
  key: new TextEncoder().encode('offlink golden key 1'),
  algorithm: 'hmac-sha1',
};
const COA_BYTES = hex('20010db8 000a0000 00000000 00000002');
const HOA_BYTES = hex('20010db8 ffff0000 00000000 00000100');
const HA_BYTES = hex('20010db8 ffff0000 00000000 00000001');
// 2024-01-01T00:00:00.5Z as an NTP timestamp: 3913056000 s since 1900, half a second.
const TIMESTAMP = 0xe93c7f00_80000000n;

/** RFC 1071 checksum over the RFC 8200 §8.1 pseudo-header and the MH, written independently here. */
function referenceChecksum(src: Uint8Array, dst: Uint8Array, mh: Uint8Array): number {
  const pseudo = [...src, ...dst, 0, 0, (mh.length >> 8) & 0xff, mh.length & 0xff, 0, 0, 0, 135];
  const all = [...pseudo, ...mh];
  let sum = 0;
  for (let i = 0; i < all.length; i += 2) sum += all[i]! * 256 + (all[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  return 0xffff - sum;
}

/** Fills the authenticator (HMAC-SHA1 truncated to 96 bits, RFC 4285 §5.2) then the checksum. */
function seal(mh: Uint8Array, authenticatorAt: number, src: Uint8Array, dst: Uint8Array): Uint8Array {
  const out = mh.slice();
  const mac = createHmac('sha1', sa.key)
    .update(COA_BYTES)
    .update(HOA_BYTES)
    .update(out.subarray(0, authenticatorAt));
  out.set(mac.digest().subarray(0, 12), authenticatorAt);
  const checksum = referenceChecksum(src, dst, out);
  out[4] = checksum >> 8;
  out[5] = checksum & 0xff;
  return out;
}

describe('golden: signed Binding Update with two MNPs', () => {
  const ip = hex(`
    60 00 00 00                          // version 6, traffic class 0, flow label 0
    00 58                                // payload length 88 (the MH)
    87                                   // next header 135: Mobility Header
    40                                   // hop limit 64
    20 01 0d b8 ff ff 00 00 00 00 00 00 00 00 01 00   // source: HoA 2001:db8:ffff::100
    20 01 0d b8 ff ff 00 00 00 00 00 00 00 00 00 01   // destination: HA 2001:db8:ffff::1
  `);
  const mhTemplate = hex(`
    3b                                   // [0]  payload proto 59 (IPPROTO_NONE), RFC 6275 §6.1.1
    0a                                   // [1]  header length 10: (10 + 1) × 8 = 88 octets
    05                                   // [2]  MH type 5: Binding Update
    00                                   // [3]  reserved
    00 00                                // [4]  checksum (zero while the authenticator is computed)
    12 34                                // [6]  sequence 0x1234, RFC 6275 §6.1.7
    c4 00                                // [8]  flags A (0x8000) | H (0x4000) | R (0x0400, RFC 3963 §4.1)
    00 96                                // [10] lifetime 150 × 4 s
    06 12 00 40                          // [12] MNP (8n+4): type 6, length 18, reserved, prefix length 64
    20 01 0d b8 01 00 00 00 00 00 00 00 00 00 00 00   // [16] 2001:db8:100::
    01 02 00 00                          // [32] PadN, 2 zero octets: next MNP to 36 = 8·4+4
    06 12 00 38                          // [36] MNP: type 6, length 18, reserved, prefix length 56
    20 01 0d b8 01 01 00 00 00 00 00 00 00 00 00 00   // [40] 2001:db8:101::
    01 00                                // [56] PadN, no data: replay protection to 58 = 8·7+2
    0a 08                                // [58] Replay Protection (RFC 4285 §6): type 10, length 8
    e9 3c 7f 00 80 00 00 00              // [60] NTP timestamp
    00                                   // [68] Pad1: authentication to 69 = 4·17+1
    09 11                                // [69] Mobility Message Authentication (RFC 4285 §5): type 9, length 17
    01                                   // [71] subtype 1: MN-HA
    00 00 01 00                          // [72] SPI 0x100
    00 00 00 00 00 00 00 00 00 00 00 00  // [76] authenticator, 96 bits, ends the MH at 88
  `);
  const mh = seal(mhTemplate, 76, HOA_BYTES, HA_BYTES);
  const golden = new Uint8Array([...ip, ...mh]);

  it('the layout is self-consistent', () => {
    assert.equal(mhTemplate.length, 88);
    assert.equal(ip.length, 40);
  });

  it('the encoder produces exactly these octets', () => {
    const bytes = encodeSignalingPacket(
      {
        src: HOA,
        dst: HA,
        message: {
          type: 'bindingUpdate',
          sequence: 0x1234,
          flags: BuFlag.A | BuFlag.H | BuFlag.R,
          lifetime: 150,
          options: [
            { type: 'mobileNetworkPrefix', prefix: '2001:db8:100::', prefixLength: 64 },
            { type: 'mobileNetworkPrefix', prefix: '2001:db8:101::', prefixLength: 56 },
            { type: 'replayProtection', timestamp: TIMESTAMP },
          ],
        },
      },
      { sa, coa: COA, hoa: HOA },
    );
    assert.equal(toHex(bytes), toHex(golden));
  });

  it('the decoder gives the fields, and the authenticator verifies', () => {
    const d = decodeSignalingPacket(golden);
    assert.equal(d.src, HOA);
    assert.equal(d.dst, HA);
    assert.equal(d.hopLimit, 64);
    assert.equal(d.authOffset, 69);
    assert.deepEqual(d.mh, mh);
    assert.deepEqual(d.message, {
      type: 'bindingUpdate',
      sequence: 0x1234,
      flags: 0xc400,
      lifetime: 150,
      options: [
        { type: 'mobileNetworkPrefix', prefix: '2001:db8:100::', prefixLength: 64 },
        { type: 'padN', length: 2 },
        { type: 'mobileNetworkPrefix', prefix: '2001:db8:101::', prefixLength: 56 },
        { type: 'padN', length: 0 },
        { type: 'replayProtection', timestamp: TIMESTAMP },
        { type: 'pad1' },
        { type: 'auth', subtype: 1, spi: 0x100, authenticator: mh.slice(76, 88) },
      ],
    });
    assert.equal(verifyPacketAuth(d, sa, COA, HOA), true);
    assert.equal(verifyPacketAuth(d, sa, '2001:db8:b::2', HOA), false);
  });
});

describe('golden: Binding Acknowledgement, status 142', () => {
  const ip = hex(`
    60 00 00 00                          // version 6, traffic class 0, flow label 0
    00 30                                // payload length 48
    87                                   // next header 135
    40                                   // hop limit 64
    20 01 0d b8 ff ff 00 00 00 00 00 00 00 00 00 01   // source: HA
    20 01 0d b8 ff ff 00 00 00 00 00 00 00 00 01 00   // destination: HoA
  `);
  const mhTemplate = hex(`
    3b                                   // [0]  payload proto 59
    05                                   // [1]  header length 5: 48 octets
    06                                   // [2]  MH type 6: Binding Acknowledgement
    00                                   // [3]  reserved
    00 00                                // [4]  checksum
    8e                                   // [6]  status 142: NOT_AUTHORIZED_FOR_PREFIX (RFC 3963 §4.2)
    00                                   // [7]  flags: none
    12 34                                // [8]  sequence 0x1234 (the BU's)
    00 00                                // [10] lifetime 0
    01 04 00 00 00 00                    // [12] PadN, 4 zero octets: replay protection to 18 = 8·2+2
    0a 08 e9 3c 7f 00 80 00 00 00        // [18] Replay Protection, NTP timestamp
    00                                   // [28] Pad1: authentication to 29 = 4·7+1
    09 11 01 00 00 01 00                 // [29] MN-HA authentication, SPI 0x100
    00 00 00 00 00 00 00 00 00 00 00 00  // [36] authenticator, ends the MH at 48
  `);
  const mh = seal(mhTemplate, 36, HA_BYTES, HOA_BYTES);
  const golden = new Uint8Array([...ip, ...mh]);

  it('the encoder produces exactly these octets', () => {
    const bytes = encodeSignalingPacket(
      {
        src: HA,
        dst: HOA,
        message: {
          type: 'bindingAcknowledgement',
          status: BaStatus.NOT_AUTHORIZED_FOR_PREFIX,
          flags: 0,
          sequence: 0x1234,
          lifetime: 0,
          options: [{ type: 'replayProtection', timestamp: TIMESTAMP }],
        },
      },
      { sa, coa: COA, hoa: HOA },
    );
    assert.equal(mhTemplate.length, 48);
    assert.equal(toHex(bytes), toHex(golden));
  });

  it('the decoder gives the fields', () => {
    const d = decodeSignalingPacket(golden);
    assert.equal(d.src, HA);
    assert.equal(d.dst, HOA);
    assert.equal(d.authOffset, 29);
    const m = d.message;
    assert.equal(m.type, 'bindingAcknowledgement');
    assert.equal(m.type === 'bindingAcknowledgement' && m.status, 142);
    assert.deepEqual(m, {
      type: 'bindingAcknowledgement',
      status: 142,
      flags: 0,
      sequence: 0x1234,
      lifetime: 0,
      options: [
        { type: 'padN', length: 4 },
        { type: 'replayProtection', timestamp: TIMESTAMP },
        { type: 'pad1' },
        { type: 'auth', subtype: 1, spi: 0x100, authenticator: mh.slice(36, 48) },
      ],
    });
    assert.equal(verifyPacketAuth(d, sa, COA, HOA), true);
  });
});

describe('golden: dual-stack BU, an IPv6 MNP and an IPv4 mobile network prefix (RFC 5555 §3.1.1)', () => {
  const ip = hex(`
    60 00 00 00 00 48 87 40              // IPv6, payload length 72, next header 135, hop limit 64
    20 01 0d b8 ff ff 00 00 00 00 00 00 00 00 01 00   // source: HoA
    20 01 0d b8 ff ff 00 00 00 00 00 00 00 00 00 01   // destination: HA
  `);
  const mhTemplate = hex(`
    3b 08 05 00                          // [0]  payload proto 59, header length 8: 72 octets, BU
    00 00                                // [4]  checksum
    00 07 c4 00 00 96                    // [6]  sequence 7, flags A H R, lifetime 150
    06 12 00 40                          // [12] MNP (8n+4), prefix length 64
    20 01 0d b8 01 00 00 00 00 00 00 00 00 00 00 00   // [16] 2001:db8:100::
    1d 06                                // [32] IPv4 Home Address (4n): type 29, length 6
    62                                   // [34] prefix length 24 (top 6 bits: 011000), P = 1, reserved bit 0
    00                                   // [35] reserved
    c0 00 02 00                          // [36] 192.0.2.0: the IPv4 mobile network prefix
    01 00                                // [40] PadN, no data: replay protection to 42 = 8·5+2
    0a 08 e9 3c 7f 00 80 00 00 00        // [42] Replay Protection, NTP timestamp
    00                                   // [52] Pad1: authentication to 53 = 4·13+1
    09 11 01 00 00 01 00                 // [53] MN-HA authentication, SPI 0x100
    00 00 00 00 00 00 00 00 00 00 00 00  // [60] authenticator, ends the MH at 72
  `);
  const mh = seal(mhTemplate, 60, HOA_BYTES, HA_BYTES);
  const golden = new Uint8Array([...ip, ...mh]);
  const options = [
    { type: 'mobileNetworkPrefix', prefix: '2001:db8:100::', prefixLength: 64 },
    { type: 'ipv4HomeAddress', homeAddress: '192.0.2.0', prefixLength: 24, requestPrefix: true },
    { type: 'replayProtection', timestamp: TIMESTAMP },
  ] as const;

  it('the encoder produces exactly these octets', () => {
    assert.equal(mhTemplate.length, 72);
    const bytes = encodeSignalingPacket(
      {
        src: HOA,
        dst: HA,
        message: {
          type: 'bindingUpdate',
          sequence: 7,
          flags: BuFlag.A | BuFlag.H | BuFlag.R,
          lifetime: 150,
          options: [...options],
        },
      },
      { sa, coa: COA, hoa: HOA },
    );
    assert.equal(toHex(bytes), toHex(golden));
  });

  it('the decoder gives the fields, and the authenticator verifies', () => {
    const d = decodeSignalingPacket(golden);
    assert.equal(d.authOffset, 53);
    assert.deepEqual(d.message.options, [
      options[0],
      options[1],
      { type: 'padN', length: 0 },
      options[2],
      { type: 'pad1' },
      { type: 'auth', subtype: 1, spi: 0x100, authenticator: mh.slice(60, 72) },
    ]);
    assert.equal(verifyPacketAuth(d, sa, COA, HOA), true);
  });
});

describe('golden: BA with an IPv4 Address Acknowledgement (RFC 5555 §3.2.1)', () => {
  const ip = hex(`
    60 00 00 00 00 38 87 40              // IPv6, payload length 56, next header 135, hop limit 64
    20 01 0d b8 ff ff 00 00 00 00 00 00 00 00 00 01   // source: HA
    20 01 0d b8 ff ff 00 00 00 00 00 00 00 00 01 00   // destination: HoA
  `);
  const mhTemplate = hex(`
    3b 06 06 00                          // [0]  payload proto 59, header length 6: 56 octets, BA
    00 00                                // [4]  checksum
    00                                   // [6]  BA status 0: the IPv6 binding is accepted
    40                                   // [7]  flags: R
    00 07 00 96                          // [8]  sequence 7, lifetime 150
    1e 06                                // [12] IPv4 Address Acknowledgement (4n): type 30, length 6
    85                                   // [14] status 133: prefix allocation unauthorized
    00                                   // [15] prefix length 0 (a failure), reserved 0
    c0 00 02 00                          // [16] 192.0.2.0, the prefix asked for
    01 04 00 00 00 00                    // [20] PadN, 4 zero octets: replay protection to 26 = 8·3+2
    0a 08 e9 3c 7f 00 80 00 00 00        // [26] Replay Protection, NTP timestamp
    00                                   // [36] Pad1: authentication to 37 = 4·9+1
    09 11 01 00 00 01 00                 // [37] MN-HA authentication, SPI 0x100
    00 00 00 00 00 00 00 00 00 00 00 00  // [44] authenticator, ends the MH at 56
  `);
  const mh = seal(mhTemplate, 44, HA_BYTES, HOA_BYTES);
  const golden = new Uint8Array([...ip, ...mh]);
  const ack = {
    type: 'ipv4AddressAcknowledgement',
    status: IPv4AckStatus.PREFIX_ALLOCATION_UNAUTHORIZED,
    homeAddress: '192.0.2.0',
    prefixLength: 0,
  } as const;
  const replay = { type: 'replayProtection', timestamp: TIMESTAMP } as const;

  it('the encoder produces exactly these octets', () => {
    assert.equal(mhTemplate.length, 56);
    const bytes = encodeSignalingPacket(
      {
        src: HA,
        dst: HOA,
        message: {
          type: 'bindingAcknowledgement',
          status: BaStatus.ACCEPTED,
          flags: BaFlag.R,
          sequence: 7,
          lifetime: 150,
          options: [ack, replay],
        },
      },
      { sa, coa: COA, hoa: HOA },
    );
    assert.equal(toHex(bytes), toHex(golden));
  });

  it('the decoder gives the fields', () => {
    const d = decodeSignalingPacket(golden);
    assert.equal(d.authOffset, 37);
    assert.deepEqual(d.message, {
      type: 'bindingAcknowledgement',
      status: 0,
      flags: 0x40,
      sequence: 7,
      lifetime: 150,
      options: [
        ack,
        { type: 'padN', length: 4 },
        replay,
        { type: 'pad1' },
        { type: 'auth', subtype: 1, spi: 0x100, authenticator: mh.slice(44, 56) },
      ],
    });
    assert.equal(verifyPacketAuth(d, sa, COA, HOA), true);
  });
});
