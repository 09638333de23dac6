// Golden vectors written octet by octet from the RFC layouts (RFC 8200 §3, RFC 6275 §6.1, RFC 3963 §4,
// RFC 4285 §5–6), not produced by the encoder. Only the authenticator (HMAC) and the checksum are
// computed here, each by its own straightforward code.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import { BaStatus, BuFlag } from './constants.ts';
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
