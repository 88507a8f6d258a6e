// Per-upstream state that outlives a request: breaker, retry budget and keep-alive pool, created once and rebuilt only when that destination's policy changes.

import { Agent } from 'node:http';
import { fingerprint } from '../policy/resolve.ts';
import type { Settings } from '../policy/schema.ts';
import { Breaker } from '../resilience/breaker.ts';
import { RetryBudget } from '../resilience/budget.ts';
import type { Clock } from '../resilience/clock.ts';

export interface DestinationRuntime {
  readonly key: string;
  /** The policy destination name ("default" when none matched). */
  name: string;
  critical: boolean;
  breaker: Breaker;
  budget: RetryBudget;
  readonly agent: Agent;
  inFlight: number;
  lastUsed: number;
  /** Identity of the Settings object last seen, so an unchanged policy costs one comparison per request. */
  settings: Settings;
  resilienceFingerprint: string;
}

export interface DestinationsOptions {
  /**
   * Idle pooled sockets are closed after this; it must stay below upstreams' keep-alive timeouts
   * (Node's default is 5s) or a reused socket meets a server-side close (nodejs/node#20256).
   */
  agentIdleMs: number;
  /** Upstreams not used for this long, with nothing in flight, are forgotten. */
  evictAfterMs: number;
}

export interface DestinationsEvents {
  created(rt: DestinationRuntime): void;
  breakerReplaced(rt: DestinationRuntime, old: Breaker): void;
  evicted(rt: DestinationRuntime): void;
}

const resilienceOf = (s: Settings): unknown => ({ b: s.circuitBreaker, r: s.retries.budget });

export class Destinations {
  private readonly map = new Map<string, DestinationRuntime>();
  private readonly clock: Clock;
  private readonly opts: DestinationsOptions;
  private readonly hooks: Partial<DestinationsEvents>;
  private sweeper: NodeJS.Timeout | undefined;

  constructor(clock: Clock, opts: DestinationsOptions, hooks: Partial<DestinationsEvents> = {}) {
    this.clock = clock;
    this.opts = opts;
    this.hooks = hooks;
    this.sweeper = setInterval(() => this.sweep(), Math.min(60_000, opts.evictAfterMs)).unref();
  }

  get(key: string, name: string, settings: Settings, critical: boolean): DestinationRuntime {
    let rt = this.map.get(key);
    if (!rt) {
      const fp = fingerprint(resilienceOf(settings));
      rt = {
        key,
        name,
        critical,
        breaker: new Breaker(key, settings.circuitBreaker),
        budget: new RetryBudget(
          settings.retries.budget.ratio,
          settings.retries.budget.minPerSecond,
          this.clock,
        ),
        agent: new Agent({ keepAlive: true, timeout: this.opts.agentIdleMs, scheduling: 'lifo' }),
        inFlight: 0,
        lastUsed: this.clock.now(),
        settings,
        resilienceFingerprint: fp,
      };
      this.map.set(key, rt);
      this.hooks.created?.(rt);
    } else if (rt.settings !== settings) {
      rt.settings = settings;
      rt.name = name;
      rt.critical = critical;
      const fp = fingerprint(resilienceOf(settings));
      if (fp !== rt.resilienceFingerprint) {
        const old = rt.breaker;
        rt.breaker = new Breaker(key, settings.circuitBreaker);
        rt.budget = new RetryBudget(
          settings.retries.budget.ratio,
          settings.retries.budget.minPerSecond,
          this.clock,
        );
        rt.resilienceFingerprint = fp;
        this.hooks.breakerReplaced?.(rt, old);
        old.shutdown();
      }
    }
    rt.lastUsed = this.clock.now();
    return rt;
  }

  all(): IterableIterator<DestinationRuntime> {
    return this.map.values();
  }

  /** Forgets idle upstreams so a pod talking to many hosts under `defaults` does not grow without bound. */
  sweep(): void {
    const now = this.clock.now();
    for (const [key, rt] of this.map) {
      if (rt.inFlight === 0 && rt.breaker.state === 'closed' && now - rt.lastUsed > this.opts.evictAfterMs) {
        this.map.delete(key);
        rt.agent.destroy();
        rt.breaker.shutdown();
        this.hooks.evicted?.(rt);
      }
    }
  }

  close(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
    for (const rt of this.map.values()) {
      rt.agent.destroy();
      rt.breaker.shutdown();
    }
    this.map.clear();
  }
}
