import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type BuSpec, makeBindingUpdate } from '../../test/helpers/homeagent-mr.ts';
import { ntpTimestamp } from '../protocol/auth.ts';
import { BaFlag, BuFlag } from '../protocol/constants.ts';
import { DecodeError } from '../protocol/errors.ts';
import { decodeSignalingPacket, encodeSignalingPacket, verifyPacketAuth } from '../protocol/packet.ts';
import type { SecurityAssociation } from '../protocol/types.ts';
import { type Binding, BindingCache } from './bcache.ts';
import { type BuContext, type BuInput, processBindingUpdate } from './bu.ts';
import { PrefixTable } from './prefixtable.ts';

const NOW = 1_700_000_000_000;
const HA = '2001:db8:ffff::1';
const HOA1 = '2001:db8:ffff::101';
const HOA2 = '2001:db8:ffff::102';
const COA = '2001:db8:a::2';
const COA2 = '2001:db8:b::2';
const SA1: SecurityAssociation = { spi: 1001, key: Buffer.alloc(20, 0x11), algorithm: 'hmac-sha1' };
const SA2: SecurityAssociation = { spi: 1002, key: Buffer.alloc(32, 0x22), algorithm: 'hmac-sha256' };
const WRONG: SecurityAssociation = { spi: 1001, key: Buffer.alloc(20, 0x99), algorithm: 'hmac-sha1' };

const table = new PrefixTable([
  { name: 'mr1', homeAddress: HOA1, prefixes: ['2001:db8:100::/64', '2001:db8:101::/64'], ...SA1 },
  { name: 'mr2', homeAddress: HOA2, prefixes: ['2001:db8:200::/56'], ...SA2 },
]);

/** mr1 with an IPv4 prefix as well (dual-stack, RFC 5555). */
const dualTable = new PrefixTable([
  {
    name: 'mr1',
    homeAddress: HOA1,
    prefixes: ['2001:db8:100::/64', '2001:db8:101::/64', '10.1.0.0/16'],
    ...SA1,
  },
  { name: 'mr2', homeAddress: HOA2, prefixes: ['2001:db8:200::/56'], ...SA2 },
]);

function existing(over: Partial<Binding> = {}): Binding {
  return {
    hoa: HOA1,
    coa: COA,
    prefixes: ['2001:db8:100::/64'],
    sequence: 10,
    lifetimeSeconds: 400,
    expiresAt: NOW + 200_000,
    mode: 'explicit',
    lastTimestamp: ntpTimestamp(NOW - 5000),
    id: 7,
    registeredAt: NOW - 100_000,
    updatedAt: NOW - 5000,
    ...over,
  };
}

interface Row {
  name: string;
  cache?: Binding[];
  /** Replay timestamps left behind by deleted bindings. */
  timestamps?: [string, bigint][];
  bu: Partial<BuSpec>;
  source?: string;
  ctx?: Partial<BuContext>;
  status: number;
  event?: string;
  intents?: { op: 'set' | 'delete'; coa?: string; prefixes?: string[]; id?: number }[];
  baSequence?: number;
  baLifetime?: number;
  bra?: number | null;
  signed?: boolean;
  noReply?: boolean;
  /** The BA's IPv4 Address Acknowledgements (RFC 5555), in order; none when absent. */
  ipv4Acks?: { status: number; homeAddress: string; prefixLength: number }[];
}

const rows: Row[] = [
  {
    name: 'first registration, explicit MNP',
    bu: { prefixes: ['2001:db8:100::/64'] },
    status: 0,
    event: 'register',
    intents: [{ op: 'set', coa: COA, prefixes: ['2001:db8:100::/64'], id: 1 }],
    baSequence: 11,
    baLifetime: 100,
    bra: null,
  },
  {
    // An MR without IPv4 prefixes in the table: its IPv4 requests are refused in the acknowledgements, the
    // IPv6 registration stands (RFC 5555 §4); an option the decoder kept raw (prefix length 0) gets 131.
    name: 'IPv4 requests of an MR without IPv4 prefixes: 133 and 131 in the acks, IPv6 registered',
    bu: {
      prefixes: ['2001:db8:100::/64'],
      extraOptions: [
        { type: 'ipv4HomeAddress', homeAddress: '192.0.2.0', prefixLength: 24, requestPrefix: true },
        { type: 'raw', code: 29, data: Uint8Array.of(0, 0, 198, 51, 100, 7) },
      ],
    },
    status: 0,
    event: 'register',
    intents: [{ op: 'set', coa: COA, prefixes: ['2001:db8:100::/64'], id: 1 }],
    ipv4Acks: [
      { status: 133, homeAddress: '192.0.2.0', prefixLength: 0 },
      { status: 131, homeAddress: '0.0.0.0', prefixLength: 0 },
    ],
    signed: true,
  },
  {
    name: 'IPv4 mobile network prefix (P flag) inside the table: registered beside the IPv6 prefix, ack 0',
    ctx: { table: dualTable },
    bu: {
      prefixes: ['2001:db8:100::/64'],
      extraOptions: [
        { type: 'ipv4HomeAddress', homeAddress: '10.1.2.0', prefixLength: 24, requestPrefix: true },
      ],
    },
    status: 0,
    event: 'register',
    intents: [{ op: 'set', prefixes: ['2001:db8:100::/64', '10.1.2.0/24'] }],
    ipv4Acks: [{ status: 0, homeAddress: '10.1.2.0', prefixLength: 24 }],
  },
  {
    name: 'IPv4 prefix outside the table, or too long: 133 / 131 for those, the others registered',
    ctx: { table: dualTable },
    bu: {
      prefixes: ['2001:db8:100::/64'],
      extraOptions: [
        { type: 'ipv4HomeAddress', homeAddress: '10.9.0.0', prefixLength: 16, requestPrefix: true },
        { type: 'ipv4HomeAddress', homeAddress: '10.1.0.0', prefixLength: 16, requestPrefix: true },
      ],
    },
    status: 0,
    intents: [{ op: 'set', prefixes: ['2001:db8:100::/64', '10.1.0.0/16'] }],
    ipv4Acks: [
      { status: 133, homeAddress: '10.9.0.0', prefixLength: 0 },
      { status: 0, homeAddress: '10.1.0.0', prefixLength: 16 },
    ],
  },
  {
    name: 'IPv4 home address without P: a /32 inside the table is registered; 0.0.0.0 asks for assignment, 132',
    ctx: { table: dualTable },
    bu: {
      prefixes: ['2001:db8:100::/64'],
      extraOptions: [
        { type: 'ipv4HomeAddress', homeAddress: '10.1.0.5', prefixLength: 32, requestPrefix: false },
        { type: 'ipv4HomeAddress', homeAddress: '0.0.0.0', prefixLength: 32, requestPrefix: false },
      ],
    },
    status: 0,
    intents: [{ op: 'set', prefixes: ['2001:db8:100::/64', '10.1.0.5/32'] }],
    ipv4Acks: [
      { status: 0, homeAddress: '10.1.0.5', prefixLength: 32 },
      { status: 132, homeAddress: '0.0.0.0', prefixLength: 0 },
    ],
  },
  {
    name: 'no IPv4 option: the configured IPv4 prefixes come implicitly, as IPv6 implicit mode, no acks',
    ctx: { table: dualTable },
    bu: { prefixes: ['2001:db8:100::/64'] },
    status: 0,
    intents: [{ op: 'set', prefixes: ['2001:db8:100::/64', '10.1.0.0/16'] }],
    ipv4Acks: [],
  },
  {
    name: 'a rejected BU carries no IPv4 acknowledgement',
    ctx: { table: dualTable },
    bu: {
      sa: WRONG,
      extraOptions: [
        { type: 'ipv4HomeAddress', homeAddress: '10.1.0.0', prefixLength: 16, requestPrefix: true },
      ],
    },
    status: 146,
    signed: false,
    ipv4Acks: [],
  },
  {
    name: 'implicit mode takes the prefixes from the table',
    bu: { prefixes: [] },
    status: 0,
    intents: [{ op: 'set', prefixes: ['2001:db8:100::/64', '2001:db8:101::/64'] }],
  },
  {
    name: 'sub-prefix of an authorized prefix, host bits cleared',
    bu: { sa: SA2, hoa: HOA2, prefixes: ['2001:db8:200:5::1/64'] },
    status: 0,
    intents: [{ op: 'set', prefixes: ['2001:db8:200:5::/64'] }],
  },
  {
    name: 'refresh from the same CoA: no data-plane change',
    cache: [existing()],
    bu: { prefixes: ['2001:db8:100::/64'] },
    status: 0,
    event: 'refresh',
    intents: [],
  },
  {
    name: 'CoA change: set with the same id',
    cache: [existing()],
    bu: { coa: COA2, prefixes: ['2001:db8:100::/64'] },
    source: COA2,
    status: 0,
    event: 'move',
    intents: [{ op: 'set', coa: COA2, id: 7 }],
  },
  {
    name: 'prefix set change: set with the same id',
    cache: [existing()],
    bu: { prefixes: ['2001:db8:100::/64', '2001:db8:101::/64'] },
    status: 0,
    event: 'update',
    intents: [{ op: 'set', id: 7, prefixes: ['2001:db8:100::/64', '2001:db8:101::/64'] }],
  },
  {
    name: 'deregistration (lifetime 0)',
    cache: [existing()],
    bu: { lifetime: 0 },
    status: 0,
    event: 'deregister',
    intents: [{ op: 'delete', id: 7 }],
    baLifetime: 0,
  },
  {
    name: 'CoA equal to the HoA is a deregistration',
    cache: [existing()],
    bu: { coa: HOA1 },
    source: HOA1,
    status: 0,
    event: 'deregister',
    intents: [{ op: 'delete', id: 7 }],
  },
  { name: 'deregistration without a binding → 133', bu: { lifetime: 0 }, status: 133 },
  {
    name: 'lifetime capped by config',
    bu: { lifetime: 5000 },
    ctx: { maxLifetimeSeconds: 600 },
    status: 0,
    baLifetime: 150,
  },
  {
    name: 'Binding Refresh Advice when configured',
    bu: { lifetime: 100 },
    ctx: { refreshAdviceSeconds: 120 },
    status: 0,
    bra: 30,
  },
  {
    name: 'no Binding Refresh Advice when the lifetime is shorter',
    bu: { lifetime: 10 },
    ctx: { refreshAdviceSeconds: 120 },
    status: 0,
    bra: null,
  },
  {
    name: 'accepted without the A flag: no BA',
    bu: { flags: BuFlag.H | BuFlag.R },
    status: 0,
    noReply: true,
  },
  { name: 'unsigned → 146, BA unsigned', bu: { signWith: null }, status: 146, signed: false },
  { name: 'unknown SPI → 146', bu: { signWith: { ...SA1, spi: 4242 } }, status: 146, signed: false },
  { name: 'wrong key → 146', cache: [existing()], bu: { signWith: WRONG }, status: 146, signed: false },
  {
    name: 'signed for another CoA than the outer source → 146',
    bu: { coa: COA2 },
    source: COA,
    status: 146,
  },
  { name: 'HoA of another MR → 146', bu: { hoa: HOA2 }, status: 146, signed: true },
  { name: 'HoA not configured → 133', bu: { hoa: '2001:db8:ffff::999' }, status: 133, signed: true },
  { name: 'no replay protection → 145', bu: { timestampMs: null }, status: 145, signed: true },
  { name: 'timestamp outside the window → 144', bu: { timestampMs: NOW - 8000 }, status: 144 },
  { name: 'timestamp ahead of the window → 144', bu: { timestampMs: NOW + 8000 }, status: 144 },
  {
    name: 'replayed timestamp → 144',
    cache: [existing({ lastTimestamp: ntpTimestamp(NOW) })],
    bu: { timestampMs: NOW },
    status: 144,
  },
  {
    name: 'replay after deregistration → 144',
    timestamps: [[HOA1, ntpTimestamp(NOW - 1000)]],
    bu: { timestampMs: NOW - 2000 },
    status: 144,
  },
  { name: 'H flag missing → 131', bu: { flags: BuFlag.A | BuFlag.R }, status: 131 },
  { name: 'sent to another HA address → 133', bu: { ha: '2001:db8:ffff::2' }, status: 133 },
  {
    name: 'old sequence → 135 with the stored sequence',
    cache: [existing({ sequence: 500 })],
    bu: { sequence: 499 },
    status: 135,
    baSequence: 500,
  },
  {
    name: 'equal sequence → 135',
    cache: [existing({ sequence: 500 })],
    bu: { sequence: 500 },
    status: 135,
    baSequence: 500,
  },
  {
    name: 'sequence wraps around 65535 → 0',
    cache: [existing({ sequence: 65535 })],
    bu: { sequence: 0 },
    status: 0,
  },
  { name: 'R flag missing → 140', bu: { flags: BuFlag.A | BuFlag.H }, status: 140 },
  {
    name: 'R flag cleared on an existing binding → 139',
    cache: [existing()],
    bu: { flags: BuFlag.A | BuFlag.H },
    status: 139,
  },
  { name: 'prefix length 0 → 141', bu: { prefixes: ['::/0'] }, status: 141 },
  { name: 'prefix not in the table → 142', bu: { prefixes: ['2001:db8:200::/64'] }, status: 142 },
  {
    name: 'one of two prefixes not authorized → 142',
    bu: { prefixes: ['2001:db8:100::/64', '2001:db8:9::/64'] },
    status: 142,
  },
  {
    name: 'prefix shorter than the authorized one → 142',
    bu: { prefixes: ['2001:db8:100::/48'] },
    status: 142,
  },
  {
    name: 'CoA inside the mobile network → 129',
    bu: { coa: '2001:db8:100::99' },
    source: '2001:db8:100::99',
    status: 129,
  },
  // RFC 3963 §6.1.2: the decoder hands over a BU with an invalid MNP; refused (signed) once authentic.
  {
    name: 'MNP prefix length 129 → 141, signed, the binding untouched',
    cache: [existing()],
    bu: { prefixes: ['2001:db8:100::/129'] },
    status: 141,
    signed: true,
  },
  {
    name: 'MNP prefix length 129, wrong key → unsigned 146 (no signed answer to the unauthenticated)',
    cache: [existing()],
    bu: { prefixes: ['2001:db8:100::/129'], signWith: WRONG },
    status: 146,
    signed: false,
  },
  {
    name: 'MNP prefix length 129 in a deregistration → 141, the binding kept',
    cache: [existing()],
    bu: { prefixes: ['2001:db8:100::/129'], lifetime: 0 },
    status: 141,
    signed: true,
  },
  {
    name: 'MNP prefix length 129 with a stale timestamp → 144 (replay is checked first)',
    cache: [existing()],
    bu: { prefixes: ['2001:db8:100::/129'], timestampMs: NOW - 60_000 },
    status: 144,
    signed: true,
  },
];

/** The BU as the daemon hands it over: decoded, or whole but refused by the decoder (authenticatedRefusal). */
function buInput(data: Uint8Array, source: string): BuInput {
  try {
    return { packet: decodeSignalingPacket(data), source };
  } catch (err) {
    if (!(err instanceof DecodeError) || err.answer.kind !== 'authenticatedRefusal') throw err;
    return { packet: err.answer.packet, source, refusal: { status: err.answer.status, reason: err.message } };
  }
}

function run(row: Row) {
  const cache = new BindingCache();
  for (const b of row.cache ?? []) cache.apply({ op: 'put', binding: b });
  for (const [hoa, ts] of row.timestamps ?? []) cache.restoreTimestamp(hoa, ts);
  const spec: BuSpec = {
    hoa: HOA1,
    ha: HA,
    coa: COA,
    sa: SA1,
    sequence: 11,
    timestampMs: NOW,
    ...row.bu,
  };
  const ctx: BuContext = {
    haAddress: HA,
    table,
    cache,
    maxLifetimeSeconds: 3600,
    replayWindowSeconds: 7,
    ...row.ctx,
  };
  const input = buInput(makeBindingUpdate(spec), row.source ?? spec.coa);
  const before = JSON.stringify(cache.all(), (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
  const result = processBindingUpdate(ctx, input, NOW);
  return { result, spec, cache, before };
}

describe('processBindingUpdate', () => {
  for (const row of rows) {
    test(row.name, () => {
      const { result, spec, cache, before } = run(row);
      assert.equal(result.status, row.status, result.reason);
      if (row.event) assert.equal(result.event, row.event);
      if (row.status !== 0) {
        // A rejected BU changes nothing and is always answered.
        assert.deepEqual(result.intents, []);
        assert.deepEqual(result.cacheOps, []);
        assert.equal(
          JSON.stringify(cache.all(), (_k, v) => (typeof v === 'bigint' ? v.toString() : v)),
          before,
        );
        assert.ok(result.acknowledge);
      }
      assert.equal(result.acknowledge, !row.noReply);
      const reply = result.reply!;
      const ba = reply.packet.message;
      assert.equal(ba.status, row.status);
      assert.equal(reply.packet.src, HA);
      assert.equal(reply.packet.dst, spec.hoa);
      assert.equal(ba.sequence, row.baSequence ?? spec.sequence);
      if (row.baLifetime !== undefined) assert.equal(ba.lifetime, row.baLifetime);
      if (row.status !== 0) assert.equal(ba.lifetime, 0);
      if (row.bra !== undefined) {
        const bra = ba.options.find((option) => option.type === 'bindingRefreshAdvice');
        assert.equal(bra?.type === 'bindingRefreshAdvice' ? bra.interval : null, row.bra);
      }
      if (row.signed !== undefined) assert.equal(reply.sign !== undefined, row.signed);
      const ipv4Acks = ba.options.flatMap((o) =>
        o.type === 'ipv4AddressAcknowledgement'
          ? [{ status: o.status, homeAddress: o.homeAddress, prefixLength: o.prefixLength }]
          : [],
      );
      assert.deepEqual(ipv4Acks, row.ipv4Acks ?? []);
      if (reply.sign) {
        // Signed with the MR's SA over the outer source and the HoA; encodes and verifies.
        const bytes = encodeSignalingPacket(reply.packet, reply.sign);
        const decoded = decodeSignalingPacket(bytes);
        assert.ok(verifyPacketAuth(decoded, reply.sign.sa, row.source ?? spec.coa, spec.hoa));
        // RFC 3963 §4.2: the BA's R flag mirrors the BU's.
        assert.equal(ba.flags & BaFlag.R, ((spec.flags ?? BuFlag.R) & BuFlag.R) !== 0 ? BaFlag.R : 0);
        const replay = ba.options.find((option) => option.type === 'replayProtection');
        assert.ok(replay, 'a signed BA carries replay protection');
      }
      if (row.intents) {
        assert.equal(result.intents.length, row.intents.length);
        row.intents.forEach((want, i) => {
          const got = result.intents[i]!;
          assert.equal(got.op, want.op);
          if (want.coa) assert.equal(got.binding.coa, want.coa);
          if (want.prefixes) assert.deepEqual(got.binding.prefixes, want.prefixes);
          if (want.id) assert.equal(got.binding.id, want.id);
        });
      }
    });
  }

  test('accepted BA echoes the BU timestamp; 144 carries the HA clock', () => {
    const ok = run({ name: '', bu: { timestampMs: NOW - 3000 }, status: 0 }).result;
    const r1 = ok.reply!.packet.message.options.find((option) => option.type === 'replayProtection');
    assert.equal(r1?.type === 'replayProtection' && r1.timestamp, ntpTimestamp(NOW - 3000));
    const bad = run({ name: '', bu: { timestampMs: NOW - 30_000 }, status: 144 }).result;
    const r2 = bad.reply!.packet.message.options.find((option) => option.type === 'replayProtection');
    assert.equal(r2?.type === 'replayProtection' && r2.timestamp, ntpTimestamp(NOW));
  });

  test('accepted binding carries lifetime, expiry, mode and the replay timestamp', () => {
    const { result } = run({ name: '', bu: { lifetime: 25, prefixes: [] }, status: 0 });
    const b = result.binding!;
    assert.equal(b.lifetimeSeconds, 100);
    assert.equal(b.expiresAt, NOW + 100_000);
    assert.equal(b.mode, 'implicit');
    assert.equal(b.lastTimestamp, ntpTimestamp(NOW));
    assert.equal(b.registeredAt, NOW);
    assert.deepEqual(result.cacheOps, [{ op: 'put', binding: b }]);
  });

  test('a CoA change keeps registeredAt and id', () => {
    const { result } = run({
      name: '',
      cache: [existing()],
      bu: { coa: COA2 },
      source: COA2,
      status: 0,
    });
    assert.equal(result.binding!.id, 7);
    assert.equal(result.binding!.registeredAt, NOW - 100_000);
  });
});
