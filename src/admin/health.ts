// Liveness, readiness and startup: liveness is the proxy itself; readiness is policy, listener, drain and the breakers of critical destinations; startup is "can carry traffic".

import type { Route } from './server.ts';
import { sendJson } from './server.ts';

export interface HealthSources {
  policyLoaded(): boolean;
  /** Why the policy in force is not yet the configured one (e.g. the first sync from the Kubernetes API), or null. */
  policyPending?(): string | null;
  listenerBound(): boolean;
  draining(): boolean;
  /** Critical destinations whose breaker is open (half-open counts as not yet healed). */
  openCriticalBreakers(): string[];
  /** The event loop's longest recent stall, and the bound past which the proxy counts as hung. */
  loop?: { lagMs(): number; stalled(): boolean; readonly stallMs: number };
}

export function readiness(s: HealthSources): { ready: boolean; reasons: string[] } {
  const reasons: string[] = [];
  if (!s.policyLoaded()) reasons.push('no policy loaded yet');
  const pending = s.policyPending?.();
  if (pending) reasons.push(pending);
  if (!s.listenerBound()) reasons.push('egress listener is not bound');
  if (s.draining()) reasons.push('draining: shutting down');
  for (const d of s.openCriticalBreakers())
    reasons.push(`circuit breaker open for critical destination ${d}`);
  return { ready: reasons.length === 0, reasons };
}

/**
 * Only what a restart can fix: the listener is gone (outside a drain) or the event loop is stalled.
 * Never upstreams — restarting every pod because a dependency is down makes the outage worse.
 */
export function liveness(s: HealthSources): { live: boolean; reasons: string[]; eventLoopLagMs?: number } {
  const reasons: string[] = [];
  // A draining proxy has closed its listener on purpose; killing it would cut the streams it is finishing.
  if (!s.listenerBound() && !s.draining()) reasons.push('egress listener is not accepting connections');
  if (s.loop?.stalled())
    reasons.push(`event loop stalled for ${s.loop.lagMs()}ms (more than ${s.loop.stallMs}ms)`);
  return { live: reasons.length === 0, reasons, ...(s.loop ? { eventLoopLagMs: s.loop.lagMs() } : {}) };
}

export function healthRoutes(s: HealthSources): Route[] {
  // Once started, always started: a startupProbe only gates the app's start, and must not flap with breakers.
  let started = false;
  return [
    {
      method: 'GET',
      path: '/livez',
      handler: (_req, res) => {
        const l = liveness(s);
        sendJson(res, l.live ? 200 : 503, l);
      },
    },
    {
      method: 'GET',
      path: '/readyz',
      handler: (_req, res) => {
        const r = readiness(s);
        sendJson(res, r.ready ? 200 : 503, r);
      },
    },
    {
      method: 'GET',
      path: '/startupz',
      // Independent of upstream health: the app may start as soon as its outbound calls have somewhere to go.
      handler: (_req, res) => {
        started ||= s.policyLoaded() && s.listenerBound();
        const reasons = started
          ? []
          : readiness({ ...s, draining: () => false, openCriticalBreakers: () => [] }).reasons;
        sendJson(res, started ? 200 : 503, { started, reasons });
      },
    },
  ];
}
