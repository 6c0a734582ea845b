/**
 * Logs: pino JSON lines on stderr (parsable by a script; `weft ... | pino-pretty` for people).
 * stdout is kept for the CLI's own output.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { ...bindings }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ fd: 2, sync: false }));
}
