import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EventLineParser } from './events.ts';

// Lines as virsh 9.0 printed them (`virsh event --all --loop --timestamp`, a migration A→B).
const JOB_COMPLETED = [
  "2026-12-07 13:00:11.318+0000: event 'job-completed' for domain 'lvx':",
  '\toperation: 5',
  '\ttime_elapsed: 1159',
  '\tdowntime: 90',
  '\tsetup_time: 13',
  '\tdata_processed: 62922258',
];

test('a lifecycle line is one event at once, stamped with virsh’s time', () => {
  const p = new EventLineParser();
  assert.deepEqual(
    p.push("2026-12-07 13:00:09.074+0000: event 'lifecycle' for domain 'lvx': Suspended Migrated"),
    [
      {
        at: Date.UTC(2026, 11, 7, 13, 0, 9, 74),
        type: 'lifecycle',
        domain: 'lvx',
        detail: 'Suspended Migrated',
        params: {},
      },
    ],
  );
  assert.equal(p.holding, false);
});

test('job-completed gathers its tab-indented parameters until the next event or a flush', () => {
  const p = new EventLineParser();
  for (const l of JOB_COMPLETED) assert.deepEqual(p.push(l), []);
  assert.equal(p.holding, true);
  const next = p.push("2026-12-07 13:00:12.000+0100: event 'lifecycle' for domain 'other': Started Booted");
  assert.equal(next.length, 2);
  assert.deepEqual(next[0]!.params, {
    operation: '5',
    time_elapsed: '1159',
    downtime: '90',
    setup_time: '13',
    data_processed: '62922258',
  });
  assert.equal(next[0]!.detail, '');
  assert.equal(next[1]!.at, Date.UTC(2026, 11, 7, 12, 0, 12, 0), 'the zone offset is applied');
  for (const l of JOB_COMPLETED) p.push(l);
  assert.equal(p.flush()?.params['downtime'], '90');
  assert.equal(p.flush(), undefined);
});

test('other one-line events keep their detail as printed; a line that is no event is dropped', () => {
  const p = new EventLineParser();
  const [e] = p.push(
    "2026-12-07 13:00:08.600+0000: event 'migration-iteration' for domain 'lvx': iteration: '1'",
  );
  assert.equal(e?.type, 'migration-iteration');
  assert.equal(e?.detail, "iteration: '1'");
  assert.deepEqual(p.push('\tstray: 1'), []);
  assert.deepEqual(p.push('events received: 3'), []);
});
