// A retry budget per destination: retries may add at most `ratio` of recent requests plus a floor per second, so a failing upstream never sees a retry storm.

import type { Clock } from './clock.ts';

/**
 * Linkerd/Finagle's budget over a sliding window of one-second buckets: a retry is allowed while
 * retries < minPerSecond × windowSeconds + ratio × requests, both counted over the window.
 */
export class RetryBudget {
  private readonly ratio: number;
  private readonly minPerSecond: number;
  private readonly clock: Clock;
  private readonly buckets: { second: number; requests: number; retries: number }[];

  constructor(ratio: number, minPerSecond: number, clock: Clock, windowSeconds = 10) {
    this.ratio = ratio;
    this.minPerSecond = minPerSecond;
    this.clock = clock;
    this.buckets = Array.from({ length: windowSeconds }, () => ({ second: -1, requests: 0, retries: 0 }));
  }

  private bucket() {
    const second = Math.floor(this.clock.now() / 1000);
    const b = this.buckets[second % this.buckets.length];
    if (!b) throw new Error('unreachable: empty budget window');
    if (b.second !== second) {
      b.second = second;
      b.requests = 0;
      b.retries = 0;
    }
    return b;
  }

  private totals(): { requests: number; retries: number } {
    const now = Math.floor(this.clock.now() / 1000);
    let requests = 0;
    let retries = 0;
    for (const b of this.buckets) {
      if (now - b.second < this.buckets.length) {
        requests += b.requests;
        retries += b.retries;
      }
    }
    return { requests, retries };
  }

  /** Every original request deposits into the budget. */
  recordRequest(): void {
    this.bucket().requests++;
  }

  /** Withdraws one retry if the budget allows it. */
  tryRetry(): boolean {
    const { requests, retries } = this.totals();
    if (retries >= this.minPerSecond * this.buckets.length + this.ratio * requests) return false;
    this.bucket().retries++;
    return true;
  }
}
