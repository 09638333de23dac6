// Waits for a daemon to start (a process that loads the whole program before its first log line), stretched
// on a slow machine by OFFLINK_TEST_SLOW, a factor: scripts/seg6-vm sets it, since under QEMU's TCG a
// `node` process takes 20-50 s to start where it takes 1-3 s on the host. Only start-up waits use it,
// never a bound that a test asserts about the behaviour it names (gaps, back-off intervals).

/** `ms`, times OFFLINK_TEST_SLOW when set (a positive number). */
export function startupMs(ms: number): number {
  const raw = process.env['OFFLINK_TEST_SLOW'];
  if (raw === undefined || raw === '') return ms;
  const factor = Number(raw);
  if (!Number.isFinite(factor) || factor <= 0)
    throw new Error(`OFFLINK_TEST_SLOW must be a positive number, not "${raw}"`);
  return Math.round(ms * factor);
}
