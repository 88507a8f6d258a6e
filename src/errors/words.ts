// The closed vocabulary of why Tether failed a request: one word per failure, used identically in
// the x-tether-error header, the span's error.type, the metric label and the access log.

export const ERROR_WORDS = {
  connect_timeout: { status: 504, meaning: 'TCP connect did not finish within timeouts.connect' },
  connection_refused: { status: 502, meaning: 'the upstream actively refused the connection' },
  dns_failure: { status: 502, meaning: 'the upstream host name did not resolve' },
  connection_reset: {
    status: 502,
    meaning: 'the upstream closed or reset the connection before a full response',
  },
  protocol_error: { status: 502, meaning: 'the upstream sent something that is not valid HTTP/1.1' },
  response_timeout: { status: 504, meaning: 'no response headers within timeouts.responseHeaders (per try)' },
  idle_timeout: { status: 504, meaning: 'no bytes in either direction for timeouts.idle' },
  deadline_exceeded: { status: 504, meaning: 'timeouts.total (all tries and backoff) ran out' },
  circuit_open: { status: 503, meaning: "the destination's circuit breaker is open: failing fast" },
  overloaded: { status: 503, meaning: 'circuitBreaker.maxConcurrent requests already in flight' },
  bad_request: { status: 400, meaning: 'the request names no usable destination' },
  destination_not_allowed: {
    status: 403,
    meaning: 'spec.outbound is registryOnly and the policy does not name it',
  },
  client_closed: { status: 499, meaning: 'the app went away before the response was complete (never sent)' },
  internal_error: { status: 500, meaning: 'a bug in Tether; the message says where' },
} as const satisfies Record<string, { status: number; meaning: string }>;

export type ErrorWord = keyof typeof ERROR_WORDS;

export const isErrorWord = (s: string): s is ErrorWord => Object.hasOwn(ERROR_WORDS, s);

/** Which words are a timer expiring: the "timeouts by kind" that metrics and retry conditions group. */
export const TIMEOUT_WORDS: ReadonlySet<ErrorWord> = new Set([
  'connect_timeout',
  'response_timeout',
  'idle_timeout',
  'deadline_exceeded',
]);

/** Where in an attempt a failure happened; decides whether a non-idempotent request may be retried. */
export type Phase = 'before-request' | 'connect' | 'request-sent' | 'response-headers' | 'response-body';

export interface TetherErrorOptions {
  destination?: string | undefined;
  phase?: Phase;
  cause?: unknown;
}

/**
 * A failure with its word and a message that tells the user what to do. Every stage wraps the
 * foreign errors it sees into one of these, adding its own context.
 */
export class TetherError extends Error {
  readonly word: ErrorWord;
  readonly destination: string | undefined;
  readonly phase: Phase;

  constructor(word: ErrorWord, message: string, opts: TetherErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'TetherError';
    this.word = word;
    this.destination = opts.destination;
    this.phase = opts.phase ?? 'before-request';
  }

  /** True once any request byte may have reached the upstream: from then on only safe methods are retried. */
  get requestSent(): boolean {
    return this.phase !== 'before-request' && this.phase !== 'connect';
  }
}
