// Owns the OpenTelemetry SDK: one NodeSDK per process with a bounded batch processor, the OTLP/HTTP exporter, the sampler and W3C propagation; nothing else imports the SDK.

import {
  context,
  createNoopMeter,
  propagation,
  trace,
  type Meter,
  type MeterProvider,
  type TextMapPropagator,
  type Tracer,
} from '@opentelemetry/api';
import { ExportResultCode, W3CTraceContextPropagator, type ExportResult } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { defaultResource, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { NodeSDK } from '@opentelemetry/sdk-node';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  type ReadableSpan,
  type Sampler,
  type SpanExporter,
} from '@opentelemetry/sdk-trace';
import type { DropReason, SamplerName, TracingConfig } from './trace-config.ts';

/**
 * The batch processor's bounds (BatchSpanProcessor's defaults, kept explicit): at most 2048 finished
 * spans wait in memory; when the collector is slow or down, further spans are dropped and counted,
 * never queued without bound (opentelemetry-js#4204) and never waited on by a request.
 */
export const SPAN_QUEUE = {
  maxQueueSize: 2048,
  maxExportBatchSize: 512,
  scheduledDelayMillis: 5000,
} as const;

// Incubating semantic-convention names are copied, not imported, as the package asks.
const ATTR_K8S_POD_NAME = 'k8s.pod.name';
const ATTR_K8S_NAMESPACE_NAME = 'k8s.namespace.name';

export interface TracingHooks {
  /** Spans lost before reaching the collector; `error` is the export failure, when there was one. */
  dropped(reason: DropReason, count: number, error?: Error): void;
}

export interface Tracing {
  readonly tracer: Tracer;
  readonly propagator: TextMapPropagator;
  /** Exports what is queued now (tests, and before exit). */
  flush(): Promise<void>;
  /** Flushes and stops the SDK, giving up after `timeoutMs` so a dead collector cannot hold the exit. */
  shutdown(timeoutMs: number): Promise<void>;
}

export function buildSampler(name: SamplerName, ratio: number): Sampler {
  switch (name) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(ratio);
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) });
  }
}

/** Passes batches to the OTLP exporter and reports the spans of every failed export as dropped. */
class CountingExporter implements SpanExporter {
  private readonly inner: SpanExporter;
  private readonly hooks: TracingHooks;

  constructor(inner: SpanExporter, hooks: TracingHooks) {
    this.inner = inner;
    this.hooks = hooks;
  }

  export(spans: ReadableSpan[], done: (r: ExportResult) => void): void {
    this.inner.export(spans, (r) => {
      if (r.code !== ExportResultCode.SUCCESS) this.hooks.dropped('export_failed', spans.length, r.error);
      done(r);
    });
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

/**
 * The batch processor reports queue-full drops only through its self-observability meter
 * (`otel.sdk.processor.span.processed` with `error.type=queue_full`); this provider hands it a
 * meter whose one interesting counter feeds `hooks.dropped` and whose other instruments are no-ops.
 */
function queueDropMeterProvider(hooks: TracingHooks): MeterProvider {
  const noop = createNoopMeter();
  const meter = Object.create(noop) as Meter;
  meter.createCounter = (name, options) => {
    if (name !== 'otel.sdk.processor.span.processed') return noop.createCounter(name, options);
    return {
      add: (n, attrs) => {
        if (attrs?.['error.type'] === 'queue_full') hooks.dropped('queue_full', n);
      },
    };
  };
  return { getMeter: () => meter };
}

let active: Tracing | undefined;

/**
 * Starts the SDK and registers it globally. One per process: the OpenTelemetry API holds a single
 * global tracer provider, so a second start is a bug and fails loudly instead of sending spans to
 * the first one's exporter.
 */
export function startTracing(cfg: TracingConfig, hooks: TracingHooks): Tracing {
  if (active)
    throw new Error('tracing is already started in this process; shut the previous sidecar down first');
  const exporter = new CountingExporter(
    // The URL is explicit; headers, timeout (10s with retries) and compression come from OTEL_EXPORTER_OTLP_*.
    new OTLPTraceExporter({ url: cfg.tracesUrl }),
    hooks,
  );
  const processor = new BatchSpanProcessor({
    exporter,
    ...SPAN_QUEUE,
    selfObsMeterProvider: queueDropMeterProvider(hooks),
  });
  const propagator = new W3CTraceContextPropagator();
  const attrs: Record<string, string> = {};
  if (cfg.podName) attrs[ATTR_K8S_POD_NAME] = cfg.podName;
  if (cfg.namespace) attrs[ATTR_K8S_NAMESPACE_NAME] = cfg.namespace;
  const sdk = new NodeSDK({
    serviceName: cfg.serviceName,
    resource: defaultResource().merge(resourceFromAttributes(attrs)),
    // OTEL_RESOURCE_ATTRIBUTES only: host and process detectors add noise and, for the host id, file reads.
    resourceDetectors: [envDetector],
    sampler: buildSampler(cfg.sampler, cfg.samplerArg),
    spanProcessors: [processor],
    textMapPropagator: propagator,
    // Tether's spans are made by hand in the data path: auto-instrumenting http would double them and their cost.
    instrumentations: [],
    metricReaders: [], // metrics are Prometheus on the admin port
    logRecordProcessors: [], // logs are JSON lines on stdout
  });
  sdk.start();
  const tracer = trace.getTracer('tether', cfg.version);
  let stopped: Promise<void> | undefined;
  const tracing: Tracing = {
    tracer,
    propagator,
    flush: () => processor.forceFlush(),
    shutdown: (timeoutMs) => {
      stopped ??= (async () => {
        let timer: NodeJS.Timeout | undefined;
        const giveUp = new Promise<void>((resolve) => {
          timer = setTimeout(resolve, timeoutMs);
          timer.unref();
        });
        await Promise.race([sdk.shutdown().catch(() => undefined), giveUp]);
        clearTimeout(timer);
        trace.disable();
        propagation.disable();
        context.disable();
        active = undefined;
      })();
      return stopped;
    },
  };
  active = tracing;
  return tracing;
}
