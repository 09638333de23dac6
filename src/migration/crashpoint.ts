// Fault injection for the reliability tests (docs/security.md, "Testing faults"): with
// OFFLINK_TEST_CRASH_AT=<point>[,<point>…] in its environment, an agent kills itself with SIGKILL when it
// reaches one of those points — what a power cut or the OOM killer does at the worst moment. Nothing
// is cleaned up, nothing is flushed. Unset (always, outside tests), a point costs one lookup.
export const CRASH_POINTS = [
  /** Source: the guests have moved, before the deregistration (break-before-make) or the notification's answer. */
  'source-after-hypervisor',
  /** Destination: the handover notification arrived, before the first Binding Update. */
  'destination-before-bu',
] as const;

export type CrashPoint = (typeof CRASH_POINTS)[number];

export function crashPoint(point: CrashPoint): void {
  const at = process.env['OFFLINK_TEST_CRASH_AT'];
  if (at?.split(',').includes(point)) {
    process.stderr.write(`${JSON.stringify({ level: 60, msg: 'crash point reached', point })}\n`);
    process.kill(process.pid, 'SIGKILL');
  }
}
