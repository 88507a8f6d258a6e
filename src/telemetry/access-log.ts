// The access log: one JSON line per finished request, built from named fields only — never headers, cookies or query strings.

import type { Observer, RequestRecord } from '../proxy/observer.ts';
import type { Logger } from './log.ts';
import { NO_DESTINATION } from './metrics.ts';
import { pathOnly, traceIdOf } from './request-info.ts';

/** The line for one request; field names are part of the documented log format (README, "Access log"). */
export function accessLine(r: RequestRecord): Record<string, unknown> {
  const d = r.plan?.destination;
  return {
    destination: r.plan?.name ?? NO_DESTINATION,
    authority: d?.authority ?? null,
    method: r.method,
    path: d && !r.tunnel ? pathOnly(d.path) : null,
    status: r.status ?? null,
    error: r.error ?? null,
    attempts: r.attempts,
    durationMs: r.endedAt === undefined ? null : Math.round((r.endedAt - r.startedAt) * 10) / 10,
    bytesIn: r.bytesIn,
    bytesOut: r.bytesOut,
    traceId: traceIdOf(r) ?? null,
  };
}

export function accessLogObserver(log: Logger): Observer {
  return {
    requestEnded(r) {
      log.info(accessLine(r), 'request');
    },
  };
}
