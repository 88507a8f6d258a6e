// Per-destination circuit breaker and concurrency cap: the only module that touches opossum.

import { EventEmitter } from 'node:events';
import CircuitBreaker from 'opossum';
import { TetherError } from '../errors/words.ts';
import type { BreakerPolicy } from '../policy/schema.ts';
import { formatDuration } from '../policy/duration.ts';

export type BreakerState = 'closed' | 'open' | 'half-open';

/** Carries a response that the breaker must count as a failure (5xx) back out to the caller. */
class CountedFailure<T> extends Error {
  readonly result: T;
  constructor(result: T) {
    super('counted failure');
    this.result = result;
  }
}

type Action = (fn: () => Promise<unknown>, failed: (r: unknown) => boolean) => Promise<unknown>;

const action: Action = (fn, failed) =>
  fn().then((r) => (failed(r) ? Promise.reject(new CountedFailure(r)) : r));

/** Errors that say nothing about the upstream's health must not trip its breaker. */
function notUpstreamsFault(err: unknown): boolean {
  if (err instanceof TetherError) return err.word === 'client_closed' || err.word === 'internal_error';
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ESEMLOCKED';
}

export interface BreakerEvents {
  state: [state: BreakerState, previous: BreakerState];
  rejected: [word: 'circuit_open' | 'overloaded'];
}

/**
 * Judges a destination over a rolling window: it opens when the failure ratio exceeds
 * `failureRatio` after at least `minimumRequests`, fails fast for `openFor`, then lets a single
 * probe through (half-open) and closes if it succeeds. Created once per destination policy;
 * shutdown() when replaced, or opossum's bucket timers leak (opossum#181).
 */
export class Breaker extends EventEmitter<BreakerEvents> {
  readonly destination: string;
  readonly policy: BreakerPolicy;
  private readonly cb: CircuitBreaker<Parameters<Action>, unknown>;
  private current: BreakerState = 'closed';

  constructor(destination: string, policy: BreakerPolicy) {
    super();
    this.destination = destination;
    this.policy = policy;
    this.cb = new CircuitBreaker(action, {
      timeout: false, // Tether enforces its own layered timeouts closer to the socket
      resetTimeout: policy.openForMs,
      // opossum opens on "error rate > threshold"; 100 can never be exceeded, which is how `enabled: false` keeps only the concurrency cap.
      errorThresholdPercentage: policy.enabled ? policy.failureRatio * 100 : 100,
      rollingCountTimeout: policy.windowMs,
      rollingCountBuckets: 10,
      volumeThreshold: policy.minimumRequests,
      capacity: policy.maxConcurrent,
      rollingPercentilesEnabled: false, // per-call latency arrays cost memory (opossum#648); telemetry keeps its own
      errorFilter: notUpstreamsFault,
    });
    this.cb.on('open', () => this.move('open'));
    this.cb.on('halfOpen', () => this.move('half-open'));
    this.cb.on('close', () => this.move('closed'));
  }

  private move(next: BreakerState): void {
    const prev = this.current;
    if (prev === next) return;
    this.current = next;
    this.emit('state', next, prev);
  }

  get state(): BreakerState {
    return this.current;
  }

  /**
   * Runs `fn` under the breaker. `failed(result)` marks a resolved result (a 5xx response) as a
   * failure for the ratio while still returning it to the caller.
   */
  async run<T>(fn: () => Promise<T>, failed: (r: T) => boolean): Promise<T> {
    try {
      return (await this.cb.fire(fn, failed as (r: unknown) => boolean)) as T;
    } catch (err) {
      if (err instanceof CountedFailure) return err.result as T;
      const code = (err as { code?: unknown } | null)?.code;
      if (code === 'EOPENBREAKER') {
        this.emit('rejected', 'circuit_open');
        throw new TetherError(
          'circuit_open',
          `circuit breaker for ${this.destination} is ${this.current === 'half-open' ? 'half-open and already probing' : 'open'} after too many failures; it lets a probe through ${formatDuration(this.policy.openForMs)} after opening (circuitBreaker.openFor)`,
          { destination: this.destination },
        );
      }
      if (code === 'ESEMLOCKED') {
        this.emit('rejected', 'overloaded');
        throw new TetherError(
          'overloaded',
          `${this.policy.maxConcurrent} requests to ${this.destination} are already in flight (circuitBreaker.maxConcurrent)`,
          { destination: this.destination },
        );
      }
      throw err;
    }
  }

  shutdown(): void {
    this.cb.shutdown();
    this.removeAllListeners();
  }
}
