// Owns the Prometheus metrics (prom-client, a registry per sidecar): the request observer, breaker and policy subscriptions, and the gauges read at scrape time.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { TIMEOUT_WORDS } from '../errors/words.ts';
import type { PolicyStore } from '../policy/store.ts';
import type { DestinationRuntime } from '../proxy/destinations.ts';
import type { Observer, RequestRecord } from '../proxy/observer.ts';
import type { BreakerState } from '../resilience/breaker.ts';
import type { DropReason } from './trace-config.ts';

/** The label for requests refused before any destination was known (bad_request, destination_not_allowed). */
export const NO_DESTINATION = 'none';
const NO_ERROR = 'none';
const BREAKER_STATES: readonly BreakerState[] = ['closed', 'half-open', 'open'];
/** RFC 9110 safe methods: what a retry or a cache may repeat. */
const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);

/**
 * Seconds. From a 1ms local hop to the 5-minute streams Tether must not cut; the 15s and 30s
 * bounds sit on the default per-try and common total timeouts, so timeouts show as a step.
 */
const DURATION_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60, 300,
];

export function methodClass(r: RequestRecord): 'read' | 'write' | 'tunnel' {
  if (r.tunnel) return 'tunnel';
  return READ_METHODS.has(r.method) ? 'read' : 'write';
}

const destinationOf = (r: RequestRecord): string => r.plan?.name ?? NO_DESTINATION;

const SLOT = Symbol('tether.metrics');

export interface MetricsSources {
  store: PolicyStore;
  destinations: () => Iterable<DestinationRuntime>;
}

/**
 * Process metrics (CPU, RSS, heap, event-loop lag, GC) are collected once per process: several
 * sidecars in one test process must not each start GC observers and loop monitors.
 */
let processRegistry: Registry | undefined;
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

export class Metrics {
  readonly registry = new Registry();

  private readonly requests = new Counter({
    name: 'tether_requests_total',
    help: 'Requests Tether finished, by policy destination, method class (read, write, tunnel), final status and Tether error word ("none" when Tether did not fail it).',
    labelNames: ['destination', 'method_class', 'status', 'error'] as const,
    registers: [this.registry],
  });

  private readonly duration = new Histogram({
    name: 'tether_request_duration_seconds',
    help: 'Time from the app\u2019s request arriving to the response being complete or aborted, all tries and backoff included.',
    labelNames: ['destination', 'method_class'] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });

  private readonly tries = new Counter({
    name: 'tether_tries_total',
    help: 'Tries sent upstream (first tries and retries), by the status the upstream answered ("0" if none) and the error word of the try.',
    labelNames: ['destination', 'status', 'error'] as const,
    registers: [this.registry],
  });

  private readonly retries = new Counter({
    name: 'tether_retries_total',
    help: 'Retries Tether decided to make, by what caused them (an error word or an upstream status).',
    labelNames: ['destination', 'reason'] as const,
    registers: [this.registry],
  });

  private readonly timeouts = new Counter({
    name: 'tether_timeouts_total',
    help: 'Timeouts that fired, by kind: connect_timeout, response_timeout, idle_timeout, deadline_exceeded.',
    labelNames: ['destination', 'kind'] as const,
    registers: [this.registry],
  });

  private readonly transitions = new Counter({
    name: 'tether_breaker_transitions_total',
    help: 'Circuit breaker state changes, by the state entered.',
    labelNames: ['destination', 'to'] as const,
    registers: [this.registry],
  });

  private readonly reloads = new Counter({
    name: 'tether_policy_reloads_total',
    help: 'Policy loads, by result: applied (now in force) or rejected (invalid; the previous policy stays).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  private readonly policyInfo = new Gauge({
    name: 'tether_policy_info',
    help: 'The policy in force: always 1, labelled with its version (content hash) and source.',
    labelNames: ['version', 'source'] as const,
    registers: [this.registry],
  });

  private readonly spansDropped = new Counter({
    name: 'tether_spans_dropped_total',
    help: 'Spans that never reached the collector: queue_full (the bounded span queue was full) or export_failed (the collector was unreachable or refused them).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  private readonly logDropped = new Counter({
    name: 'tether_log_lines_dropped_total',
    help: 'Log lines (access and process) dropped because stdout could not keep up and the bounded log buffer was full.',
    registers: [this.registry],
  });

  constructor(src: MetricsSources) {
    const { store, destinations } = src;
    new Gauge({
      name: 'tether_breaker_state',
      help: 'Upstreams of a destination whose circuit breaker is in each state (closed, half-open, open); 1 or 0 for a destination that matches one host.',
      labelNames: ['destination', 'state'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        const counts = new Map<string, Record<BreakerState, number>>();
        for (const rt of destinations()) {
          const c = counts.get(rt.name) ?? { closed: 0, 'half-open': 0, open: 0 };
          c[rt.breaker.state]++;
          counts.set(rt.name, c);
        }
        for (const [destination, c] of counts) {
          for (const state of BREAKER_STATES) this.set({ destination, state }, c[state]);
        }
      },
    });
    new Gauge({
      name: 'tether_requests_in_flight',
      help: 'Requests being proxied right now (waiting for, or streaming, a response), by destination.',
      labelNames: ['destination'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        const sums = new Map<string, number>();
        for (const rt of destinations()) sums.set(rt.name, (sums.get(rt.name) ?? 0) + rt.inFlight);
        for (const [destination, n] of sums) this.set({ destination }, n);
      },
    });

    const applied = (source: string, version: string | null): void => {
      this.reloads.inc({ result: 'applied' });
      this.policyInfo.reset();
      if (version !== null) this.policyInfo.set({ version, source }, 1);
    };
    // The first load happened before metrics existed: count it so "applied" starts at 1.
    if (store.loaded) applied(store.status().source, store.status().version);
    store.on('applied', (policy, source) => applied(source, policy.version));
    store.on('rejected', () => this.reloads.inc({ result: 'rejected' }));
  }

  /** Subscribes to a breaker the data path created, so transitions are counted where they happen. */
  watchBreaker(rt: DestinationRuntime): void {
    // rt.name is read at event time: a policy edit may rename the destination an upstream belongs to.
    rt.breaker.on('state', (to) => this.transitions.inc({ destination: rt.name, to }));
  }

  spanDropped(reason: DropReason, n: number): void {
    this.spansDropped.inc({ reason }, n);
  }

  logLinesDropped(n: number): void {
    this.logDropped.inc(n);
  }

  readonly observer: Observer = {
    tryEnded: (r, t) => {
      const destination = destinationOf(r);
      this.tries.inc({ destination, status: String(t.status ?? 0), error: t.error ?? NO_ERROR });
      if (t.error && TIMEOUT_WORDS.has(t.error)) this.timeouts.inc({ destination, kind: t.error });
      r.slots.set(SLOT, t.error);
    },
    backoff: (r, _ms, reason) => {
      this.retries.inc({ destination: destinationOf(r), reason });
    },
    requestEnded: (r) => {
      const destination = destinationOf(r);
      const method_class = methodClass(r);
      const error = r.error ?? NO_ERROR;
      this.requests.inc({ destination, method_class, status: String(r.status ?? 0), error });
      if (r.endedAt !== undefined)
        this.duration.observe({ destination, method_class }, (r.endedAt - r.startedAt) / 1000);
      // A timeout outside the last try (deadline during backoff, idle while streaming the body) is counted here, once.
      if (r.error && TIMEOUT_WORDS.has(r.error) && r.slots.get(SLOT) !== r.error) {
        this.timeouts.inc({ destination, kind: r.error });
      }
    },
  };

  /** The exposition text: this sidecar's metrics, then the process's. */
  async text(): Promise<string> {
    return (await this.registry.metrics()) + (await processMetrics().metrics());
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
