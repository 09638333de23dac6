// The mobile router's transitions as tables (STYLE 4): a model, an event and what the world looks like →
// the new state, the actions and the deadlines. No clock, no socket, no kernel.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BaStatus, BeStatus } from '../protocol/constants.ts';
import { DEFAULT_RETRANSMIT } from '../signaling/bul.ts';
import { deadlines, initialModel, type MrAction, type MrEnv, type MrEvent, type MrModel } from './core.ts';
import { MrState, type MrStateValue } from './state.ts';
import { inboundAnswer, inboundFromHa, kinds, registering, run, sends, T0 } from './testkit.ts';

const ba = inboundAnswer;
const brr = (): MrEvent => inboundFromHa({ type: 'bindingRefreshRequest' });
const be = (status: number): MrEvent => inboundFromHa({ type: 'bindingError', status });

function active() {
  const r = registering();
  const { model } = run(r.model, [[ba(r.bu, { lifetimeSeconds: 100 }), { now: T0 + 10 }]]);
  return model;
}

describe('mobile router core: registration', () => {
  const table: {
    name: string;
    model: () => MrModel;
    steps: [MrEvent, Partial<MrEnv>?][];
    state: MrStateValue;
    actions: string[];
    check?: (m: MrModel, a: MrAction[]) => void;
  }[] = [
    {
      name: 'no care-of address: wait for one, remembering the exchange',
      model: initialModel,
      steps: [
        [{ type: 'startRegistration', kind: 'reregistration', reason: 'activate()' }, { coa: undefined }],
      ],
      state: MrState.waitingForCoa,
      actions: ['transition'],
      check: (m) => assert.equal(m.waitingKind, 'reregistration'),
    },
    {
      name: 'ready to send: the first BU carries last + 1, retransmitted after 1.5 s',
      model: () =>
        run(initialModel(), [
          [{ type: 'setSequence', lastSequence: 40, random: 7 }],
          [{ type: 'startRegistration', kind: 'first', reason: 'x' }],
        ]).model,
      steps: [[{ type: 'readyToSend' }]],
      state: MrState.registering,
      actions: ['send'],
      check: (m, a) => {
        assert.equal(sends(a)[0]!.sequence, 41);
        assert.equal(deadlines(m).retransmit, T0 + 1500);
      },
    },
    {
      name: 'no socket on the CoA yet: nothing sent, the back-off keeps running',
      model: () => run(initialModel(), [[{ type: 'startRegistration', kind: 'first', reason: 'x' }]]).model,
      steps: [[{ type: 'readyToSend' }, { listening: undefined }]],
      state: MrState.registering,
      actions: [],
      check: (m) => {
        assert.equal(m.counters.buSkipped, 1);
        assert.equal(deadlines(m).retransmit, T0 + 1500);
      },
    },
    {
      name: 'accepted before the routes are up: active only once they are',
      model: () => registering(false).model,
      steps: [[ba(registering(false).bu), { now: T0 + 5 }]],
      state: MrState.registering,
      actions: [],
      check: (m) => assert.equal(m.acceptedEarly?.sequence, 41),
    },
    {
      name: 'accepted with the routes up: active, waiters settled, refresh at 80 % and expiry at 100 %',
      model: () => registering().model,
      steps: [[ba(registering().bu, { lifetimeSeconds: 100 }), { now: T0 + 10 }]],
      state: MrState.active,
      actions: ['transition', 'registered'],
      check: (m) => {
        assert.deepEqual(deadlines(m), {
          retransmit: undefined,
          refresh: T0 + 80_000,
          expiry: T0 + 100_000,
          retry: undefined,
        });
        assert.equal(m.lastRegistration?.buToBaMs, 10);
      },
    },
    {
      name: 'BA 135: continue from the stored number and send again at once',
      model: () => registering().model,
      steps: [[ba(registering().bu, { status: BaStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW, sequence: 500 })]],
      state: MrState.registering,
      actions: ['send'],
      check: (m, a) => {
        assert.equal(sends(a)[0]!.sequence, 501);
        assert.equal(m.counters.baSequenceResync, 1);
      },
    },
    {
      name: 'a refusal: failed, waiters told, routes go, retried after retransmit.maxMs',
      model: () => registering().model,
      steps: [[ba(registering().bu, { status: BaStatus.NOT_AUTHORIZED_FOR_PREFIX })]],
      state: MrState.failed,
      actions: ['failWaiters', 'transition', 'failed'],
      check: (m) => {
        assert.equal(m.retryAt, T0 + DEFAULT_RETRANSMIT.maxMs);
        assert.equal(deadlines(m).retransmit, undefined);
        assert.equal(m.lastBaStatus, BaStatus.NOT_AUTHORIZED_FOR_PREFIX);
      },
    },
    {
      name: 'a BA without R: mobile router operation not permitted (RFC 3963 §5.3)',
      model: () => registering().model,
      steps: [[ba(registering().bu, { flags: 0 })]],
      state: MrState.failed,
      actions: ['failWaiters', 'transition', 'failed'],
      check: (_m, a) => {
        const f = a.find((x) => x.type === 'failed');
        assert.match(f?.type === 'failed' ? f.error.message : '', /MOBILE_ROUTER_OPERATION_NOT_PERMITTED/);
      },
    },
    {
      name: 'the retransmission is due: sent again, the interval doubled',
      model: () => registering().model,
      steps: [[{ type: 'timer', timer: 'retransmit' }, { now: T0 + 1500 }]],
      state: MrState.registering,
      actions: ['send'],
      check: (m, a) => {
        assert.equal(sends(a)[0]!.attempt, 1);
        assert.equal(deadlines(m).retransmit, T0 + 1500 + 3000);
      },
    },
  ];
  for (const row of table) {
    it(row.name, () => {
      const { model, actions } = run(row.model(), row.steps);
      assert.equal(model.state, row.state);
      assert.deepEqual(kinds(actions), row.actions);
      row.check?.(model, actions);
    });
  }

  it('after MAX_RESYNCS resyncs in one exchange, a 135 is a refusal (loop guard)', () => {
    let { model, bu } = registering();
    for (let i = 0; i < 3; i++) {
      const t = run(model, [[ba(bu, { status: BaStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW, sequence: 500 + i })]]);
      model = t.model;
      bu = sends(t.actions)[0]!;
    }
    const last = run(model, [[ba(bu, { status: BaStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW, sequence: 900 })]]);
    assert.equal(last.model.state, MrState.failed);
  });
});

describe('mobile router core: the binding', () => {
  const table: {
    name: string;
    model: () => MrModel;
    steps: [MrEvent, Partial<MrEnv>?][];
    state: MrStateValue;
    actions: string[];
    check?: (m: MrModel, a: MrAction[]) => void;
  }[] = [
    {
      name: 'refresh due: a re-registration (1 s back-off), still active',
      model: active,
      steps: [[{ type: 'timer', timer: 'refresh' }, { now: T0 + 80_000 }]],
      state: MrState.active,
      actions: ['send'],
      check: (m) => assert.equal(deadlines(m).retransmit, T0 + 81_000),
    },
    {
      name: 'lifetime over without a BA: registering again, routes kept',
      model: active,
      steps: [[{ type: 'timer', timer: 'expiry' }, { now: T0 + 100_000 }]],
      state: MrState.registering,
      actions: ['transition', 'send'],
      check: (m) => assert.equal(m.lastError, 'binding lifetime expired without a BA'),
    },
    {
      name: 'the care-of address goes while registering: wait for one, no retransmission',
      model: () => registering().model,
      steps: [[{ type: 'coaChanged' }, { coa: undefined }]],
      state: MrState.waitingForCoa,
      actions: ['transition'],
      check: (m) => assert.equal(deadlines(m).retransmit, undefined),
    },
    {
      name: 'a new care-of address while active: registered at once from it',
      model: active,
      steps: [
        [{ type: 'coaChanged' }, { coa: '2001:db8:b::2' }],
        [{ type: 'registerNewCoa' }, { coa: '2001:db8:b::2', listening: '2001:db8:b::2' }],
      ],
      state: MrState.active,
      actions: ['send'],
      check: (_m, a) => assert.equal(sends(a)[0]!.coa, '2001:db8:b::2'),
    },
    {
      name: 'handover: no more BUs, no deadlines, waiters told',
      model: active,
      steps: [
        [
          {
            type: 'quiesce',
            error: new Error('handing over'),
            to: MrState.handingOver,
            reason: 'prepareHandover()',
          },
        ],
      ],
      state: MrState.handingOver,
      actions: ['failWaiters', 'transition'],
      check: (m) =>
        assert.deepEqual(deadlines(m), {
          retransmit: undefined,
          refresh: undefined,
          expiry: undefined,
          retry: undefined,
        }),
    },
    {
      name: 'a Binding Refresh Request while active: re-register',
      model: active,
      steps: [[brr()]],
      state: MrState.active,
      actions: ['send'],
      check: (m) => assert.equal(m.counters.brrAnswered, 1),
    },
    {
      name: 'a Binding Refresh Request while a BU is pending: ignored',
      model: () => registering().model,
      steps: [[brr()]],
      state: MrState.registering,
      actions: [],
      check: (m) => assert.equal(m.counters.brrIgnored, 1),
    },
    {
      name: 'a Binding Error for an unknown binding while active: one more BU',
      model: active,
      steps: [[be(BeStatus.UNKNOWN_HOME_ADDRESS_OPTION)]],
      state: MrState.active,
      actions: ['send'],
    },
    {
      name: 'a BA that is not signed: ignored and counted, nothing changes',
      model: () => registering().model,
      steps: [[ba(registering().bu, { signWith: null })]],
      state: MrState.registering,
      actions: ['ignored'],
      check: (m) => assert.equal(m.counters.ignoredAuth, 1),
    },
    {
      name: 'a genuine BA while standby: unsolicited',
      model: initialModel,
      steps: [[ba(registering().bu)]],
      state: MrState.standby,
      actions: ['ignored'],
      check: (m) => assert.equal(m.counters.ignoredUnsolicited, 1),
    },
  ];
  for (const row of table) {
    it(row.name, () => {
      const { model, actions } = run(row.model(), row.steps);
      assert.equal(model.state, row.state);
      assert.deepEqual(kinds(actions), row.actions);
      row.check?.(model, actions);
    });
  }

  it('deregistration: the lifetime-0 BU, and its BA answers the waiting deregister()', () => {
    const a = active();
    const q = run(a, [
      [
        {
          type: 'quiesce',
          error: new Error('deregistering'),
          to: MrState.deregistering,
          reason: 'deregister()',
        },
      ],
      [{ type: 'sendDeregistration' }],
    ]);
    const bu = sends(q.actions)[0]!;
    assert.equal(bu.lifetimeSeconds, 0);
    const answered = run(q.model, [[ba(bu, { lifetimeSeconds: 0 }), { now: T0 + 3 }]]);
    assert.deepEqual(
      answered.actions.filter((x) => x.type === 'deregistrationAnswered'),
      [
        {
          type: 'deregistrationAnswered',
          result: { acknowledged: true, status: 0, sequence: bu.sequence, buToBaMs: 3 },
        },
      ],
    );
  });

  it('an answer to an earlier retransmission after the exchange ended extends the binding', () => {
    const r = registering();
    const retransmitted = run(r.model, [[{ type: 'timer', timer: 'retransmit' }, { now: T0 + 1500 }]]);
    const second = sends(retransmitted.actions)[0]!;
    const first = run(retransmitted.model, [[ba(r.bu, { lifetimeSeconds: 100 }), { now: T0 + 1600 }]]);
    assert.equal(first.model.state, MrState.active);
    const late = run(first.model, [[ba(second, { lifetimeSeconds: 200 }), { now: T0 + 1700 }]]);
    assert.equal(deadlines(late.model).expiry, T0 + 1500 + 200_000);
    assert.deepEqual(kinds(late.actions), []);
  });

  it('transitions that the state machine does not allow throw', () => {
    assert.throws(
      () => run(initialModel(), [[{ type: 'enter', to: MrState.active, reason: 'bug' }]]),
      /no transition standby → active/,
    );
  });
});
