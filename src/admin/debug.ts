// Debug pages for humans on the pod's loopback: each upstream's live state and recent behaviour, and the policy in force in the notation users write.

import { stringify } from 'yaml';
import { formatDuration } from '../policy/duration.ts';
import type { EffectivePolicy } from '../policy/resolve.ts';
import { API_VERSION, KIND, type Settings } from '../policy/schema.ts';
import type { PolicyStore } from '../policy/store.ts';
import { formatProblem } from '../policy/validate.ts';
import type { DestinationRuntime } from '../proxy/destinations.ts';
import type { RecentStats } from '../telemetry/recent.ts';
import type { Route } from './server.ts';
import { sendJson } from './server.ts';

export interface DebugSources {
  destinations: () => Iterable<DestinationRuntime>;
  recent: RecentStats;
  store: PolicyStore;
}

/** "0s" is how a policy writes "no bound" for the optional timeouts. */
const off = (ms: number | null): string => (ms === null ? '0s' : formatDuration(ms));

function settingsNotation(s: Settings): Record<string, unknown> {
  const t = s.timeouts;
  const r = s.retries;
  const b = s.circuitBreaker;
  return {
    timeouts: {
      connect: formatDuration(t.connectMs),
      responseHeaders: off(t.responseHeadersMs),
      idle: off(t.idleMs),
      total: off(t.totalMs),
    },
    retries: {
      attempts: r.attempts,
      on: [...r.on, ...[...r.statuses].map(String)],
      backoff: { base: formatDuration(r.backoff.baseMs), max: formatDuration(r.backoff.maxMs) },
      budget: { ratio: r.budget.ratio, minPerSecond: r.budget.minPerSecond },
      maxBodyBytes: r.maxBodyBytes,
      unsafeMethods: r.unsafeMethods,
    },
    circuitBreaker: {
      enabled: b.enabled,
      failureRatio: b.failureRatio,
      minimumRequests: b.minimumRequests,
      window: formatDuration(b.windowMs),
      openFor: formatDuration(b.openForMs),
      maxConcurrent: b.maxConcurrent,
    },
  };
}

/** The effective policy as a TrafficPolicy document: every default filled in, layers merged; `tetherctl validate` accepts it. */
export function policyNotation(p: EffectivePolicy): Record<string, unknown> {
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { name: p.names.join('+') || 'effective' },
    spec: {
      outbound: p.outbound,
      defaults: settingsNotation(p.defaults),
      destinations: p.destinations.map((d) => ({
        name: d.name,
        match: d.match.port === null ? { host: d.match.host } : { host: d.match.host, port: d.match.port },
        critical: d.critical,
        ...settingsNotation(d.settings),
      })),
    },
  };
}

export function destinationsPage(s: DebugSources): unknown {
  const rows = [...s.destinations()]
    .map((rt) => ({
      destination: rt.name,
      upstream: rt.key,
      critical: rt.critical,
      breaker: rt.breaker.state,
      inFlight: rt.inFlight,
      ...s.recent.snapshot(rt.key),
    }))
    .sort((a, b) => a.destination.localeCompare(b.destination) || a.upstream.localeCompare(b.upstream));
  return { destinations: rows };
}

export function policyPage(store: PolicyStore): Record<string, unknown> {
  const st = store.status();
  const policy = store.loaded ? policyNotation(store.current().policy) : null;
  return {
    source: st.source,
    version: st.version,
    appliedAt: st.appliedAt?.toISOString() ?? null,
    lastReloadError: st.lastError
      ? {
          at: st.lastError.at.toISOString(),
          source: st.lastError.source,
          problems: st.lastError.problems.map((p) => formatProblem(p)),
        }
      : null,
    // Set while a source waits for its first sync (readiness reports the same reason).
    pending: st.pending,
    // The source's own state: for the Kubernetes source, each ConfigMap's state, resourceVersion and watch health.
    ...(st.detail !== null ? { detail: st.detail } : {}),
    policy,
  };
}

export function debugRoutes(s: DebugSources): Route[] {
  return [
    {
      method: 'GET',
      path: '/debug/destinations',
      loopbackOnly: true,
      handler: (_req, res) => sendJson(res, 200, destinationsPage(s)),
    },
    {
      method: 'GET',
      path: '/debug/policy',
      loopbackOnly: true,
      handler: (req, res) => {
        const page = policyPage(s.store);
        if (new URL(req.url ?? '/', 'http://admin').searchParams.get('format') !== 'yaml') {
          sendJson(res, 200, page);
          return;
        }
        // The policy alone, ready to save and edit; status goes in comments.
        const head = [`# source: ${String(page.source)}`, `# version: ${String(page.version)}`];
        const body = `${head.join('\n')}\n${page.policy ? stringify(page.policy) : '# no policy loaded\n'}`;
        res.writeHead(200, {
          'content-type': 'application/yaml',
          'content-length': Buffer.byteLength(body),
          'cache-control': 'no-store',
        });
        res.end(body);
      },
    },
  ];
}
