// An independent decoder agrees with ours: tshark (Debian package `tshark`) reads a pcap of encoded
// packets carried as docs/architecture.md, signaling says (outer IPv6/UDP to port 4191, payload = inner IPv6 + MH).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseIPv6 } from './address.ts';
import { BaFlag, BaStatus, BuFlag, IPv4AckStatus, SIGNALING_PORT } from './constants.ts';
import { decodeSignalingPacket, encodeSignalingPacket } from './packet.ts';
import { toHex } from './testkit.ts';
import type { SecurityAssociation, SignalingPacket } from './types.ts';

const HOA = '2001:db8:ffff::100';
const HA = '2001:db8:ffff::1';
const COA = '2001:db8:a::2';
const MR_PORT = 50000;
const sa: SecurityAssociation = { spi: 0x100, key: new Uint8Array(20).fill(0x0b), algorithm: 'hmac-sha1' };
const sign = { sa, coa: COA, hoa: HOA };
const replay = { type: 'replayProtection', timestamp: 0xe93c7f00_80000000n } as const;

const bu: SignalingPacket = {
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
      replay,
    ],
  },
};
const baRejected: SignalingPacket = {
  src: HA,
  dst: HOA,
  message: {
    type: 'bindingAcknowledgement',
    status: BaStatus.NOT_AUTHORIZED_FOR_PREFIX,
    flags: 0,
    sequence: 0x1234,
    lifetime: 0,
    options: [replay],
  },
};
const baAccepted: SignalingPacket = {
  src: HA,
  dst: HOA,
  message: {
    type: 'bindingAcknowledgement',
    status: BaStatus.ACCEPTED,
    flags: BaFlag.R,
    sequence: 0x1235,
    lifetime: 150,
    options: [replay],
  },
};

// RFC 5555: a dual-stack MR registers an IPv4 mobile network prefix (P set) and an IPv4 home address;
// the HA answers each in an IPv4 Address Acknowledgement.
const buDualStack: SignalingPacket = {
  src: HOA,
  dst: HA,
  message: {
    type: 'bindingUpdate',
    sequence: 0x1236,
    flags: BuFlag.A | BuFlag.H | BuFlag.R,
    lifetime: 150,
    options: [
      { type: 'mobileNetworkPrefix', prefix: '2001:db8:100::', prefixLength: 64 },
      { type: 'ipv4HomeAddress', homeAddress: '192.0.2.0', prefixLength: 24, requestPrefix: true },
      { type: 'ipv4HomeAddress', homeAddress: '198.51.100.7', prefixLength: 32, requestPrefix: false },
      replay,
    ],
  },
};
const baDualStack: SignalingPacket = {
  src: HA,
  dst: HOA,
  message: {
    type: 'bindingAcknowledgement',
    status: BaStatus.ACCEPTED,
    flags: BaFlag.R,
    sequence: 0x1236,
    lifetime: 150,
    options: [
      {
        type: 'ipv4AddressAcknowledgement',
        status: IPv4AckStatus.SUCCESS,
        homeAddress: '192.0.2.0',
        prefixLength: 24,
      },
      {
        type: 'ipv4AddressAcknowledgement',
        status: IPv4AckStatus.INCORRECT_IPV4_HOME_ADDRESS,
        homeAddress: '198.51.100.7',
        prefixLength: 0,
      },
      replay,
    ],
  },
};

/** Outer IPv6 + UDP around `payload`, with the RFC 8200 §8.1 UDP checksum. */
function udp6(src: string, dst: string, sport: number, dport: number, payload: Uint8Array): Uint8Array {
  const len = 8 + payload.length;
  const p = new Uint8Array(40 + len);
  const v = new DataView(p.buffer);
  p[0] = 0x60;
  v.setUint16(4, len);
  p[6] = 17;
  p[7] = 64;
  p.set(parseIPv6(src), 8);
  p.set(parseIPv6(dst), 24);
  v.setUint16(40, sport);
  v.setUint16(42, dport);
  v.setUint16(44, len);
  p.set(payload, 48);
  let sum = len + 17;
  const add = (b: Uint8Array) => {
    for (let i = 0; i < b.length; i += 2) sum += (b[i]! << 8) | (b[i + 1] ?? 0);
  };
  add(p.subarray(8, 40));
  add(p.subarray(40));
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  v.setUint16(46, ~sum & 0xffff || 0xffff);
  return p;
}

/** A classic pcap file (little-endian, microseconds) with LINKTYPE_RAW (101): frames start at IP. */
function pcap(frames: Uint8Array[]): Uint8Array {
  const global = new DataView(new ArrayBuffer(24));
  global.setUint32(0, 0xa1b2c3d4, true);
  global.setUint16(4, 2, true);
  global.setUint16(6, 4, true);
  global.setUint32(16, 65535, true);
  global.setUint32(20, 101, true);
  const parts: Uint8Array[] = [new Uint8Array(global.buffer)];
  frames.forEach((f, i) => {
    const rec = new DataView(new ArrayBuffer(16));
    rec.setUint32(0, 1_700_000_000 + i, true);
    rec.setUint32(8, f.length, true);
    rec.setUint32(12, f.length, true);
    parts.push(new Uint8Array(rec.buffer), f);
  });
  return Uint8Array.from(parts.flatMap((p) => [...p]));
}

const FIELDS = [
  'frame.number',
  '_ws.malformed',
  '_ws.expert.severity',
  'udp.checksum.status',
  'ipv6.src',
  'mip6.proto',
  'mip6.hlen',
  'mip6.mhtype',
  'mip6.bu.seqnr',
  'mip6.bu.a_flag',
  'mip6.bu.h_flag',
  'mip6.nemo.bu.r_flag',
  'mip6.bu.lifetime',
  'mip6.nemo.mnp.mnp',
  'mip6.nemo.mnp.pfl',
  'mip6.ba.status',
  'mip6.ba.k_flag',
  'mip6.nemo.ba.r_flag',
  'mip6.ba.seqnr',
  'mip6.ba.lifetime',
  'mip6.auth.subtype',
  'mip6.auth.mobility_spi',
  'mip6.auth.auth_data',
  'mip6.ipv4ha.preflen',
  'mip6.ipv4ha.p_flag',
  'mip6.ipv4ha.ha',
  'mip6.ipv4aa.sts',
] as const;
type Row = Record<(typeof FIELDS)[number], string>;
/** Expert info at or above Warning (Wireshark's PI_WARN is 0x00600000). */
const PI_WARN = 0x00600000;

describe('tshark decodes our packets the same way', () => {
  let dir = '';
  let rows: Row[] = [];
  const encoded = [
    encodeSignalingPacket(bu, sign),
    encodeSignalingPacket(baRejected, sign),
    encodeSignalingPacket(baAccepted, sign),
    encodeSignalingPacket(buDualStack, sign),
    encodeSignalingPacket(baDualStack, sign),
  ];

  before(() => {
    try {
      execFileSync('tshark', ['--version'], { stdio: 'ignore' });
    } catch {
      assert.fail('tshark is missing: run scripts/bootstrap (installs the Debian package tshark)');
    }
    dir = mkdtempSync(join(tmpdir(), 'offlink-tshark-'));
    const file = join(dir, 'signaling.pcap');
    const frames = [
      udp6(COA, HA, MR_PORT, SIGNALING_PORT, encoded[0]!),
      udp6(HA, COA, SIGNALING_PORT, MR_PORT, encoded[1]!),
      udp6(HA, COA, SIGNALING_PORT, MR_PORT, encoded[2]!),
      udp6(COA, HA, MR_PORT, SIGNALING_PORT, encoded[3]!),
      udp6(HA, COA, SIGNALING_PORT, MR_PORT, encoded[4]!),
      // A control frame, cut short: proves the malformed check below can fail.
      udp6(
        COA,
        HA,
        MR_PORT,
        SIGNALING_PORT,
        Uint8Array.from([...encoded[0]!.subarray(0, 88)].map((x, i) => (i === 5 ? 48 : x))),
      ),
    ];
    writeFileSync(file, pcap(frames));
    const args = [
      '-r',
      file,
      '-d',
      `udp.port==${SIGNALING_PORT},ipv6`,
      '-o',
      'udp.check_checksum:TRUE',
      '-T',
      'fields',
    ];
    const opts = ['-E', 'header=n', '-E', 'separator=/t', '-E', 'occurrence=a', '-E', 'aggregator=,'];
    const out = execFileSync('tshark', [...args, ...opts, ...FIELDS.flatMap((f) => ['-e', f])], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    rows = out
      .trimEnd()
      .split('\n')
      .map((line) => Object.fromEntries(line.split('\t').map((v, i) => [FIELDS[i], v])) as Row);
  });

  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const clean = (r: Row) => {
    assert.equal(r['_ws.malformed'], '', `frame ${r['frame.number']} malformed`);
    const severities = r['_ws.expert.severity'] ? r['_ws.expert.severity'].split(',').map(Number) : [];
    assert.deepEqual(
      severities.filter((s) => s >= PI_WARN),
      [],
      `frame ${r['frame.number']} has expert warnings or errors`,
    );
    assert.equal(r['udp.checksum.status'], '1', 'outer UDP checksum good');
    assert.equal(r['mip6.proto'], '59');
  };

  it('six frames were read, the control frame is malformed', () => {
    assert.equal(rows.length, 6);
    assert.notEqual(rows[5]!['_ws.malformed'], '', 'tshark must flag the truncated control frame');
  });

  it('signed BU: type, flags, sequence, lifetime, both MNPs, SPI', () => {
    const r = rows[0]!;
    clean(r);
    assert.equal(r['ipv6.src'], `${COA},${HOA}`);
    assert.equal(r['mip6.mhtype'], '5');
    assert.equal(r['mip6.hlen'], String(encoded[0]!.length / 8 - 6));
    assert.equal(r['mip6.bu.seqnr'], String(0x1234));
    assert.equal(r['mip6.bu.a_flag'], '1');
    assert.equal(r['mip6.bu.h_flag'], '1');
    assert.equal(r['mip6.nemo.bu.r_flag'], '1');
    assert.equal(r['mip6.bu.lifetime'], '150');
    assert.equal(r['mip6.nemo.mnp.mnp'], '2001:db8:100::,2001:db8:101::');
    assert.equal(r['mip6.nemo.mnp.pfl'], '64,56');
    assert.equal(r['mip6.auth.subtype'], '1');
    assert.equal(r['mip6.auth.mobility_spi'], '256');
    // tshark 4.0 shows the authenticator two octets short (it subtracts the type and length octets
    // from the option length twice); what it shows must be the start of ours.
    const ours = decodeSignalingPacket(encoded[0]!).message.options.at(-1);
    assert.ok(ours?.type === 'auth');
    assert.ok(
      r['mip6.auth.auth_data'].length >= 20 && toHex(ours.authenticator).startsWith(r['mip6.auth.auth_data']),
    );
  });

  it('BA status 142 (NOT_AUTHORIZED_FOR_PREFIX)', () => {
    const r = rows[1]!;
    clean(r);
    assert.equal(r['mip6.mhtype'], '6');
    assert.equal(r['mip6.ba.status'], '142');
    assert.equal(r['mip6.ba.k_flag'], '0');
    assert.equal(r['mip6.nemo.ba.r_flag'], '0');
    assert.equal(r['mip6.ba.seqnr'], String(0x1234));
    assert.equal(r['mip6.ba.lifetime'], '0');
    assert.equal(r['mip6.auth.mobility_spi'], '256');
  });

  it('dual-stack BU (RFC 5555 §3.1.1): IPv4 prefix with P, IPv4 home address without', () => {
    const r = rows[3]!;
    clean(r);
    assert.equal(r['mip6.mhtype'], '5');
    assert.equal(r['mip6.bu.seqnr'], String(0x1236));
    assert.equal(r['mip6.nemo.mnp.mnp'], '2001:db8:100::');
    assert.equal(r['mip6.ipv4ha.preflen'], '24,32');
    assert.equal(r['mip6.ipv4ha.p_flag'], '1,0');
    assert.equal(r['mip6.ipv4ha.ha'], '192.0.2.0,198.51.100.7');
    assert.equal(r['mip6.ipv4aa.sts'], '');
    assert.equal(r['mip6.auth.mobility_spi'], '256');
  });

  it('BA with IPv4 Address Acknowledgements (RFC 5555 §3.2.1): success /24, refusal 130', () => {
    const r = rows[4]!;
    clean(r);
    assert.equal(r['mip6.mhtype'], '6');
    assert.equal(r['mip6.ba.status'], '0');
    assert.equal(r['mip6.ipv4aa.sts'], '0,130');
    // tshark 4.0 shows the acknowledgement's prefix length and address in the IPv4 Home Address fields.
    assert.equal(r['mip6.ipv4ha.preflen'], '24,0');
    assert.equal(r['mip6.ipv4ha.ha'], '192.0.2.0,198.51.100.7');
    assert.equal(r['mip6.ipv4ha.p_flag'], '');
    assert.equal(r['mip6.auth.mobility_spi'], '256');
  });

  it('BA accepted with the R flag', () => {
    const r = rows[2]!;
    clean(r);
    assert.equal(r['mip6.mhtype'], '6');
    assert.equal(r['mip6.ba.status'], '0');
    assert.equal(r['mip6.nemo.ba.r_flag'], '1');
    assert.equal(r['mip6.ba.seqnr'], String(0x1235));
    assert.equal(r['mip6.ba.lifetime'], '150');
  });
});
