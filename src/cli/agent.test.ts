import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Command } from 'commander';
import type { AgentConfig } from '../agent/config.ts';
import type { MigrationRecord } from '../migration/messages.ts';
import { type CommandRunner, MissingCommandError } from '../system/runner.ts';
import {
  checkDhcp4Server,
  clientFor,
  formatAgentStatus,
  formatEvent,
  formatSummary,
  procedureOption,
} from './agent.ts';

const RECORD: MigrationRecord = {
  id: '0b6f2f8e-1111-2222-3333-444455556666',
  network: 'net1',
  from: 'host-a',
  to: 'host-b',
  procedure: 'make-before-break',
  startedAt: '2026-01-01T00:00:00.000Z',
  outcome: 'succeeded',
  timings: {
    prepareMs: 12.3,
    hypervisorMs: 40,
    downtimeMs: 22.5,
    notificationMs: 45.1,
    buToBaMs: 30,
    totalMs: 98.7,
  },
};

describe('offlink migrate / status --agent output', () => {
  it('prints one line per phase event and a summary', () => {
    assert.equal(
      formatEvent({
        type: 'phase',
        migrationId: 'x',
        phase: 'hypervisor',
        state: 'done',
        elapsedMs: 52.34,
        ms: 40,
      }),
      '[    52.3 ms] hypervisor     done in 40.0 ms',
    );
    assert.equal(
      formatEvent({
        type: 'phase',
        migrationId: 'x',
        phase: 'prepare',
        state: 'failed',
        elapsedMs: 3,
        ms: 3,
        detail: 'no bridge',
      }),
      '[     3.0 ms] prepare        FAILED after 3.0 ms  (no bridge)',
    );
    assert.equal(formatEvent({ type: 'result', migration: RECORD }), undefined);
    assert.equal(
      formatSummary(RECORD),
      'migration 0b6f2f8e-1111-2222-3333-444455556666 succeeded: net1 host-a → host-b in 98.7 ms\n' +
        '  prepare 12.3 ms, hypervisor 40.0 ms (guest stopped 22.5 ms), notification 45.1 ms, BU→BA 30.0 ms',
    );
  });

  it('prints networks and recent migrations as tables', () => {
    const text = formatAgentStatus({
      host: 'host-a',
      coa: '2001:db8:a::2',
      networks: [
        {
          name: 'net1',
          state: 'active',
          homeAddress: '2001:db8:ffff::101',
          prefixes: ['2001:db8:100::/64'],
          sequence: 7,
          lifetimeRemaining: 590,
          guests: [{ name: 'guest-1', network: 'net1', state: 'running' }],
        },
        {
          name: 'net2',
          state: 'standby',
          homeAddress: '2001:db8:ffff::102',
          prefixes: ['2001:db8:200::/64'],
          guests: [],
        },
      ],
      migrations: [RECORD],
    });
    assert.match(text, /^host host-a, care-of address 2001:db8:a::2$/m);
    assert.match(text, /^net1\s+active\s+2001:db8:ffff::101\s+2001:db8:100::\/64\s+7\s+590s\s+guest-1$/m);
    assert.match(text, /^net2\s+standby\s+.*\s+-\s+-\s+-$/m);
    assert.match(text, /^0b6f2f8e\s+net1\s+host-a\s+host-b\s+make-before-break\s+succeeded\s+98\.7 ms/m);
  });

  it('finds the agent URL and key from --agent/--key-file, the environment, or --config', () => {
    delete process.env['OFFLINK_CLUSTER_KEY'];
    const dir = mkdtempSync(join(tmpdir(), 'offlink-cli-'));
    const key = 'ab'.repeat(32);
    writeFileSync(join(dir, 'k'), `${key}\n`);
    assert.equal(
      clientFor({ agent: 'http://[::1]:7400/', keyFile: join(dir, 'k') }).baseUrl,
      'http://[::1]:7400',
    );
    writeFileSync(
      join(dir, 'a.yaml'),
      `host: host-a
uplink: up0
homeAgent: { address: "2001:db8:ffff::1" }
control: { listen: "[::]:7400", key: ${key} }
hypervisor: { driver: netns }
`,
    );
    assert.equal(clientFor({ config: join(dir, 'a.yaml') }).baseUrl, 'http://[::1]:7400');
    assert.throws(
      () => clientFor({ agent: 'http://x' }),
      /give --key-file FILE, OFFLINK_CLUSTER_KEY or --config FILE/,
    );
    writeFileSync(join(dir, 'short'), 'abcd');
    assert.throws(
      () => clientFor({ agent: 'http://x', keyFile: join(dir, 'short') }),
      /not a hex key of at least 32 bytes/,
    );
    assert.throws(() => clientFor({ keyFile: join(dir, 'k') }), /give --agent URL/);
  });
});

describe('--procedure (offlink migrate, offlink lab run)', () => {
  /** Parse `args` with a command that has only --procedure; its value, or the error commander reports. */
  function parse(args: string[]): { procedure?: string; error?: string } {
    let error: string | undefined;
    const cmd = new Command()
      .exitOverride()
      .configureOutput({ writeErr: (text) => (error = text), writeOut: () => {} })
      .addOption(procedureOption());
    try {
      cmd.parse(args, { from: 'user' });
    } catch {
      return { ...(error !== undefined ? { error } : {}) };
    }
    return { procedure: cmd.opts()['procedure'] as string };
  }

  it('takes the current names, make-before-break by default', () => {
    assert.deepEqual(parse([]), { procedure: 'make-before-break' });
    assert.deepEqual(parse(['--procedure', 'break-before-make']), { procedure: 'break-before-make' });
    assert.deepEqual(parse(['--procedure', 'make-before-break']), { procedure: 'make-before-break' });
  });

  it('accepts "paper", the former name, as break-before-make', () => {
    assert.deepEqual(parse(['--procedure', 'paper']), { procedure: 'break-before-make' });
  });

  it('refuses an unknown procedure with a clear error', () => {
    assert.match(
      parse(['--procedure', 'teleport']).error ?? '',
      /--procedure <p>' argument 'teleport' is invalid\. unknown procedure "teleport": expected make-before-break or break-before-make/,
    );
  });
});

describe('offlink agent check-config', () => {
  const bin = new URL('../../bin/offlink.js', import.meta.url).pathname;
  const example = new URL('../../examples/agent.yaml', import.meta.url).pathname;
  const run = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });

  it('a good config: one ok line naming what it found, exit 0', () => {
    const r = run('agent', 'check-config', '--config', example);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(
      r.stdout,
      `${example}: ok — host host-a on eth0, home agent 2001:db8:ffff::1, networks net1, net2, 1 peer, hypervisor netns\n`,
    );
  });

  it('a bad config or none: one error line, exit 1', () => {
    const dir = mkdtempSync(join(tmpdir(), 'offlink-cli-agent-'));
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, readFileSync(example, 'utf8').replace('host: host-a', 'host: 12'));
    const r = run('agent', 'check-config', '--config', bad);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^offlink: host: /);
    assert.equal(r.stderr.split('\n').length, 2, r.stderr);
    const none = run('agent', 'check-config');
    assert.equal(none.status, 1);
    assert.equal(none.stderr, 'offlink: agent: --config FILE is required\n');
  });
});

describe('offlink agent: DHCPv4 needs dnsmasq', () => {
  const runner = (missing: boolean): CommandRunner & { calls: string[][] } => {
    const calls: string[][] = [];
    return {
      calls,
      run: async (argv) => {
        calls.push([...argv]);
        if (missing) throw new MissingCommandError(argv[0]!);
        return { stdout: 'Dnsmasq version 2.90', stderr: '', exitCode: 0 };
      },
    } as CommandRunner & { calls: string[][] };
  };
  const config = (dhcp: boolean) =>
    ({
      networks: [
        { name: 'net1' },
        { name: 'net2', ...(dhcp ? { dhcp4: { leaseSeconds: 600, hosts: [] } } : {}) },
      ],
    }) as unknown as AgentConfig;

  it('without dhcp4 it does not look for dnsmasq', async () => {
    const r = runner(true);
    await checkDhcp4Server(config(false), r);
    assert.deepEqual(r.calls, []);
  });

  it('names the network and the Debian package when dnsmasq is missing', async () => {
    await assert.rejects(
      checkDhcp4Server(config(true), runner(true)),
      /networks\[1\]\.dhcp4 \(net2\): dnsmasq not found; install Debian's dnsmasq-base/,
    );
    const r = runner(false);
    await checkDhcp4Server(config(true), r);
    assert.deepEqual(r.calls, [['dnsmasq', '--version']]);
  });
});
