// Owns the process logger: JSON lines on stdout via pino, one logger per process, children per component.

import { pino, type Logger as PinoLogger, type LevelWithSilent } from 'pino';

export type Logger = PinoLogger;
export type LogLevel = LevelWithSilent;
export const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/**
 * A bounded stdout buffer: past this, lines are dropped (and counted) rather than queued without
 * limit or written synchronously; a stalled log reader must never stall the proxy.
 */
export const LOG_BUFFER_BYTES = 4 * 1024 * 1024;

let stdout: ReturnType<typeof pino.destination> | undefined;

/**
 * The process's one asynchronous stdout destination, shared by every logger that uses it so their
 * lines never interleave mid-line. pino flushes it synchronously on process exit.
 */
export function stdoutDestination(): ReturnType<typeof pino.destination> {
  stdout ??= pino.destination({ dest: 1, sync: false, maxLength: LOG_BUFFER_BYTES });
  return stdout;
}

/**
 * Writes what is buffered and stops the shared destination before the process exits; pino's own
 * exit hook would flush synchronously past an asynchronous write still in flight, out of order.
 */
export function closeStdout(timeoutMs: number): Promise<void> {
  const dest = stdout;
  if (!dest) return Promise.resolve();
  stdout = undefined;
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    dest.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    dest.end();
  });
}

/** `destination` defaults to pino's synchronous stdout; the sidecar passes stdoutDestination(). */
export function createLogger(level: LogLevel, name: string, destination?: pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
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
  };
  return destination ? pino(options, destination) : pino(options);
}
