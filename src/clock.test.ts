import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock } from './clock.ts';

test('FakeClock fires due timers in time order, including timers set by timers', () => {
  const clock = new FakeClock(1000);
  const fired: string[] = [];
  clock.setTimer(300, () => fired.push(`b@${clock.now()}`));
  clock.setTimer(100, () => {
    fired.push(`a@${clock.now()}`);
    clock.setTimer(50, () => fired.push(`c@${clock.now()}`));
  });
  const cancelled = clock.setTimer(200, () => fired.push('never'));
  cancelled.cancel();
  clock.advance(120);
  assert.deepEqual(fired, ['a@1100']);
  clock.advance(500);
  assert.deepEqual(fired, ['a@1100', 'c@1150', 'b@1300']);
  assert.equal(clock.now(), 1620);
  assert.equal(clock.pending, 0);
});
