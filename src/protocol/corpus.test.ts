// Hand-made bad packets (RFC 6275 §9.2): each must throw DecodeError with the expected answer.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type DecodeAnswer, DecodeError } from './errors.ts';
import { mhChecksum, mobilityHeader } from './mh.ts';
import { decodeSignalingPacket, encodeSignalingPacket, verifyPacketAuth } from './packet.ts';
import type { MobilityMessage, MobilityOption, SecurityAssociation } from './types.ts';

const SRC = '2001:db8:ffff::100';
const DST = '2001:db8:ffff::1';
const DROP: DecodeAnswer = { kind: 'drop' };
const sa: SecurityAssociation = { spi: 0x100, key: new Uint8Array(20).fill(1), algorithm: 'hmac-sha1' };

const bu = (options: MobilityOption[]): MobilityMessage => ({
  type: 'bindingUpdate',
  sequence: 1,
  flags: 0xc400,
  lifetime: 150,
  options,
});
const raw = (code: number, data: number[] | number): MobilityOption => ({
  type: 'raw',
  code,
  data: typeof data === 'number' ? new Uint8Array(data) : Uint8Array.from(data),
});
const mnp: MobilityOption = { type: 'mobileNetworkPrefix', prefix: '2001:db8:100::', prefixLength: 64 };

/** An encoded packet, optionally edited, with the MH checksum made right again afterwards. */
function packet(message: MobilityMessage, edit?: (buf: Uint8Array) => Uint8Array | undefined): Uint8Array {
  let buf = encodeSignalingPacket({ src: SRC, dst: DST, message });
  buf = edit?.(buf) ?? buf;
  const mh = buf.subarray(40);
  if (mh.length >= 6) {
    const checksum = mhChecksum(mh, SRC, DST);
    mh[4] = checksum >> 8;
    mh[5] = checksum & 0xff;
  }
  return buf;
}

/** Asserts a DecodeError with `answer` and, when given, a message matching `why` (the intended check). */
function rejects(buf: Uint8Array, answer: DecodeAnswer, what: string, why?: RegExp): void {
  assert.throws(
    () => decodeSignalingPacket(buf),
    (err: unknown) => {
      assert.ok(err instanceof DecodeError, `${what}: ${String(err)}`);
      assert.deepEqual(err.answer, answer, what);
      if (why) assert.match(err.message, why, what);
      return true;
    },
    what,
  );
}

/** An edit that sets octets: set([index, value], …). */
const set =
  (...edits: [number, number][]) =>
  (b: Uint8Array): Uint8Array => {
    for (const [i, v] of edits) b[i] = v;
    return b;
  };
/** An edit that adds `d` to one octet. */
const bump = (i: number, d: number) => (b: Uint8Array) => set([i, (b[i]! + d) & 0xff])(b);

/** Sets the IPv6 payload length to what follows the header. */
function fixPayloadLength(buf: Uint8Array): Uint8Array {
  const n = buf.length - 40;
  buf[4] = n >> 8;
  buf[5] = n & 0xff;
  return buf;
}

describe('bad packet corpus', () => {
  const good = encodeSignalingPacket(
    { src: SRC, dst: DST, message: bu([mnp, { type: 'replayProtection', timestamp: 5n }]) },
    { sa, coa: SRC, hoa: SRC },
  );

  it('the unedited packet decodes', () => {
    assert.equal(decodeSignalingPacket(good).message.type, 'bindingUpdate');
    assert.equal(decodeSignalingPacket(packet(bu([mnp]))).message.type, 'bindingUpdate');
  });

  it('truncated at every length', () => {
    for (let n = 0; n < good.length; n++) rejects(good.subarray(0, n), DROP, `truncated to ${n}`);
    // The MH alone too, and with the payload length made to agree (header length then disagrees).
    const mh = good.subarray(40);
    for (let n = 0; n < mh.length; n++) {
      assert.throws(() => mobilityHeader.decode(mh, 0, n), DecodeError, `MH truncated to ${n}`);
      rejects(fixPayloadLength(good.slice(0, 40 + n)), DROP, `MH truncated to ${n}, payload length fixed`);
    }
  });

  it('MH header length too large or too small', () => {
    rejects(packet(bu([mnp]), bump(41, 1)), DROP, 'one unit too many', /header length/);
    rejects(packet(bu([mnp]), bump(41, -1)), DROP, 'one unit too few', /header length/);
    rejects(packet(bu([mnp]), set([41, 255])), DROP, 'maximum', /header length/);
    // Consistent with the octets present but below the message type's minimum (RFC 6275 §9.2).
    const shortBu = (b: Uint8Array) =>
      fixPayloadLength(Uint8Array.from([...b.subarray(0, 48)].map((x, i) => (i === 41 ? 0 : x))));
    rejects(packet(bu([]), shortBu), DROP, 'BU of 8 octets', /too small/);
    const be: MobilityMessage = { type: 'bindingError', status: 1, homeAddress: SRC, options: [] };
    const shortBe = (b: Uint8Array) =>
      fixPayloadLength(Uint8Array.from([...b.subarray(0, 56)].map((x, i) => (i === 41 ? 1 : x))));
    rejects(packet(be, shortBe), DROP, 'BE of 16 octets', /too small/);
  });

  it('wrong checksum', () => {
    const flipped = good.slice();
    flipped[45]! ^= 0x01;
    rejects(flipped, DROP, 'checksum bit', /checksum/);
    const data = good.slice();
    data[50]! ^= 0x80;
    rejects(data, DROP, 'data bit, checksum not updated', /checksum/);
    const addr = good.slice();
    addr[39]! ^= 0x01;
    rejects(addr, DROP, 'inner destination changed', /checksum/);
  });

  it('an option overrunning the message', () => {
    // BRR: options at 8..16. A raw option claiming 7 data octets needs 9.
    rejects(
      packet({ type: 'bindingRefreshRequest', options: [raw(0x7f, 6)] }, set([49, 7])),
      DROP,
      'length',
      /overruns/,
    );
    // A type octet in the last octet, with no room for its length octet.
    rejects(
      packet({ type: 'bindingRefreshRequest', options: [raw(0x7f, 4)] }, set([54, 0], [55, 0x7e])),
      DROP,
      'type octet last',
      /overruns/,
    );
    rejects(packet(bu([mnp]), set([53, 19])), DROP, 'MNP length 19 runs past the end', /overruns/);
  });

  it('misaligned MNP, authentication, replay protection and BRA options', () => {
    const pad1: MobilityOption = { type: 'pad1' };
    rejects(packet(bu([pad1, raw(6, [0, 64, ...new Uint8Array(16)])])), DROP, 'MNP at 13', /aligned/);
    rejects(packet(bu([raw(9, [1, 0, 0, 1, 0, ...new Uint8Array(12)])])), DROP, 'auth at 12', /aligned/);
    rejects(packet(bu([raw(10, 8)])), DROP, 'replay at 12', /aligned/);
    rejects(packet(bu([pad1, raw(2, 2)])), DROP, 'BRA at 13', /aligned/);
  });

  it('known options with the wrong fixed length', () => {
    rejects(packet(bu([raw(6, 17)])), DROP, 'MNP length 17', /length|shorter/);
    rejects(packet(bu([raw(6, 20)])), DROP, 'MNP length 20', /length|shorter/);
    rejects(packet(bu([raw(2, 3)])), DROP, 'BRA length 3', /length|shorter/);
    rejects(packet(bu([{ type: 'padN', length: 4 }, raw(10, 7)])), DROP, 'replay length 7', /length|shorter/);
    rejects(packet(bu([{ type: 'pad1' }, raw(9, 4)])), DROP, 'auth length 4', /length|shorter/);
  });

  it('an MNP with prefix length 129: the whole BU, to be refused with 141 once it authenticates (RFC 3963 §6.1.2)', () => {
    const invalid = raw(6, [0, 129, ...new Uint8Array(16)]);
    const message = bu([invalid, { type: 'replayProtection', timestamp: 5n }]);
    const signed = encodeSignalingPacket(
      { src: SRC, dst: DST, message },
      { sa, coa: '2001:db8:a::2', hoa: SRC },
    );
    assert.throws(
      () => decodeSignalingPacket(signed),
      (err: unknown) => {
        assert.ok(err instanceof DecodeError, String(err));
        assert.match(err.message, /> 128/);
        const answer = err.answer;
        assert.ok(answer.kind === 'authenticatedRefusal', answer.kind);
        assert.equal(answer.status, 141);
        // the message as sent, the invalid option kept as its octets, the authenticator verifiable
        assert.equal(answer.packet.message.type, 'bindingUpdate');
        assert.deepEqual(answer.packet.message.options.slice(0, 1), [invalid]);
        assert.deepEqual(answer.packet.mh, signed.subarray(40));
        assert.ok(verifyPacketAuth(answer.packet, sa, '2001:db8:a::2', SRC));
        return true;
      },
    );
  });

  it('an MNP with prefix length 129 in a BA (the MR receives no MNPs): dropped', () => {
    const ba: MobilityMessage = {
      type: 'bindingAcknowledgement',
      status: 0,
      flags: 0,
      sequence: 1,
      lifetime: 1,
      options: [raw(6, [0, 129, ...new Uint8Array(16)])],
    };
    rejects(packet(ba), DROP, 'MNP prefix length 129 in a BA', /> 128/);
  });

  it('RFC 5555 IPv4 Home Address and Acknowledgement options with a length other than 6', () => {
    rejects(packet(bu([raw(29, 5)])), DROP, 'IPv4 HoA length 5', /IPv4 Home Address length is 5, not 6/);
    rejects(packet(bu([raw(29, 10)])), DROP, 'IPv4 HoA length 10', /IPv4 Home Address length is 10, not 6/);
    const ba = (options: MobilityOption[]): MobilityMessage => ({
      type: 'bindingAcknowledgement',
      status: 0,
      flags: 0,
      sequence: 1,
      lifetime: 1,
      options,
    });
    rejects(packet(ba([raw(30, 7)])), DROP, 'IPv4 ack length 7', /Acknowledgement length is 7, not 6/);
    // The option claims 6 octets of data but the message ends first.
    rejects(packet(bu([raw(29, 2)]), set([53, 6])), DROP, 'IPv4 HoA runs past the end', /overruns/);
  });

  it('RFC 5555 IPv4 options off 4n', () => {
    const data = [0x62, 0, 192, 0, 2, 0];
    rejects(packet(bu([{ type: 'pad1' }, raw(29, data)])), DROP, 'IPv4 HoA at 13', /aligned 4n\+0/);
    rejects(
      packet(bu([{ type: 'padN', length: 0 }, raw(30, data)])),
      DROP,
      'IPv4 ack at 14',
      /aligned 4n\+0/,
    );
  });

  it('an IPv4 Home Address with prefix length 0 or 33: the BU decodes, that option kept raw (RFC 5555 answers it per option)', () => {
    for (const prefixLength of [0, 33]) {
      const invalid = raw(29, [prefixLength << 2, 0, 192, 0, 2, 0]);
      const message = bu([mnp, invalid, { type: 'replayProtection', timestamp: 5n }]);
      const signed = encodeSignalingPacket(
        { src: SRC, dst: DST, message },
        { sa, coa: '2001:db8:a::2', hoa: SRC },
      );
      const d = decodeSignalingPacket(signed);
      assert.equal(d.message.type, 'bindingUpdate');
      assert.deepEqual(d.message.options.slice(0, 2), [mnp, invalid], `prefix length ${prefixLength}`);
      assert.ok(verifyPacketAuth(d, sa, '2001:db8:a::2', SRC));
    }
  });

  it('unknown MH types are answered with Binding Error status 2', () => {
    for (const type of [1, 2, 3, 4, 8, 17, 255]) {
      rejects(packet(bu([]), set([42, type])), { kind: 'bindingError', status: 2 }, `MH type ${type}`);
    }
  });

  it('IPv6 payload length mismatch', () => {
    for (const delta of [-1, 1, -8, 8]) {
      const b = good.slice();
      const n = b.length - 40 + delta;
      b[4] = n >> 8;
      b[5] = n & 0xff;
      rejects(b, DROP, `payload length ${delta}`, /payload length/);
    }
    rejects(Uint8Array.from([...good, 0]), DROP, 'a trailing octet', /payload length/);
    rejects(
      Uint8Array.from([...good, ...new Uint8Array(8)]),
      DROP,
      'eight trailing octets',
      /payload length/,
    );
  });

  it('next header other than 135, version other than 6, payload proto other than 59', () => {
    for (const nh of [59, 17, 41, 0])
      rejects(packet(bu([mnp]), set([6, nh])), DROP, `next header ${nh}`, /next header/);
    for (const v of [0x40, 0x00, 0x70, 0xf0])
      rejects(packet(bu([mnp]), set([0, v])), DROP, `version byte ${v}`, /version/);
    for (const proto of [6, 17, 135, 0])
      rejects(packet(bu([mnp]), set([40, proto])), DROP, `payload proto ${proto}`, /payload proto/);
  });

  it('bad bounds given to the MH decoder', () => {
    const mh = good.subarray(40);
    for (const [offset, e] of [
      [-1, 8],
      [0, mh.length + 1],
      [5, 4],
      [0.5, 8],
    ] as const) {
      assert.throws(() => mobilityHeader.decode(mh, offset, e), DecodeError, `${offset}..${e}`);
    }
  });
});
