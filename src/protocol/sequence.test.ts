import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { seqAdd, seqNewer } from './sequence.ts';

describe('16-bit sequence numbers (RFC 6275 §9.5.1)', () => {
  it('newer when (a − b) mod 2^16 is in [1, 2^15)', () => {
    assert.equal(seqNewer(1, 0), true);
    assert.equal(seqNewer(0, 0), false);
    assert.equal(seqNewer(0, 1), false);
    assert.equal(seqNewer(0, 0xffff), true); // wraps
    assert.equal(seqNewer(0x7fff, 0), true); // 2^15 − 1 ahead
    assert.equal(seqNewer(0x8000, 0), false); // exactly half: not newer
    assert.equal(seqNewer(0, 0x8000), false); // nor the other way
    assert.equal(seqNewer(0x8001, 0), false);
    assert.equal(seqNewer(5, 0xfff0), true);
  });

  it('exactly one of a, b is newer unless equal or 2^15 apart', () => {
    for (let i = 0; i < 2000; i++) {
      const a = (i * 7919) & 0xffff;
      const b = (i * 104729 + 13) & 0xffff;
      const diff = (a - b) & 0xffff;
      if (diff === 0 || diff === 0x8000) continue;
      assert.notEqual(seqNewer(a, b), seqNewer(b, a), `${a} vs ${b}`);
    }
  });

  it('seqAdd wraps modulo 2^16 both ways', () => {
    assert.equal(seqAdd(0xffff, 1), 0);
    assert.equal(seqAdd(0, -1), 0xffff);
    assert.equal(seqAdd(10, 5), 15);
    assert.equal(seqAdd(0xfff0, 0x20), 0x10);
    assert.equal(seqNewer(seqAdd(0xfffe, 3), 0xfffe), true);
  });
});
