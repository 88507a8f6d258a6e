// The recent-window view of each upstream for /debug/destinations: latency percentiles, error and timeout rates, last error — bounded per upstream.

import { TIMEOUT_WORDS } from '../errors/words.ts';
import type { Observer, RequestRecord } from '../proxy/observer.ts';
import type { Clock } from '../resilience/clock.ts';

/** Long enough to see a trend across a breaker's openFor, short enough to show that a fix took. */
export const RECENT_WINDOW_MS = 60_000;
/** Per upstream; at 1,000 rps the window is the last ~1s, which still gives stable p99s. 16 KiB of memory each. */
export const RECENT_MAX_SAMPLES = 1024;

const OK = 0;
const ERROR = 1;
const TIMEOUT = 2;

class Ring {
  readonly at = new Float64Array(RECENT_MAX_SAMPLES);
  readonly ms = new Float64Array(RECENT_MAX_SAMPLES);
  readonly kind = new Uint8Array(RECENT_MAX_SAMPLES);
  size = 0;
  next = 0;
  lastError: { word: string; at: Date } | undefined;

  push(at: number, ms: number, kind: number): void {
    this.at[this.next] = at;
    this.ms[this.next] = ms;
    this.kind[this.next] = kind;
    this.next = (this.next + 1) % RECENT_MAX_SAMPLES;
    if (this.size < RECENT_MAX_SAMPLES) this.size++;
  }
}

export interface RecentSnapshot {
  /** Requests that ended within the window (at most RECENT_MAX_SAMPLES). */
  requests: number;
  windowSeconds: number;
  latencyMs: { p50: number; p95: number; p99: number } | null;
  /** Share of requests that failed: a Tether error word (except client_closed) or a 5xx from the upstream. */
  errorRate: number;
  /** Share of requests that ended in connect_timeout, response_timeout, idle_timeout or deadline_exceeded. */
  timeoutRate: number;
  lastError: { error: string; at: string } | null;
}

function kindOf(r: RequestRecord): number {
  if (r.error && TIMEOUT_WORDS.has(r.error)) return TIMEOUT;
  if ((r.error && r.error !== 'client_closed') || (r.status ?? 0) >= 500) return ERROR;
  return OK;
}

function rank(sorted: number[], q: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return Math.round((sorted[i] ?? 0) * 10) / 10;
}

export class RecentStats {
  private readonly rings = new Map<string, Ring>();
  private readonly clock: Clock;

  constructor(clock: Clock) {
    this.clock = clock;
  }

  readonly observer: Observer = {
    requestEnded: (r) => {
      if (!r.plan || r.endedAt === undefined) return;
      let ring = this.rings.get(r.plan.key);
      if (!ring) {
        ring = new Ring();
        this.rings.set(r.plan.key, ring);
      }
      const kind = kindOf(r);
      ring.push(r.endedAt, r.endedAt - r.startedAt, kind);
      if (kind !== OK) {
        const word: string = r.error ?? String(r.status);
        ring.lastError = { word, at: new Date(r.startedAtWall + (r.endedAt - r.startedAt)) };
      }
    },
  };

  /** The upstream is gone from the data path (evicted): its history goes too. */
  forget(key: string): void {
    this.rings.delete(key);
  }

  snapshot(key: string): RecentSnapshot {
    const ring = this.rings.get(key);
    const empty: RecentSnapshot = {
      requests: 0,
      windowSeconds: RECENT_WINDOW_MS / 1000,
      latencyMs: null,
      errorRate: 0,
      timeoutRate: 0,
      lastError: null,
    };
    if (!ring) return empty;
    const since = this.clock.now() - RECENT_WINDOW_MS;
    const durations: number[] = [];
    let errors = 0;
    let timeouts = 0;
    for (let i = 0; i < ring.size; i++) {
      if ((ring.at[i] ?? 0) < since) continue;
      durations.push(ring.ms[i] ?? 0);
      const k = ring.kind[i];
      if (k === TIMEOUT) timeouts++;
      if (k !== OK) errors++;
    }
    const last = ring.lastError ? { error: ring.lastError.word, at: ring.lastError.at.toISOString() } : null;
    if (durations.length === 0) return { ...empty, lastError: last };
    durations.sort((a, b) => a - b);
    const n = durations.length;
    return {
      requests: n,
      windowSeconds: RECENT_WINDOW_MS / 1000,
      latencyMs: { p50: rank(durations, 0.5), p95: rank(durations, 0.95), p99: rank(durations, 0.99) },
      errorRate: Math.round((errors / n) * 1000) / 1000,
      timeoutRate: Math.round((timeouts / n) * 1000) / 1000,
      lastError: last,
    };
  }
}
