// Owns the process logger: JSON lines on stdout via pino, one logger per process, children per component.

import { pino, type Logger as PinoLogger, type LevelWithSilent } from 'pino';

export type Logger = PinoLogger;
export type LogLevel = LevelWithSilent;
export const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function createLogger(level: LogLevel, name: string): Logger {
  return pino({
    name,
    level,
    base: { component: name },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    // Authorization and cookies must never reach a log line, whatever a caller passes.
    redact: {
      paths: ['headers.authorization', 'headers.cookie', 'headers["proxy-authorization"]'],
      remove: true,
    },
  });
}
