// Stage 5: the retry loop — tries the plan's attempts with full-jitter backoff, within the retry budget and never past the deadline.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { asTetherError } from '../../errors/respond.ts';
import { TetherError } from '../../errors/words.ts';
import { fullJitterBackoff } from '../../resilience/backoff.ts';
import type { RetryBudget } from '../../resilience/budget.ts';
import { sleep, type Clock } from '../../resilience/clock.ts';
import type { Observer, RequestRecord, TryRecord } from '../observer.ts';
import type { Forwarder, UpstreamResponse } from '../upstream/forward.ts';
import { TIMEOUT_HEADER, type RetryPlan } from './decide.ts';
import type { Agent } from 'node:http';

type Outcome = UpstreamResponse | TetherError;

/** Why this outcome may be retried under the plan, or null when it may not. */
export function retryReason(plan: RetryPlan, outcome: Outcome): string | null {
  if (outcome instanceof TetherError) {
    const safe = plan.afterSend || !outcome.requestSent;
    switch (outcome.word) {
      case 'connect_timeout':
      case 'connection_refused':
      case 'dns_failure':
        return plan.on.has('connect-failure') ? outcome.word : null;
      case 'connection_reset':
      case 'protocol_error':
        return plan.on.has('connection-reset') && safe ? outcome.word : null;
      case 'response_timeout':
        return plan.on.has('response-timeout') && safe ? outcome.word : null;
      default:
        return null; // deadline, idle, client gone, breaker: retrying cannot help
    }
  }
  const s = outcome.response.statusCode ?? 0;
  if (!plan.afterSend) return null; // the upstream answered, so a POST reached it: never replay it
  if (plan.statuses.has(s)) return String(s);
  if (plan.on.has('gateway-error') && (s === 502 || s === 503 || s === 504)) return String(s);
  if (plan.on.has('5xx') && s >= 500) return String(s);
  return null;
}

export interface RetryContext {
  req: IncomingMessage;
  res: ServerResponse;
  record: RequestRecord;
  plan: RetryPlan;
  target: {
    host: string;
    port: number;
    authority: string;
    path: string;
    agent: Agent;
    countSent?: (n: number) => void;
  };
  limits: Parameters<Forwarder['send']>[3];
  body: Buffer | undefined;
  deadlineAt: number | null;
  signal: AbortSignal;
  budget: RetryBudget;
  clock: Clock;
  forwarder: Forwarder;
  observer: Required<Observer>;
  random?: () => number;
}

export async function retryLoop(c: RetryContext): Promise<UpstreamResponse> {
  c.budget.recordRequest();
  for (let n = 1; ; n++) {
    const t: TryRecord = { n, startedAt: c.clock.now() };
    c.record.attempts = n;
    c.observer.tryStarted(c.record, t);
    const headers: Record<string, string> = {};
    if (c.deadlineAt !== null) {
      headers[TIMEOUT_HEADER] = String(Math.max(1, Math.ceil(c.deadlineAt - c.clock.now())));
    }
    c.observer.injectHeaders(c.record, t, headers);
    let outcome: Outcome;
    try {
      outcome = await c.forwarder.send(
        c.req,
        c.res,
        { ...c.target, headers, body: c.body },
        c.limits,
        c.signal,
      );
      t.status = outcome.response.statusCode ?? 0;
    } catch (err) {
      outcome = asTetherError(err, c.target.authority);
      t.error = outcome.word;
    }
    c.observer.tryEnded(c.record, t);
    const why = retryReason(c.plan, outcome);
    const give = (): UpstreamResponse => {
      if (outcome instanceof TetherError) throw outcome;
      return outcome;
    };
    if (why === null || n >= c.plan.maxTries) return give();
    if (!c.budget.tryRetry()) {
      c.observer.retrySkipped(c.record, `retry budget exhausted (retries.budget) after ${why}`);
      return give();
    }
    const delay = fullJitterBackoff(n, c.plan.backoff.baseMs, c.plan.backoff.maxMs, c.random);
    if (c.deadlineAt !== null && c.clock.now() + delay >= c.deadlineAt) {
      c.observer.retrySkipped(c.record, `no time left before the deadline for another try after ${why}`);
      return give();
    }
    if (!(outcome instanceof TetherError)) outcome.discard();
    c.observer.backoff(c.record, delay, why);
    await sleep(c.clock, delay, c.signal);
  }
}
