import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OfflinkError } from '../errors.ts';
import {
  handoverRequest,
  migrateRequest,
  parseProcedure,
  prepareRequest,
  procedureNamed,
} from './messages.ts';

const ID = 'mig-0001-test';
const HANDOVER = {
  migrationId: ID,
  network: 'net1',
  source: 'host-a',
  hoa: '2001:db8:ffff::101',
  prefixes: ['2001:db8:100::/64'],
  lastSequence: 7,
  lifetimeRemaining: 0,
};

describe('procedure names', () => {
  it('the current names stand for themselves', () => {
    assert.equal(parseProcedure('make-before-break'), 'make-before-break');
    assert.equal(parseProcedure('break-before-make'), 'break-before-make');
  });

  it('"paper", the former name, is accepted as break-before-make', () => {
    assert.equal(parseProcedure('paper'), 'break-before-make');
    assert.equal(procedureNamed('paper'), 'break-before-make');
  });

  it('an unknown name throws ERR_UNKNOWN_PROCEDURE naming the valid ones', () => {
    assert.throws(
      () => parseProcedure('teleport'),
      (err: unknown) =>
        err instanceof OfflinkError &&
        err.code === 'ERR_UNKNOWN_PROCEDURE' &&
        err.message ===
          'unknown procedure "teleport": expected make-before-break or break-before-make ("paper" is the former name of break-before-make)',
    );
    // Not a key of some object: inherited property names are no procedures either.
    assert.equal(procedureNamed('constructor'), undefined);
    assert.equal(procedureNamed('Paper'), undefined);
  });
});

describe('request bodies normalise the procedure at the boundary', () => {
  it('migrate: "paper" becomes break-before-make; none is make-before-break', () => {
    assert.equal(
      migrateRequest.parse({ network: 'net1', to: 'host-b', procedure: 'paper' }).procedure,
      'break-before-make',
    );
    assert.equal(migrateRequest.parse({ network: 'net1', to: 'host-b' }).procedure, 'make-before-break');
  });

  it('prepare and handover from an older agent: "paper" becomes break-before-make', () => {
    const prepare = { migrationId: ID, network: 'net1', source: 'host-a', procedure: 'paper', guests: [] };
    assert.equal(prepareRequest.parse(prepare).procedure, 'break-before-make');
    assert.equal(handoverRequest.parse({ ...HANDOVER, procedure: 'paper' }).procedure, 'break-before-make');
    assert.equal(
      handoverRequest.parse({ ...HANDOVER, procedure: 'make-before-break' }).procedure,
      'make-before-break',
    );
  });

  it('an unknown procedure is refused with a message that names the valid ones', () => {
    for (const procedure of ['teleport', '', 42]) {
      const parsed = migrateRequest.safeParse({ network: 'net1', to: 'host-b', procedure });
      assert.equal(parsed.success, false, String(procedure));
      const issue = parsed.error?.issues[0];
      assert.deepEqual(issue?.path, ['procedure']);
      if (typeof procedure === 'string')
        assert.match(
          issue?.message ?? '',
          /^unknown procedure ".*": expected make-before-break or break-before-make/,
        );
    }
    assert.equal(
      prepareRequest.safeParse({ migrationId: ID, network: 'n', source: 's', guests: [] }).success,
      false,
    );
  });
});
