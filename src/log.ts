// Structured logs (STYLE 9): one JSON object a line on stderr, with binding / network / migration ids as
// fields (`log.child({ hoa })`). Level from OFFLINK_LOG_LEVEL (default info); `silent` in unit tests.
import { pino } from 'pino';

export type Logger = pino.Logger;

export function createLogger(name: string, options: { level?: string; destination?: number } = {}): Logger {
  const level = options.level ?? process.env['OFFLINK_LOG_LEVEL'] ?? 'info';
  return pino(
    { name, level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ dest: options.destination ?? 2, sync: true }),
  );
}

/** A logger that writes nothing, for unit tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
