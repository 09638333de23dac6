// Fakes for migration and agent unit tests: a home agent's binding reduced to one object, mobile routers
// that register with it, and a driver that moves guests between hosts in memory.
import type {
  Driver,
  DriverMigrateOptions,
  DriverMigrationResult,
  GuestInfo,
  GuestNetwork,
  IncomingSpec,
  MigrationDestination,
} from '../hypervisor/driver.ts';
import { HypervisorError } from '../hypervisor/driver.ts';
import { RegistrationRejectedError } from '../mobilerouter/errors.ts';
import type {
  DeregistrationResult,
  HandoverState,
  MobileRouterStatus,
  MrCounters,
  Registration,
} from '../mobilerouter/index.ts';
import type { MrStateValue } from '../mobilerouter/state.ts';
import type { RouterControl } from './router.ts';

/** The HA's binding for one network. `log` records every BU the HA accepted or refused. */
export class FakeBinding {
  coa: string | undefined;
  sequence: number | undefined;
  readonly log: string[] = [];
  /** Refuse BUs from these CoAs (BA 129). */
  readonly refuse = new Set<string>();
  /** Never answer BUs from these CoAs. */
  readonly silent = new Set<string>();
}

export class FakeRouter implements RouterControl {
  state: MrStateValue = 'standby';
  sequence: number | undefined;
  readonly calls: string[] = [];

  constructor(
    readonly binding: FakeBinding,
    public coa: string | undefined,
    readonly network = 'net1',
  ) {}

  async prepare(options: { acceptFrom?: string } = {}): Promise<string | undefined> {
    this.calls.push(
      options.acceptFrom === undefined ? 'prepare' : `prepare acceptFrom ${options.acceptFrom}`,
    );
    return this.coa;
  }

  async forwardTo(peer: string): Promise<boolean> {
    this.calls.push(`forwardTo ${peer}`);
    return this.state === 'handingOver';
  }

  async activate(options: { lastSequence?: number } = {}): Promise<Registration> {
    this.calls.push(`activate${options.lastSequence === undefined ? '' : ` ${options.lastSequence}`}`);
    const coa = this.coa!;
    this.sequence = ((options.lastSequence ?? this.sequence ?? 100) + 1) & 0xffff;
    this.state = 'registering';
    if (this.binding.silent.has(coa)) return new Promise(() => {});
    if (this.binding.refuse.has(coa)) {
      this.state = 'failed';
      this.binding.log.push(`refused ${coa} seq ${this.sequence}`);
      throw new RegistrationRejectedError(this.network, 129);
    }
    this.binding.coa = coa;
    this.binding.sequence = this.sequence;
    this.binding.log.push(`bind ${coa} seq ${this.sequence}`);
    this.state = 'active';
    return {
      network: this.network,
      homeAddress: '2001:db8:ffff::101',
      coa,
      sequence: this.sequence,
      lifetimeSeconds: 600,
      refreshAdviceSeconds: undefined,
      buToBaMs: 1.5,
      exchangeMs: 1.5,
      retransmissions: 0,
      kind: options.lastSequence === undefined ? 'first' : 'reregistration',
    };
  }

  async prepareHandover(): Promise<HandoverState> {
    this.calls.push('prepareHandover');
    if (this.state === 'active') this.state = 'handingOver';
    return this.handoverState();
  }

  async standby(): Promise<HandoverState> {
    this.calls.push('standby');
    this.state = 'standby';
    return this.handoverState();
  }

  async deregister(): Promise<DeregistrationResult> {
    this.calls.push('deregister');
    this.sequence = ((this.sequence ?? 0) + 1) & 0xffff;
    this.binding.coa = undefined;
    this.binding.sequence = this.sequence;
    this.binding.log.push(`deregister seq ${this.sequence}`);
    this.state = 'standby';
    return { acknowledged: true, status: 0, sequence: this.sequence, buToBaMs: 1 };
  }

  status(): MobileRouterStatus {
    return {
      network: this.network,
      homeAddress: '2001:db8:ffff::101',
      prefixes: ['2001:db8:100::/64'],
      bridge: 'ofl-net1',
      state: this.state,
      coa: this.coa,
      sequence: this.sequence,
      lifetimeRemainingMs: this.state === 'active' || this.state === 'handingOver' ? 590_000 : 0,
      pending: this.state === 'registering',
      lastBaStatus: undefined,
      lastBaStatusName: undefined,
      lastBuToBaMs: undefined,
      lastError: undefined,
      lastIgnored: undefined,
      counters: {} as MrCounters,
    };
  }

  private handoverState(): HandoverState {
    return {
      network: this.network,
      homeAddress: '2001:db8:ffff::101',
      prefixes: ['2001:db8:100::/64'],
      lastSequence: this.sequence,
      lifetimeRemainingMs: 590_000,
    };
  }
}

/** Where each guest is, shared by the fake drivers of all hosts. */
export class FakeWorld {
  readonly where = new Map<string, string>();
  readonly log: string[] = [];
  /** Fail the next migrate of this guest (after its switchover hook ran). */
  failNext = new Set<string>();
}

export class FakeDriver implements Driver {
  readonly kind = 'fake';
  /** Refuse prepareIncoming for these guests. */
  readonly refuseIncoming = new Set<string>();

  constructor(
    readonly world: FakeWorld,
    readonly host: string,
  ) {}

  async listGuests(network: GuestNetwork): Promise<GuestInfo[]> {
    return network.guests
      .filter((g) => this.world.where.get(g) === this.host)
      .map((g) => ({ name: g, network: network.name, state: 'running' as const }));
  }

  async prepareIncoming(guest: string): Promise<IncomingSpec> {
    this.world.log.push(`${this.host}: prepareIncoming ${guest}`);
    if (this.refuseIncoming.has(guest)) throw new HypervisorError('ERR_HYPERVISOR', `no bridge for ${guest}`);
    return { host: this.host };
  }

  async cancelIncoming(guest: string): Promise<void> {
    this.world.log.push(`${this.host}: cancelIncoming ${guest}`);
  }

  async migrate(
    guest: string,
    destination: MigrationDestination,
    options: DriverMigrateOptions,
  ): Promise<DriverMigrationResult> {
    if (this.world.where.get(guest) !== this.host)
      throw new HypervisorError('ERR_HYPERVISOR', `${guest} is not here`);
    await options.onSwitchover?.();
    this.world.log.push(`${this.host}: switchover ${guest}`);
    // Let an overlapped handover run while the guest "moves".
    await new Promise((r) => setImmediate(r));
    if (this.world.failNext.delete(guest)) {
      this.world.log.push(`${this.host}: move ${guest} failed, rolled back`);
      throw new HypervisorError('ERR_HYPERVISOR', `moving ${guest} failed; rolled back`, { guest });
    }
    this.world.where.set(guest, destination.host);
    this.world.log.push(`${this.host}: moved ${guest} to ${destination.host}`);
    return { hypervisorMs: 2, downtimeMs: 1, transferredBytes: 0 };
  }

  async announce(guest: string): Promise<void> {
    this.world.log.push(`${this.host}: announce ${guest}`);
  }
}
