import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeBindingUpdate } from '../../test/helpers/homeagent-mr.ts';
import { BaFlag } from '../protocol/constants.ts';
import { decodeErrorReply } from './answer.ts';

const HA = '2001:db8:ffff::1';
const bu = makeBindingUpdate({
  hoa: '2001:db8:ffff::101',
  ha: HA,
  coa: '2001:db8:a::2',
  sa: { spi: 300, key: new Uint8Array(20), algorithm: 'hmac-sha1' },
  sequence: 0x1234,
});

test('drop, or too short to answer', () => {
  assert.equal(decodeErrorReply(bu, { kind: 'drop' }, HA), undefined);
  assert.equal(decodeErrorReply(bu.subarray(0, 47), { kind: 'bindingError', status: 2 }, HA), undefined);
});

test('Binding Error to the inner source, unspecified home address', () => {
  assert.deepEqual(decodeErrorReply(bu, { kind: 'bindingError', status: 2 }, HA), {
    src: HA,
    dst: '2001:db8:ffff::101',
    message: { type: 'bindingError', status: 2, homeAddress: '::', options: [] },
  });
});

test('BA with the BU sequence and R flag', () => {
  const reply = decodeErrorReply(bu, { kind: 'bindingAcknowledgement', status: 128 }, HA);
  assert.equal(reply?.message.type, 'bindingAcknowledgement');
  if (reply?.message.type !== 'bindingAcknowledgement') return;
  assert.equal(reply.message.status, 128);
  assert.equal(reply.message.sequence, 0x1234);
  assert.equal(reply.message.flags, BaFlag.R);
});
