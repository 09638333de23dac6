// The mobile router's logic as one pure function (STYLE 4): transition(model, event, settings, env) →
// { model, actions }. Events are an operation's steps, datagrams and timers (model.ts); the shell around
// it (mobilerouter.ts) performs the actions and does the host side. Registration, CoA changes and timers
// are here; what a message from the home agent does is in inbound.ts.
import {
  cancelAll,
  type ExchangeKind,
  retransmissionDue,
  stopRetransmission,
  withLastSequence,
} from '../signaling/bul.ts';
import { RegistrationAbandonedError } from './errors.ts';
import { inbound } from './inbound.ts';
import {
  deadlines,
  initialModel,
  is,
  type MrAction,
  type MrEnv,
  type MrEvent,
  type MrModel,
  type MrSettings,
  Step,
  type TimerName,
  type Transition,
} from './model.ts';
import { MrState } from './state.ts';

export type { MrAction, MrEnv, MrEvent, MrModel, MrSettings, TimerName, Transition };
export { deadlines, initialModel };

export function transition(model: MrModel, event: MrEvent, s: MrSettings, env: MrEnv): Transition {
  const t = new Step(model, s, env);
  switch (event.type) {
    case 'setSequence':
      if (event.lastSequence !== undefined) t.set({ bul: withLastSequence(t.m.bul, event.lastSequence) });
      else if (t.m.bul.lastSequence === undefined) t.set({ bul: withLastSequence(t.m.bul, event.random) });
      break;
    case 'startRegistration':
      startRegistration(t, event.kind, event.reason);
      break;
    case 'readyToSend':
      t.beginExchange(t.m.waitingKind, s.lifetimeSeconds);
      t.sendBu();
      break;
    case 'routesInstalled': {
      t.set({ routesReady: true });
      const early = t.m.acceptedEarly;
      t.set({ acceptedEarly: undefined });
      if (early && is(t.m, MrState.registering)) t.becomeActive(early);
      break;
    }
    case 'setupFailed':
      t.fail(
        new RegistrationAbandonedError(
          'ERR_MR_DATAPLANE',
          `${s.name}: setting up failed: ${String(event.error)}`,
          {
            cause: event.error,
          },
        ),
      );
      break;
    case 'prepared':
      t.set({ preparedFor: event.coa });
      break;
    case 'preparedReleased':
      t.set({ preparedFor: undefined });
      break;
    case 'quiesce':
      t.quiet(event.error);
      if (event.to) t.go(event.to, event.reason);
      break;
    case 'enter':
      t.go(event.to, event.reason);
      break;
    case 'routesRemoved':
      t.set({ routesReady: false });
      break;
    case 'sendDeregistration':
      t.beginExchange('reregistration', 0);
      t.sendBu();
      break;
    case 'deregistrationOver':
      t.set({ bul: cancelAll(t.m.bul) });
      break;
    case 'coaChanged':
      coaChanged(t);
      break;
    case 'registerNewCoa':
      registerNewCoa(t);
      break;
    case 'inbound':
      inbound(t, event.message);
      break;
    case 'timer':
      timer(t, event.timer);
      break;
    case 'sendFailed':
      t.count('sendErrors');
      break;
  }
  return t.toTransition();
}

/** From standby / failed / waitingForCoa: the state for registering now, or for waiting for a CoA. */
function startRegistration(t: Step, kind: ExchangeKind, reason: string): void {
  t.set({ retryAt: undefined, waitingKind: kind });
  if (t.env.coa === undefined) {
    t.go(MrState.waitingForCoa, `${reason}: the uplink has no usable global address yet`);
    return;
  }
  t.go(MrState.registering, reason);
  t.set({ routesReady: false, acceptedEarly: undefined });
}

function coaChanged(t: Step): void {
  t.count('coaChanges');
  if (t.env.coa === undefined && is(t.m, MrState.registering)) {
    t.set({ waitingKind: t.m.bul.exchange?.kind ?? 'first', bul: stopRetransmission(t.m.bul) });
    t.go(MrState.waitingForCoa, 'care-of address lost');
  }
}

/** RFC 6275 §11.7.1: a new CoA is registered at once (the shell re-points socket, host and routes). */
function registerNewCoa(t: Step): void {
  const kind =
    t.m.lastAcceptedSequence === undefined ? (t.m.bul.exchange?.kind ?? 'first') : 'reregistration';
  t.beginExchange(kind, t.s.lifetimeSeconds);
  t.sendBu();
}

function timer(t: Step, which: TimerName): void {
  switch (which) {
    case 'retransmit':
      t.set({ bul: retransmissionDue(t.m.bul, t.s.retransmit) });
      if (!is(t.m, MrState.registering, MrState.active, MrState.deregistering)) return;
      t.count('buRetransmitted');
      t.log('info', 'no BA: retransmitting the BU', { kind: t.m.bul.exchange?.kind });
      t.sendBu();
      return;
    case 'refresh':
      t.set({ bul: { ...t.m.bul, refreshAt: undefined } });
      if (!is(t.m, MrState.active) || t.m.bul.exchange) return;
      t.reregister();
      return;
    case 'expiry':
      t.set({ bul: { ...t.m.bul, expiresAt: undefined } });
      if (!is(t.m, MrState.active)) return;
      // The HA has dropped the binding. Routes and advertisements stay: guests keep their link, and traffic
      // resumes the moment the HA accepts a BU again (after an HA restart, for instance).
      t.set({ lastError: 'binding lifetime expired without a BA' });
      t.go(MrState.registering, 'binding lifetime expired without a BA');
      if (!t.m.bul.exchange) t.reregister();
      return;
    case 'retry':
      // the shell starts the registration again (an operation of its queue) when this is still failed
      t.set({ retryAt: undefined });
      return;
  }
}
