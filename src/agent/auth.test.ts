import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeClock } from '../clock.ts';
import { AUTH_HEADERS, authorityOf, RequestVerifier, signRequest, urlAuthority } from './auth.ts';

const KEY = Buffer.alloc(32, 7);
const REQ = { method: 'POST', path: '/v1/migrate', body: '{"network":"net1","to":"host-b"}' };

function setup(options: { windowMs?: number; maxNonces?: number } = {}) {
  const clock = new FakeClock();
  return { clock, verifier: new RequestVerifier(KEY, { clock, ...options }) };
}

describe('control-channel authentication', () => {
  it('accepts a correctly signed request', () => {
    const { clock, verifier } = setup();
    const headers = signRequest(KEY, REQ, clock);
    assert.deepEqual(verifier.verify({ ...REQ, headers }), { ok: true });
    assert.match(headers[AUTH_HEADERS.nonce]!, /^[0-9a-f]{32}$/);
  });

  it('refuses a signature made with another key', () => {
    const { clock, verifier } = setup();
    const headers = signRequest(Buffer.alloc(32, 8), REQ, clock);
    assert.equal(verifier.verify({ ...REQ, headers }).ok, false);
    const r = verifier.verify({ ...REQ, headers });
    assert.equal(!r.ok && r.reason, 'bad-signature');
  });

  it('refuses any change to method, path, body, timestamp or nonce', () => {
    const { clock, verifier } = setup();
    const headers = signRequest(KEY, REQ, clock);
    const variants = [
      { ...REQ, method: 'PUT', headers },
      { ...REQ, path: '/v1/prepare', headers },
      { ...REQ, body: '{"network":"net2","to":"host-b"}', headers },
      { ...REQ, headers: { ...headers, [AUTH_HEADERS.timestamp]: String(clock.now() + 1) } },
      { ...REQ, headers: { ...headers, [AUTH_HEADERS.nonce]: 'ab'.repeat(16) } },
    ];
    for (const v of variants) {
      const r = verifier.verify(v);
      assert.equal(!r.ok && r.reason, 'bad-signature', JSON.stringify(v));
    }
    // The untouched request is still fresh: the refused variants did not burn its nonce.
    assert.equal(verifier.verify({ ...REQ, headers }).ok, true);
  });

  it('refuses stale and future timestamps outside the window', () => {
    const { clock, verifier } = setup({ windowMs: 30_000 });
    const old = signRequest(KEY, REQ, { now: () => clock.now() - 30_001 });
    const future = signRequest(KEY, REQ, { now: () => clock.now() + 30_001 });
    const edge = signRequest(KEY, REQ, { now: () => clock.now() - 30_000 });
    for (const headers of [old, future]) {
      const r = verifier.verify({ ...REQ, headers });
      assert.equal(!r.ok && r.reason, 'stale-timestamp');
    }
    assert.equal(verifier.verify({ ...REQ, headers: edge }).ok, true);
    // A request held back until it goes stale is refused.
    const held = signRequest(KEY, REQ, clock);
    clock.advance(31_000);
    const r = verifier.verify({ ...REQ, headers: held });
    assert.equal(!r.ok && r.reason, 'stale-timestamp');
  });

  it('refuses a replayed nonce, and forgets it once its timestamp is out of the window', () => {
    const { clock, verifier } = setup({ windowMs: 30_000 });
    const headers = signRequest(KEY, REQ, clock);
    assert.equal(verifier.verify({ ...REQ, headers }).ok, true);
    const again = verifier.verify({ ...REQ, headers });
    assert.equal(!again.ok && again.reason, 'replayed-nonce');
    clock.advance(30_001);
    verifier.verify({ ...REQ, headers: signRequest(KEY, REQ, clock) });
    assert.equal(verifier.remembered, 1, 'the expired nonce was dropped');
    const late = verifier.verify({ ...REQ, headers });
    assert.equal(!late.ok && late.reason, 'stale-timestamp');
  });

  it('the nonce cache is bounded: full of live nonces, it refuses; once they expire, it accepts', () => {
    const { clock, verifier } = setup({ windowMs: 1000, maxNonces: 3 });
    for (let i = 0; i < 3; i++)
      assert.equal(verifier.verify({ ...REQ, headers: signRequest(KEY, REQ, clock) }).ok, true);
    const r = verifier.verify({ ...REQ, headers: signRequest(KEY, REQ, clock) });
    assert.equal(!r.ok && r.reason, 'nonce-cache-full');
    clock.advance(1001);
    assert.equal(verifier.verify({ ...REQ, headers: signRequest(KEY, REQ, clock) }).ok, true);
    assert.equal(verifier.remembered, 1);
  });

  it('refuses missing and malformed headers', () => {
    const { clock, verifier } = setup();
    const headers = signRequest(KEY, REQ, clock);
    const { [AUTH_HEADERS.signature]: _, ...noSig } = headers;
    const r1 = verifier.verify({ ...REQ, headers: noSig });
    assert.equal(!r1.ok && r1.reason, 'missing-header');
    const r2 = verifier.verify({ ...REQ, headers: { ...headers, [AUTH_HEADERS.signature]: 'zz' } });
    assert.equal(!r2.ok && r2.reason, 'malformed-header');
    const r3 = verifier.verify({ ...REQ, headers: { ...headers, [AUTH_HEADERS.nonce]: ['a', 'b'] } });
    assert.equal(!r3.ok && r3.reason, 'missing-header');
  });

  it('refuses a cluster key shorter than 32 bytes', () => {
    assert.throws(() => new RequestVerifier(Buffer.alloc(31), { clock: new FakeClock() }), /32 bytes/);
  });
});

describe('authority (which agent a request is for)', () => {
  it('both ends write it the same way', () => {
    assert.equal(authorityOf('2001:DB8:a:0:0::2', 7400), '[2001:db8:a::2]:7400');
    assert.equal(authorityOf('[2001:db8:a::2]', 7400), '[2001:db8:a::2]:7400');
    assert.equal(authorityOf('::ffff:10.0.0.1', 7400), '10.0.0.1:7400');
    assert.equal(authorityOf('Host-B.example', 7400), 'host-b.example:7400');
    assert.equal(urlAuthority(new URL('http://[2001:db8:0::2]:7400/v1/status')), '[2001:db8::2]:7400');
    assert.equal(urlAuthority(new URL('http://10.0.0.1/')), '10.0.0.1:80');
  });

  it('a request signed for one agent does not verify at another', () => {
    const { clock, verifier } = setup();
    const req = { ...REQ, authority: '[2001:db8:b::2]:7400' };
    const headers = signRequest(KEY, req, clock);
    const r = verifier.verify({ ...req, authority: '[2001:db8:c::2]:7400', headers });
    assert.equal(!r.ok && r.reason, 'bad-signature');
    assert.equal(verifier.verify({ ...req, headers }).ok, true);
  });
});
