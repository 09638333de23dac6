import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Command, CommanderError } from 'commander';
import { resolveFamily } from '../lab/run.ts';
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
