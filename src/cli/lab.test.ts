import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Command, CommanderError } from 'commander';
import { checkHomeAgents, labRun, labUp, resolveFamily } from '../lab/run.ts';
import { familyGiven, familyOption, registerLab } from './lab.ts';

/** Parse `args` with the lab's --family option alone; the value and whether it was given. */
function parseFamily(args: string[]): { value: unknown; given: string | undefined } {
  const cmd = new Command('run').exitOverride().configureOutput({ writeErr: () => {} });
  cmd.addOption(familyOption());
  cmd.parse(args, { from: 'user' });
  return { value: cmd.opts()['family'], given: familyGiven(cmd) };
}

describe('offlink lab run --family', () => {
  it('is dual by default, and says so in --help', () => {
    assert.deepEqual(parseFamily([]), { value: 'dual', given: undefined });
    const run = registerLab(new Command('offlink')).commands.find((c) => c.name() === 'run');
    const help = (run?.helpInformation() ?? '').replace(/\s+/g, ' ');
    assert.match(help, /--family <f>/);
    assert.match(help, /choices: "ipv6", "dual", default: "dual"/);
  });

  it('takes ipv6 and dual as given', () => {
    assert.deepEqual(parseFamily(['--family', 'ipv6']), { value: 'ipv6', given: 'ipv6' });
    assert.deepEqual(parseFamily(['--family', 'dual']), { value: 'dual', given: 'dual' });
  });

  it('refuses anything else with the allowed choices', () => {
    let message = '';
    const cmd = new Command('run')
      .exitOverride()
      .configureOutput({ writeErr: (s) => (message += s) })
      .addOption(familyOption());
    assert.throws(
      () => cmd.parse(['--family', 'ipv4'], { from: 'user' }),
      (err: unknown) => err instanceof CommanderError && err.code === 'commander.invalidArgument',
    );
    assert.match(message, /argument 'ipv4' is invalid\. Allowed choices are ipv6, dual/);
  });

  it('a run is what was asked, dual unless told, whatever the guests (netns or QEMU)', () => {
    assert.deepEqual(resolveFamily(undefined), { family: 'dual' });
    assert.deepEqual(resolveFamily('ipv6'), { family: 'ipv6' });
    assert.deepEqual(resolveFamily('dual'), { family: 'dual' });
  });

  it('the seg6 data plane carries no IPv4: ipv6 with a note by default, an explicit dual refused', () => {
    const fallback = resolveFamily(undefined, 'seg6');
    assert.equal(fallback.family, 'ipv6');
    assert.match(fallback.note ?? '', /seg6 data plane does not carry IPv4/);
    assert.throws(() => resolveFamily('dual', 'seg6'), /--family dual cannot run with the seg6 data plane/);
    assert.deepEqual(resolveFamily(undefined, 'bpf'), { family: 'dual' });
    assert.deepEqual(resolveFamily(undefined, 'auto'), { family: 'dual' });
  });
});

/** The `lab run` or `lab up` command as registered, parsing `args` without exiting; its options, or the error. */
function parseLab(sub: 'run' | 'up', args: string[]): { opts?: Record<string, unknown>; error: string } {
  let error = '';
  const program = new Command('offlink').exitOverride();
  registerLab(program);
  const cmd = program.commands.find((c) => c.name() === 'lab')!.commands.find((c) => c.name() === sub)!;
  cmd
    .exitOverride()
    .configureOutput({ writeErr: (s) => (error += s) })
    .action(() => {});
  try {
    cmd.parse(args, { from: 'user' });
    return { opts: cmd.opts(), error };
  } catch {
    return { error };
  }
}

describe('offlink lab --guest', () => {
  it('takes libvirt beside netns and qemu, in run and up, and --help says what each is', () => {
    for (const sub of ['run', 'up'] as const) {
      for (const guest of ['netns', 'qemu', 'libvirt'])
        assert.equal(parseLab(sub, ['--guest', guest]).opts?.['guest'], guest, `${sub} --guest ${guest}`);
      assert.equal(parseLab(sub, []).opts?.['guest'], 'netns');
    }
    const run = registerLab(new Command('offlink')).commands.find((c) => c.name() === 'run');
    const help = (run?.helpInformation() ?? '').replace(/\s+/g, ' ');
    assert.match(help, /choices: "netns", "qemu", "libvirt", default: "netns"/);
    assert.match(
      help,
      /libvirt domains \(one libvirtd per host; off-link: migrated by the agents through libvirt; on-link: plain `virsh migrate --live`, `lab run` only\)/,
    );
  });

  it('refuses an unknown guest kind with the allowed choices', () => {
    const r = parseLab('run', ['--guest', 'xen']);
    assert.equal(r.opts, undefined);
    assert.match(r.error, /argument 'xen' is invalid\. Allowed choices are netns, qemu, libvirt/);
  });

  it('lab up refuses an on-link libvirt guest before anything is checked or built (nothing would migrate it)', async () => {
    const lines: string[] = [];
    await assert.rejects(
      labUp({
        topology: 'on-link',
        guest: 'libvirt',
        stateDir: '/nonexistent/offlink-lab-test',
        print: (l) => lines.push(l),
      }),
      /`lab up` cannot leave an on-link libvirt guest running.*`lab run --topology on-link --guest libvirt`/,
    );
    assert.deepEqual(lines, []);
  });
});

describe('offlink lab --home-agents, --fail-ha', () => {
  it('one home agent by default; 2 in run and up; --fail-ha in run', () => {
    for (const sub of ['run', 'up'] as const) {
      assert.equal(parseLab(sub, []).opts?.['homeAgents'], '1');
      assert.equal(parseLab(sub, ['--home-agents', '2']).opts?.['homeAgents'], '2');
    }
    assert.equal(parseLab('run', ['--home-agents', '2', '--fail-ha']).opts?.['failHa'], true);
    assert.match(
      parseLab('run', ['--home-agents', '3']).error,
      /argument '3' is invalid\. Allowed choices are 1, 2/,
    );
    assert.match(parseLab('up', ['--fail-ha']).error, /unknown option '--fail-ha'/);
  });

  it('--fail-ha without two home agents, and two home agents on-link, are refused before anything is built', async () => {
    assert.throws(
      () => checkHomeAgents({ failHa: true, topology: 'off-link' }),
      /--fail-ha kills one of two home agents: use it with --home-agents 2/,
    );
    assert.throws(
      () => checkHomeAgents({ homeAgents: 2, topology: 'on-link' }),
      /--home-agents 2 needs the off-link topology/,
    );
    checkHomeAgents({ homeAgents: 2, failHa: true, topology: 'off-link' });
    checkHomeAgents({ topology: 'on-link' });
    const lines: string[] = [];
    await assert.rejects(
      labRun({
        topology: 'off-link',
        guest: 'netns',
        failHa: true,
        migrations: 1,
        intervalS: 1,
        procedure: 'make-before-break',
        out: '/nonexistent/offlink-lab-test',
        stateDir: '/nonexistent/offlink-lab-test',
        print: (l) => lines.push(l),
      }),
      /--fail-ha kills one of two home agents/,
    );
    assert.deepEqual(lines, []);
  });
});
