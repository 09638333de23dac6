// The mobile router's explicit states (standby → registering → active → standby) and the transitions
// allowed between them (core.ts moves between them; the shell logs every move with network and HoA).

export const MrState = {
  /** Bridge ready, no binding held by this host, no routes, no router advertisements. */
  standby: 'standby',
  /** Asked to be active but the uplink has no usable care-of address yet: nothing is sent. */
  waitingForCoa: 'waitingForCoa',
  /** BU sent, no binding accepted yet (first registration, after a rejection, or after expiry). */
  registering: 'registering',
  /** The HA accepted the binding; refreshes and CoA changes re-register without leaving this state. */
  active: 'active',
  /** Leaving for another host (docs/agent.md): no more BUs; routes go next, the binding is left to the new host. */
  handingOver: 'handingOver',
  /** Lifetime-0 BU sent (break-before-make, shutdown), waiting for its BA. */
  deregistering: 'deregistering',
  /** The HA rejected the registration; the status is in `lastBaStatus`. Retried after retransmit.maxMs. */
  failed: 'failed',
  /** stop() was called: nothing works any more. */
  stopped: 'stopped',
} as const;
export type MrStateValue = (typeof MrState)[keyof typeof MrState];

const S = MrState;

/** Allowed transitions; anything else is a bug and throws. */
const ALLOWED: Record<MrStateValue, readonly MrStateValue[]> = {
  standby: [S.waitingForCoa, S.registering, S.deregistering, S.stopped],
  waitingForCoa: [S.registering, S.handingOver, S.standby, S.deregistering, S.stopped],
  registering: [S.active, S.failed, S.waitingForCoa, S.handingOver, S.deregistering, S.stopped],
  active: [S.registering, S.failed, S.handingOver, S.deregistering, S.stopped],
  handingOver: [S.standby, S.stopped],
  deregistering: [S.standby, S.stopped],
  failed: [S.registering, S.waitingForCoa, S.handingOver, S.deregistering, S.stopped],
  stopped: [],
};

export interface Transition {
  from: MrStateValue;
  to: MrStateValue;
  reason: string;
}

/** `to`, if the move from `from` is allowed (staying is); anything else is a bug and throws. */
export function nextState(from: MrStateValue, to: MrStateValue, reason: string): MrStateValue {
  if (from !== to && !ALLOWED[from].includes(to))
    throw new Error(`mobile router: no transition ${from} → ${to} (${reason})`);
  return to;
}
