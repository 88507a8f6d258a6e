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
 * Waits until the shared destination has written everything buffered, so the process can exit
 * with its last lines in order: pino's exit hook flushes synchronously, which would overtake an
 * asynchronous write still in flight. Logging keeps working afterwards.
 */
export function flushStdout(timeoutMs: number): Promise<void> {
  const dest = stdout;
  // sonic-boom exposes no "idle" state; `_writing` is its own flag for a write in flight (pinned version).
  if (!dest || (dest as unknown as { _writing?: boolean })._writing !== true) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      dest.off('drain', done);
      resolve();
    };
    const timer = setTimeout(done, timeoutMs);
    dest.on('drain', done);
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
