// Spans for the data path, made by hand: a CLIENT span per request (child of the app's traceparent), a child per try, events for backoff and breaker decisions.

import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  defaultTextMapGetter,
  defaultTextMapSetter,
  trace,
  type Attributes,
  type Context,
  type Span,
} from '@opentelemetry/api';
import {
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_REQUEST_RESEND_COUNT,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_URL_FULL,
} from '@opentelemetry/semantic-conventions';
import type { Observer, RequestRecord, TryRecord } from '../proxy/observer.ts';
import { safeUrl, TRACE_ID_SLOT } from './request-info.ts';
import type { Tracing } from './tracing.ts';

/** Tether's own attribute and event names, next to the semantic-convention ones. */
export const SPAN_NAMES = {
  destination: 'tether.destination',
  attempts: 'tether.attempts',
  retryDisabled: 'tether.retry.disabled',
  requestBodySize: 'http.request.body.size',
  responseBodySize: 'http.response.body.size',
  backoffEvent: 'tether.backoff',
  backoffMs: 'tether.backoff.ms',
  retryReason: 'tether.retry.reason',
  retrySkippedEvent: 'tether.retry_skipped',
  retrySkippedReason: 'tether.retry.skipped_reason',
  rejectedEvent: 'tether.breaker_rejected',
} as const;

const SLOT = Symbol('tether.spans');

interface SpanState {
  span: Span;
  ctx: Context;
  /** False when the sampler said no: then no try spans, attributes or events are made, only context is passed on. */
  recording: boolean;
  tryCtx?: Context | undefined;
  trySpan?: Span | undefined;
  rejected?: boolean;
}

/** error.type per the conventions: Tether's word when it failed the request, else the status code for 4xx/5xx. */
function errorType(word: string | undefined, status: number | undefined): string | undefined {
  if (word) return word;
  if (status !== undefined && status >= 400) return String(status);
  return undefined;
}

/** Methods the conventions know; anything else is recorded as _OTHER so span names stay low-cardinality. */
const KNOWN_METHODS = new Set([
  'GET',
  'HEAD',
  'POST',
  'PUT',
  'DELETE',
  'CONNECT',
  'OPTIONS',
  'TRACE',
  'PATCH',
]);

function methodOf(r: RequestRecord): string {
  return KNOWN_METHODS.has(r.method) ? r.method : '_OTHER';
}

/** `{method}` as the conventions name client spans without a URL template; `HTTP` for unknown methods. */
function spanName(r: RequestRecord): string {
  return KNOWN_METHODS.has(r.method) ? r.method : 'HTTP';
}

/** Error messages may quote the app's request-target; its query string stays out of the span. */
function scrub(message: string): string {
  return message.replace(/\?[^\s"']+/g, '?<query removed>');
}

function parentOf(r: RequestRecord, tracing: Tracing): Context {
  const h = r.headers;
  // Most requests carry no trace context: skip the propagator entirely.
  if (!h || h.traceparent === undefined) return ROOT_CONTEXT;
  return tracing.propagator.extract(ROOT_CONTEXT, h, defaultTextMapGetter);
}

function endpointAttributes(r: RequestRecord): Attributes {
  const method = methodOf(r);
  const a: Attributes = { [ATTR_HTTP_REQUEST_METHOD]: method };
  if (method === '_OTHER') a['http.request.method_original'] = r.method;
  const d = r.plan?.destination;
  if (d) {
    a[ATTR_SERVER_ADDRESS] = d.host;
    a[ATTR_SERVER_PORT] = d.port;
  }
  const url = safeUrl(r);
  if (url) a[ATTR_URL_FULL] = url;
  return a;
}

export function spanObserver(tracing: Tracing): Observer {
  const { tracer } = tracing;

  const start = (r: RequestRecord, startTime?: number): SpanState => {
    const parent = parentOf(r, tracing);
    const span = tracer.startSpan(
      spanName(r),
      { kind: SpanKind.CLIENT, ...(startTime ? { startTime } : {}) },
      parent,
    );
    const recording = span.isRecording();
    if (recording) {
      span.setAttributes(endpointAttributes(r));
      if (r.plan) span.setAttribute(SPAN_NAMES.destination, r.plan.name);
      if (r.plan?.retry.disabledBecause)
        span.setAttribute(SPAN_NAMES.retryDisabled, r.plan.retry.disabledBecause);
    }
    const st: SpanState = { span, ctx: trace.setSpan(parent, span), recording };
    r.slots.set(SLOT, st);
    r.slots.set(TRACE_ID_SLOT, span.spanContext().traceId);
    return st;
  };

  const state = (r: RequestRecord): SpanState | undefined => r.slots.get(SLOT) as SpanState | undefined;

  const addRejection = (st: SpanState, word: string): void => {
    if (st.rejected || !st.recording) return;
    st.rejected = true;
    st.span.addEvent(SPAN_NAMES.rejectedEvent, { [ATTR_ERROR_TYPE]: word });
  };

  return {
    planned(r) {
      start(r);
    },

    tryStarted(r, t) {
      const st = state(r);
      if (!st?.recording) return;
      const span = tracer.startSpan(
        `${spanName(r)} try ${t.n}`,
        { kind: SpanKind.CLIENT, attributes: endpointAttributes(r) },
        st.ctx,
      );
      if (t.n > 1) span.setAttribute(ATTR_HTTP_REQUEST_RESEND_COUNT, t.n - 1);
      st.trySpan = span;
      st.tryCtx = trace.setSpan(st.ctx, span);
    },

    injectHeaders(r, _t, headers) {
      const st = state(r);
      if (!st) return;
      // Unsampled requests still pass the trace id on, flagged unsampled, so the upstream keeps the app's decision.
      tracing.propagator.inject(st.tryCtx ?? st.ctx, headers, defaultTextMapSetter);
    },

    tryEnded(r, t: TryRecord) {
      const st = state(r);
      const span = st?.trySpan;
      if (!st || !span) return;
      if (t.status !== undefined) span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, t.status);
      const err = errorType(t.error, t.status);
      if (err) {
        span.setAttribute(ATTR_ERROR_TYPE, err);
        span.setStatus({ code: SpanStatusCode.ERROR });
      }
      span.end();
      st.trySpan = undefined;
      st.tryCtx = undefined;
    },

    backoff(r, delayMs, reason) {
      const st = state(r);
      if (!st?.recording) return;
      st.span.addEvent(SPAN_NAMES.backoffEvent, {
        [SPAN_NAMES.backoffMs]: delayMs,
        [SPAN_NAMES.retryReason]: reason,
      });
    },

    retrySkipped(r, reason) {
      const st = state(r);
      if (!st?.recording) return;
      st.span.addEvent(SPAN_NAMES.retrySkippedEvent, { [SPAN_NAMES.retrySkippedReason]: reason });
    },

    rejected(r, word) {
      const st = state(r);
      if (st) addRejection(st, word);
    },

    requestEnded(r) {
      // A request refused before a plan existed (bad_request) still gets its span, so the app's trace shows why.
      const st = state(r) ?? start(r, r.startedAtWall);
      if (!st.recording) {
        st.span.end();
        return;
      }
      // The breaker fails fast before any try; the stack names it with the word alone.
      if (r.error === 'circuit_open' || r.error === 'overloaded') addRejection(st, r.error);
      st.trySpan?.end();
      const span = st.span;
      if (r.status !== undefined) span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, r.status);
      span.setAttribute(SPAN_NAMES.attempts, r.attempts);
      if (r.bytesOut > 0) span.setAttribute(SPAN_NAMES.requestBodySize, r.bytesOut);
      if (r.bytesIn > 0) span.setAttribute(SPAN_NAMES.responseBodySize, r.bytesIn);
      const err = errorType(r.error, r.status);
      if (err) {
        span.setAttribute(ATTR_ERROR_TYPE, err);
        span.setStatus({
          code: SpanStatusCode.ERROR,
          ...(r.error && r.errorMessage ? { message: scrub(r.errorMessage) } : {}),
        });
      }
      span.end();
    },
  };
}
