// bpffs instances the bpf backend mounted under a test's run directory (in this process's mount
// namespace): unmounted when the test ends, whatever state it left.
import { readFileSync, rmSync } from 'node:fs';
import { sh } from './netns.ts';

/** Unmount every mount below `dir` (deepest first), then remove `dir`. */
export async function unmountUnder(dir: string): Promise<void> {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await sh(['umount', '-l', m]).catch(() => {});
  rmSync(dir, { recursive: true, force: true });
}
