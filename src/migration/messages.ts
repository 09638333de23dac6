// What agents say to each other and to the CLI about a migration (docs/agent.md), as zod schemas: the
// control API validates every body with these, and the procedure builds its requests from the same types.
// The procedure itself never does HTTP; it talks to the destination through the `Peer` interface.
import { isIPv4, isIPv6 } from 'node:net';
import { z } from 'zod';
import { OfflinkError } from '../errors.ts';
import type { GuestInfo, IncomingSpec } from '../hypervisor/driver.ts';

/**
 * make-before-break (the default): the destination registers while the source still holds the binding.
 * break-before-make: the source deregisters first, the destination registers after (the 2009 report's
 * order, for comparison). docs/agent.md
 */
export const PROCEDURES = ['make-before-break', 'break-before-make'] as const;
export type Procedure = (typeof PROCEDURES)[number];

/**
 * Former names, still accepted wherever a user or an agent names a procedure (CLI, control API), so older
 * agents and scripts keep working; what is recorded and shown is always the current name.
 */
const PROCEDURE_ALIASES: ReadonlyMap<string, Procedure> = new Map([['paper', 'break-before-make']]);

/** The procedure `name` stands for (a former name gives the current one), or undefined. */
export function procedureNamed(name: string): Procedure | undefined {
  return PROCEDURES.find((p) => p === name) ?? PROCEDURE_ALIASES.get(name);
}

export function unknownProcedureMessage(name: string): string {
  return `unknown procedure "${name}": expected ${PROCEDURES.join(' or ')} ("paper" is the former name of break-before-make)`;
}

/** `name` as a procedure; throws ERR_UNKNOWN_PROCEDURE for a name that is neither current nor former. */
export function parseProcedure(name: string): Procedure {
  const procedure = procedureNamed(name);
  if (procedure === undefined) throw new OfflinkError('ERR_UNKNOWN_PROCEDURE', unknownProcedureMessage(name));
  return procedure;
}

/** A procedure in a request body: a former name is normalised to the current one here, at the boundary. */
const procedure = z.string().transform((name, ctx): Procedure => {
  const known = procedureNamed(name);
  if (known !== undefined) return known;
  ctx.addIssue({ code: 'custom', message: unknownProcedureMessage(name) });
  return z.NEVER;
});

const name = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'a name: letters, digits, ".", "_", "-" (1-63)');
const migrationId = z.string().regex(/^[A-Za-z0-9-]{8,64}$/, 'a migration id: 8-64 letters, digits or "-"');
const ipv6 = z.string().refine((s) => isIPv6(s), 'not an IPv6 address');
const prefix = z.string().refine((s) => {
  const [addr, len, ...rest] = s.split('/');
  const longest = addr !== undefined && isIPv4(addr) ? 32 : 128;
  return (
    rest.length === 0 &&
    addr !== undefined &&
    (isIPv6(addr) || isIPv4(addr)) &&
    /^\d{1,3}$/.test(len ?? '') &&
    Number(len) <= longest
  );
}, 'not an IPv6 or IPv4 prefix (address/length)');

/** CLI → source agent: move a network. */
export const migrateRequest = z.strictObject({
  network: name,
  to: name,
  procedure: procedure.default('make-before-break'),
});
export type MigrateRequest = z.output<typeof migrateRequest>;

/** Source → destination, step 1: check you can take this network and ready the hypervisor side. */
export const prepareRequest = z.strictObject({
  migrationId,
  network: name,
  /** The source's host name. */
  source: name,
  procedure,
  /** The guests that will arrive (names from the config). */
  guests: z.array(name).max(1024),
  /** The source's care-of address: make-before-break forwards to the destination from it (docs/agent.md). */
  sourceCoa: ipv6.optional(),
});
export type PrepareRequest = z.output<typeof prepareRequest>;

export interface PrepareReply {
  host: string;
  network: string;
  /** The destination's current care-of address, if it has one (prepare fails if it has none). */
  coa: string;
  /** Per guest, what the destination's driver needs the source's driver to know. */
  incoming: Record<string, IncomingSpec>;
}

/** What a driver's prepareIncoming returned, as it travels in a request body. */
const incomingSpec = z.record(z.string().max(64), z.union([z.string().max(1024), z.number(), z.boolean()]));

/**
 * Source → destination after a failed migration: undo prepare. Idempotent without `sendBack`.
 * `sendBack`: guests of this migration that had already arrived before a later guest's move failed; the
 * destination migrates each back to the source, which prepared to take it (the value is what the source's
 * driver returned from prepareIncoming), so the network is whole again on the source.
 */
export const abortRequest = z.strictObject({
  migrationId,
  network: name,
  source: name,
  reason: z.string().max(2000),
  sendBack: z.record(name, incomingSpec).optional(),
});
export type AbortRequest = z.output<typeof abortRequest>;

/**
 * Source → destination, step 3: the report's "migration completed", with the binding state the
 * destination needs to take over the registration at once (sequence last + 1, docs/agent.md).
 */
export const handoverRequest = z.strictObject({
  migrationId,
  network: name,
  source: name,
  procedure,
  hoa: ipv6,
  prefixes: z.array(prefix).min(1).max(64),
  /** Sequence number of the source's last accepted BU (16-bit). */
  lastSequence: z.number().int().min(0).max(0xffff),
  /** Seconds left of the binding the HA granted the source (0 after a break-before-make deregistration). */
  lifetimeRemaining: z
    .number()
    .min(0)
    .max(0xffff * 4),
});
export type HandoverRequest = z.output<typeof handoverRequest>;

export interface HandoverReply {
  host: string;
  network: string;
  /** `active` once the HA accepted the BU; `registering` if it has not answered yet (the MR retries). */
  state: 'active' | 'registering';
  coa: string;
  /** Sequence number of the BU the destination sent. */
  sequence: number;
  /** From sending the BU to receiving the accepting BA, on the destination. */
  buToBaMs?: number;
  /** Why it is not active yet. */
  error?: string;
}

export const PHASES = [
  'prepare',
  'hypervisor',
  'notification',
  'deregistration',
  'registration',
  'standby',
] as const;
export type Phase = (typeof PHASES)[number];

/** One line of the NDJSON stream of `POST /v1/migrate`. */
export type MigrationEvent =
  | {
      type: 'phase';
      migrationId: string;
      phase: Phase;
      state: 'start' | 'done' | 'failed';
      /** Since the migration started. */
      elapsedMs: number;
      /** Duration of the phase (on done / failed). */
      ms?: number;
      detail?: string;
    }
  | { type: 'result'; migration: MigrationRecord }
  | { type: 'error'; code: string; message: string; migration?: MigrationRecord };

export interface MigrationTimings {
  prepareMs?: number;
  /** The driver's whole step on the source. */
  hypervisorMs?: number;
  /** How long the guest was stopped, where the driver knows. */
  downtimeMs?: number;
  /** Handover notification: sent until the destination answered. */
  notificationMs?: number;
  /** break-before-make: the source's deregistration BU until its BA. */
  deregistrationMs?: number;
  /** The destination's BU until the accepting BA (measured on the destination). */
  buToBaMs?: number;
  totalMs?: number;
}

export interface MigrationRecord {
  id: string;
  network: string;
  from: string;
  to: string;
  procedure: Procedure;
  /** ISO 8601. */
  startedAt: string;
  outcome: 'running' | 'succeeded' | 'failed';
  /** The phase that failed. */
  failedPhase?: Phase;
  error?: string;
  /** What the source did about the failure ("still active on host-a", …). */
  recovery?: string;
  timings: MigrationTimings;
}

/** One network as `GET /v1/status` shows it. */
export interface NetworkStatus {
  name: string;
  /** The mobile router's state on this host: standby, registering, active, … */
  state: string;
  homeAddress: string;
  prefixes: string[];
  coa?: string;
  sequence?: number;
  lifetimeRemaining?: number;
  guests: GuestInfo[];
  /** Set while a migration of this network runs. */
  migrating?: string;
  lastError?: string;
}

export interface AgentStatus {
  host: string;
  coa?: string;
  /** The data plane backend in use (bpf, seg6). */
  dataplane?: string;
  networks: NetworkStatus[];
  migrations: MigrationRecord[];
}

/**
 * A request the receiving agent refuses, with the HTTP status that says why. The control API maps `code`s
 * of other OfflinkErrors too (see api.ts); this one carries its status explicitly.
 */
export class ControlError extends OfflinkError {
  readonly status: number;
  constructor(status: number, code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.status = status;
  }
}

export function unknownNetwork(host: string, network: string): ControlError {
  return new ControlError(404, 'ERR_UNKNOWN_NETWORK', `host ${host} holds no network named ${network}`);
}

/** The destination, as the source's procedure sees it (the agent implements it over the control API). */
export interface Peer {
  readonly host: string;
  prepare(req: PrepareRequest, signal?: AbortSignal): Promise<PrepareReply>;
  handover(req: HandoverRequest, signal?: AbortSignal): Promise<HandoverReply>;
  abort(req: AbortRequest, signal?: AbortSignal): Promise<void>;
}
