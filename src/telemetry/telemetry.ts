// Assembles the sidecar's telemetry from its settings: metrics, recent-window stats, access log, spans (the SDK loaded only when tracing is on) and breaker logs.

import type { SidecarConfig } from '../config/sidecar.ts';
import { TETHER_VERSION } from '../inject/names.ts';
import type { PolicyStore } from '../policy/store.ts';
import type { DestinationRuntime, DestinationsEvents } from '../proxy/destinations.ts';
import type { Observer } from '../proxy/observer.ts';
import type { Clock } from '../resilience/clock.ts';
import { accessLogObserver } from './access-log.ts';
import { createLogger, stdoutDestination, type Logger } from './log.ts';
import { Metrics } from './metrics.ts';
import { RecentStats } from './recent.ts';
import { tracesUrl, type DropReason } from './trace-config.ts';
import type { Tracing } from './tracing.ts';

/** A collector outage drops spans continuously; one warning a minute says so without flooding the log. */
const DROP_WARNING_EVERY_MS = 60_000;
/** Spans still queued at exit get this long to reach the collector; the drain grace has already been spent. */
const TRACING_SHUTDOWN_MS = 2000;

export interface TelemetryOptions {
  config: SidecarConfig;
  clock: Clock;
  store: PolicyStore;
  destinations: () => Iterable<DestinationRuntime>;
  log: Logger;
  /** Where access lines go; undefined = the process's stdout. */
  accessLog?: Logger | undefined;
  /** True when logs go to the shared stdout destination, whose drops are then counted. */
  stdoutLogs: boolean;
}

export interface Telemetry {
  metrics: Metrics;
  recent: RecentStats;
  tracing: Tracing | undefined;
  /** Spans first (they set the trace id the access log reads), then metrics, stats and the access log. */
  observers: Observer[];
  destinationHooks: Partial<DestinationsEvents>;
  shutdown(): Promise<void>;
}

export async function startTelemetry(o: TelemetryOptions): Promise<Telemetry> {
  const { config, log } = o;
  const metrics = new Metrics({ store: o.store, destinations: o.destinations });
  const recent = new RecentStats(o.clock);
  const observers: Observer[] = [];

  const url = tracesUrl(config.otlpEndpoint, config.otlpTracesEndpoint);
  let tracing: Tracing | undefined;
  if (config.tracingDisabled)
    log.info('tracing disabled (OTEL_SDK_DISABLED): spans are neither made nor exported');
  else if (!url)
    log.info(
      'tracing off: set OTEL_EXPORTER_OTLP_ENDPOINT (or --otlp-endpoint) to send spans to a collector',
    );
  else {
    // Loaded only now: the SDK costs ~400ms of start-up and tens of MB that a pod without tracing should not pay.
    const [{ startTracing }, { spanObserver }] = await Promise.all([
      import('./tracing.ts'),
      import('./spans.ts'),
    ]);
    let lastWarning = -Infinity;
    const since: Record<DropReason, number> = { queue_full: 0, export_failed: 0 };
    tracing = startTracing(
      {
        tracesUrl: url,
        sampler: config.traceSampler,
        samplerArg: config.traceSamplerArg,
        serviceName: config.serviceName,
        podName: config.podName,
        namespace: config.namespace,
        version: TETHER_VERSION,
      },
      {
        dropped: (reason, n, error) => {
          metrics.spanDropped(reason, n);
          since[reason] += n;
          const now = performance.now();
          if (now - lastWarning < DROP_WARNING_EVERY_MS) return;
          lastWarning = now;
          log.warn(
            { collector: url, dropped: { ...since }, error: error?.message },
            'spans dropped: the trace collector is unreachable or too slow',
          );
          since.queue_full = 0;
          since.export_failed = 0;
        },
      },
    );
    observers.push(spanObserver(tracing));
    log.info(
      {
        collector: url,
        sampler: config.traceSampler,
        ratio: config.traceSamplerArg,
        service: config.serviceName,
      },
      'tracing on',
    );
  }

  observers.push(metrics.observer, recent.observer);
  if (config.accessLog === 'on')
    observers.push(accessLogObserver(o.accessLog ?? createLogger('info', 'access', stdoutDestination())));

  let onDrop: ((data: string) => void) | undefined;
  if (o.stdoutLogs) {
    onDrop = (data) => metrics.logLinesDropped(Math.max(1, data.split('\n').length - 1));
    stdoutDestination().on('drop', onDrop);
  }

  const watch = (rt: DestinationRuntime): void => {
    metrics.watchBreaker(rt);
    rt.breaker.on('state', (to, from) => {
      const line = { destination: rt.name, upstream: rt.key, from, to, critical: rt.critical };
      if (to === 'open') log.warn(line, 'circuit breaker opened: failing fast');
      else log.info(line, `circuit breaker ${to}`);
    });
  };

  return {
    metrics,
    recent,
    tracing,
    observers,
    destinationHooks: {
      created: watch,
      breakerReplaced: watch,
      evicted: (rt) => recent.forget(rt.key),
    },
    shutdown: async () => {
      if (onDrop) stdoutDestination().off('drop', onDrop);
      await tracing?.shutdown(TRACING_SHUTDOWN_MS);
    },
  };
}
