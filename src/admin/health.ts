// Liveness and readiness: liveness is the proxy itself; readiness is policy, listener, drain and the breakers of critical destinations.

import type { Route } from './server.ts';
import { sendJson } from './server.ts';

export interface HealthSources {
  policyLoaded(): boolean;
  listenerBound(): boolean;
  draining(): boolean;
  /** Critical destinations whose breaker is open (half-open counts as not yet healed). */
  openCriticalBreakers(): string[];
}

export function readiness(s: HealthSources): { ready: boolean; reasons: string[] } {
  const reasons: string[] = [];
  if (!s.policyLoaded()) reasons.push('no policy loaded yet');
  if (!s.listenerBound()) reasons.push('egress listener is not bound');
  if (s.draining()) reasons.push('draining: shutting down');
  for (const d of s.openCriticalBreakers())
    reasons.push(`circuit breaker open for critical destination ${d}`);
  return { ready: reasons.length === 0, reasons };
}

export function healthRoutes(s: HealthSources): Route[] {
  return [
    {
      method: 'GET',
      path: '/livez',
      // Never reflects upstreams: a restart cannot heal them, and restarting every pod at once makes it worse.
      handler: (_req, res) => sendJson(res, s.listenerBound() || s.draining() ? 200 : 503, { live: true }),
    },
    {
      method: 'GET',
      path: '/readyz',
      handler: (_req, res) => {
        const r = readiness(s);
        sendJson(res, r.ready ? 200 : 503, r);
      },
    },
  ];
}
