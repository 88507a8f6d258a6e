// The seam between the data path and telemetry: stages report what happened here, and spans, metrics and logs subscribe.

import type { IncomingHttpHeaders } from 'node:http';
import type { ErrorWord } from '../errors/words.ts';
import type { RequestPlan } from './stages/decide.ts';

/** What one request did, filled in as it travels the stack and read by observers at the end. */
export interface RequestRecord {
  readonly method: string;
  /** Absolute start, for logs. */
  readonly startedAtWall: number;
  /** Clock time at arrival. */
  readonly startedAt: number;
  plan?: RequestPlan;
  /** Tries sent upstream (0 if none was). */
  attempts: number;
  /** Final status sent to the app (499 if it went away first). */
  status?: number;
  /** The Tether error word when Tether failed the request or aborted its stream. */
  error?: ErrorWord;
  errorMessage?: string;
  bytesIn: number;
  bytesOut: number;
  /** Clock time when the response was complete or aborted. */
  endedAt?: number;
  tunnel: boolean;
  /** The app's request headers (HTTP requests only): observers read trace context here and must not modify them. */
  headers?: IncomingHttpHeaders;
  /** Arbitrary per-request state an observer keeps (a span), keyed by the observer. */
  readonly slots: Map<symbol, unknown>;
}

export interface TryRecord {
  readonly n: number;
  readonly startedAt: number;
  status?: number;
  error?: ErrorWord;
}

export interface Observer {
  requestStarted?(r: RequestRecord): void;
  /** The plan is known: destination and policy decided. */
  planned?(r: RequestRecord): void;
  tryStarted?(r: RequestRecord, t: TryRecord): void;
  tryEnded?(r: RequestRecord, t: TryRecord): void;
  backoff?(r: RequestRecord, delayMs: number, reason: string): void;
  retrySkipped?(r: RequestRecord, reason: string): void;
  rejected?(r: RequestRecord, word: 'circuit_open' | 'overloaded'): void;
  requestEnded?(r: RequestRecord): void;
  /** Headers for the upstream request of this try (trace context). */
  injectHeaders?(r: RequestRecord, t: TryRecord, headers: Record<string, string>): void;
}

/** Fans out to several observers; a throwing observer must never break a request. */
export function combineObservers(list: Observer[], onError: (err: unknown) => void): Required<Observer> {
  const call =
    <K extends keyof Observer>(k: K) =>
    (...args: Parameters<Required<Observer>[K]>): void => {
      for (const o of list) {
        const fn = o[k] as ((...a: unknown[]) => void) | undefined;
        if (!fn) continue;
        try {
          fn.apply(o, args);
        } catch (err) {
          onError(err);
        }
      }
    };
  return {
    requestStarted: call('requestStarted'),
    planned: call('planned'),
    tryStarted: call('tryStarted'),
    tryEnded: call('tryEnded'),
    backoff: call('backoff'),
    retrySkipped: call('retrySkipped'),
    rejected: call('rejected'),
    requestEnded: call('requestEnded'),
    injectHeaders: call('injectHeaders'),
  };
}
