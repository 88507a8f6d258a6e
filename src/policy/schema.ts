// The TrafficPolicy shape: the document types users write, the resolved settings the data path reads, and Tether's built-in defaults with the reason for each.

export const API_VERSION = 'tether.io/v1alpha1';
export const KIND = 'TrafficPolicy';

/** Conditions under which a failed try may be retried (retries.on). */
export const NAMED_RETRY_CONDITIONS = [
  'connect-failure', // connect_timeout, connection_refused, dns_failure: nothing reached the upstream
  'connection-reset', // connection_reset and protocol_error
  'response-timeout', // response_timeout of one try (Linkerd retries these too)
  'gateway-error', // 502, 503, 504 from the upstream
  '5xx', // any 5xx from the upstream
] as const;
export type NamedRetryCondition = (typeof NAMED_RETRY_CONDITIONS)[number];

export interface Timeouts {
  connectMs: number;
  /** Per try; null = no per-try bound. */
  responseHeadersMs: number | null;
  /** No bytes either way; null = off. */
  idleMs: number | null;
  /** All tries and backoff; null = no deadline (long streams). */
  totalMs: number | null;
}

export interface RetryPolicy {
  /** Extra tries after the first. */
  attempts: number;
  on: ReadonlySet<NamedRetryCondition>;
  statuses: ReadonlySet<number>;
  backoff: { baseMs: number; maxMs: number };
  budget: { ratio: number; minPerSecond: number };
  maxBodyBytes: number;
  unsafeMethods: boolean;
}

export interface BreakerPolicy {
  enabled: boolean;
  failureRatio: number;
  minimumRequests: number;
  windowMs: number;
  openForMs: number;
  maxConcurrent: number;
}

export interface Settings {
  timeouts: Timeouts;
  retries: RetryPolicy;
  circuitBreaker: BreakerPolicy;
}

export interface HostMatch {
  /** Lower-case; "*.example.com" matches any name ending in ".example.com". */
  host: string;
  port: number | null;
}

export interface DestinationRule {
  name: string;
  match: HostMatch;
  settings: Settings;
  critical: boolean;
}

export type Outbound = 'allowAny' | 'registryOnly';

/** What a policy document says, after validation, before defaults are filled in: every field optional. */
export interface SettingsSpec {
  timeouts?: Partial<Timeouts>;
  retries?: Partial<Omit<RetryPolicy, 'backoff' | 'budget'>> & {
    backoff?: Partial<RetryPolicy['backoff']>;
    budget?: Partial<RetryPolicy['budget']>;
  };
  circuitBreaker?: Partial<BreakerPolicy>;
}

export interface DestinationSpec extends SettingsSpec {
  name: string;
  match: HostMatch;
  critical?: boolean;
}

export interface PolicySpec {
  name: string;
  outbound?: Outbound;
  defaults?: SettingsSpec;
  destinations: DestinationSpec[];
}

/**
 * Tether's defaults when a policy says nothing. Chosen to match what Envoy and Linkerd users expect,
 * and to never cut a healthy stream.
 */
export const BUILTIN_DEFAULTS: Settings = Object.freeze({
  timeouts: {
    connectMs: 1000, // Linkerd's outbound connect timeout; Envoy's 5s hides dead pods for too long
    responseHeadersMs: 15_000, // Envoy's route timeout default, applied per try
    idleMs: 300_000, // Envoy's stream_idle_timeout: long enough for quiet SSE streams
    totalMs: null, // no default deadline: a total cuts healthy streams (istio#55831, linkerd2#12964)
  },
  retries: {
    attempts: 0, // off unless asked: retrying POST by default double-charges (istio#13851)
    on: new Set<NamedRetryCondition>(['connect-failure', 'connection-reset', 'gateway-error']),
    statuses: new Set<number>(),
    backoff: { baseMs: 25, maxMs: 250 }, // Envoy and Linkerd
    budget: { ratio: 0.2, minPerSecond: 10 }, // Linkerd's retry budget
    maxBodyBytes: 65_536, // Linkerd never retries bodies over 64 KiB
    unsafeMethods: false,
  },
  circuitBreaker: {
    enabled: true,
    failureRatio: 0.5, // opossum's 50%
    minimumRequests: 20, // no verdict on a handful of requests
    windowMs: 10_000, // opossum's rolling window
    openForMs: 30_000, // opossum's reset timeout
    maxConcurrent: 1000,
  },
});
