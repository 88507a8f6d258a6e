// Stage 2, policy lookup: the one place that decides a request's deadline, per-try limits, retry plan and breaker key; later stages only enforce.

import type { IncomingHttpHeaders } from 'node:http';
import { TetherError } from '../../errors/words.ts';
import type { Matcher } from '../../policy/match.ts';
import type { DestinationRule, NamedRetryCondition, Settings } from '../../policy/schema.ts';
import type { TryLimits } from '../upstream/forward.ts';
import type { Destination } from './identify.ts';

export const TIMEOUT_HEADER = 'x-tether-timeout-ms';

/** RFC 9110 §9.2.2: repeating these has the same effect as sending them once. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

export type BodyPlan =
  | { kind: 'none' }
  | { kind: 'buffer'; bytes: number } // known length within maxBodyBytes: read once, replay on every try
  | { kind: 'stream'; why: string }; // sent once; the request is never retried

export interface RetryPlan {
  /** Total tries including the first. */
  maxTries: number;
  on: ReadonlySet<NamedRetryCondition>;
  statuses: ReadonlySet<number>;
  /** Whether the request may be retried after its bytes may have reached the upstream. */
  afterSend: boolean;
  backoff: { baseMs: number; maxMs: number };
  /** Why retries are off for this request, when the policy asked for them. */
  disabledBecause?: string;
}

export interface RequestPlan {
  destination: Destination;
  rule: DestinationRule | null;
  /** Policy destination name, or "default": the label in metrics and logs. */
  name: string;
  settings: Settings;
  /** ms from the request's arrival; null = no deadline. */
  deadlineMs: number | null;
  /** Where the deadline came from, for the message when it fires. */
  deadlineFrom: 'timeouts.total' | 'x-tether-timeout-ms' | null;
  perTry: TryLimits;
  retry: RetryPlan;
  body: BodyPlan;
  /** Breakers, budgets and connection pools are per upstream host:port. */
  key: string;
}

function bodyPlan(headers: IncomingHttpHeaders, max: number): BodyPlan {
  const te = headers['transfer-encoding'];
  const cl = headers['content-length'];
  if (te !== undefined) return { kind: 'stream', why: 'the body has no declared length (chunked)' };
  if (cl === undefined) return { kind: 'none' };
  const n = Number(cl);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new TetherError('bad_request', `content-length "${cl}" is not a byte count`);
  if (n === 0) return { kind: 'none' };
  if (n > max) return { kind: 'stream', why: `the body (${n} bytes) exceeds retries.maxBodyBytes (${max})` };
  return { kind: 'buffer', bytes: n };
}

function appDeadline(headers: IncomingHttpHeaders): number | undefined {
  const raw = headers[TIMEOUT_HEADER];
  if (raw === undefined) return undefined;
  const v = Array.isArray(raw) ? raw[0] : raw;
  if (v === undefined || !/^\d{1,9}$/.test(v.trim()) || Number(v) === 0) {
    throw new TetherError(
      'bad_request',
      `${TIMEOUT_HEADER}: "${String(v)}" must be a whole number of milliseconds above 0`,
    );
  }
  return Number(v);
}

export function decide(
  destination: Destination,
  method: string,
  headers: IncomingHttpHeaders,
  matcher: Matcher,
): RequestPlan {
  const { rule, settings } = matcher.lookup(destination.host, destination.port);
  if (!rule && matcher.policy.outbound === 'registryOnly') {
    throw new TetherError(
      'destination_not_allowed',
      `${destination.authority} is not named in the policy and spec.outbound is registryOnly: add it to spec.destinations`,
      { destination: destination.authority },
    );
  }
  const t = settings.timeouts;
  const fromApp = appDeadline(headers);
  // The app may only shorten the policy's deadline, never extend it.
  const useApp = fromApp !== undefined && (t.totalMs === null || fromApp < t.totalMs);
  const deadlineMs = useApp ? fromApp : t.totalMs;
  const r = settings.retries;
  const body = method === 'CONNECT' ? ({ kind: 'none' } as const) : bodyPlan(headers, r.maxBodyBytes);
  const retry: RetryPlan = {
    maxTries: r.attempts + 1,
    on: r.on,
    statuses: r.statuses,
    afterSend: IDEMPOTENT.has(method) || r.unsafeMethods,
    backoff: r.backoff,
  };
  if (r.attempts > 0 && body.kind === 'stream') {
    retry.maxTries = 1;
    retry.disabledBecause = body.why;
  }
  return {
    destination,
    rule,
    name: rule?.name ?? 'default',
    settings,
    deadlineMs,
    deadlineFrom: deadlineMs === null ? null : useApp ? 'x-tether-timeout-ms' : 'timeouts.total',
    perTry: { connectMs: t.connectMs, responseHeadersMs: t.responseHeadersMs, idleMs: t.idleMs },
    retry,
    body,
    key: destination.authority,
  };
}
