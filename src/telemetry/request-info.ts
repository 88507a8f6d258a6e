// What telemetry may say about a request: the URL without userinfo or query, and the trace id — shared by spans and the access log.

import type { RequestRecord } from '../proxy/observer.ts';

/** Where the span observer leaves the trace id of Tether's span, for the access log. */
export const TRACE_ID_SLOT = Symbol('tether.traceId');

export function pathOnly(target: string): string {
  const q = target.search(/[?#]/);
  return q === -1 ? target : target.slice(0, q);
}

/** The part of the URL that is safe to record: scheme, authority and path; never userinfo or the query. */
export function safeUrl(r: RequestRecord): string | undefined {
  const d = r.plan?.destination;
  if (!d || r.tunnel) return undefined;
  return `http://${d.authority}${pathOnly(d.path)}`;
}

const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}/;

/** Tether's span's trace id, else the app's from its traceparent (tracing off), else undefined. */
export function traceIdOf(r: RequestRecord): string | undefined {
  const own = r.slots.get(TRACE_ID_SLOT);
  if (typeof own === 'string') return own;
  const tp = r.headers?.traceparent;
  if (typeof tp !== 'string') return undefined;
  return TRACEPARENT.exec(tp.trim())?.[1];
}
