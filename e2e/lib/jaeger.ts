// Owns a real Jaeger v2 for e2e: loopback-only config on free ports, in-memory storage, readiness, trace lookups.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { stringify } from 'yaml';
import { freePorts, onAbnormalExit, spawnManaged, waitUntil } from './proc.ts';
import { assertBinaries, jaegerBin } from './testbin.ts';

export interface JaegerOptions {
  /** Where config and log go. Default: a fresh temp dir, removed on stop unless kept. */
  dir?: string;
  keepDir?: boolean;
  startTimeoutMs?: number;
}

/** A span as the query API (/api/traces) returns it; only the fields tests usually read. */
export interface JaegerSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  processID: string;
  tags: { key: string; type: string; value: unknown }[];
  references?: { refType: string; traceID: string; spanID: string }[];
  startTime: number;
  duration: number;
}

export interface JaegerTrace {
  traceID: string;
  spans: JaegerSpan[];
  processes: Record<string, { serviceName: string; tags: { key: string; value: unknown }[] }>;
}

export interface Jaeger {
  /** Base OTLP/HTTP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT style); traces go to `${it}/v1/traces`. */
  readonly otlpHttpEndpoint: string;
  /** Full URL for trace exports (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT style). */
  readonly otlpTracesUrl: string;
  /** Base of the query HTTP API: /api/services, /api/traces?service=…, /api/traces/<id>. */
  readonly queryUrl: string;
  readonly pid: number;
  readonly logFile: string;
  /** Traces of a service (newest first, as the API orders them). */
  findTraces(service: string, opts?: { limit?: number; lookbackMs?: number }): Promise<JaegerTrace[]>;
  /** A trace by 32-hex id, or undefined if Jaeger does not have it (yet). */
  getTrace(traceId: string): Promise<JaegerTrace | undefined>;
  /** Polls until `predicate` holds for the service's traces (spans arrive asynchronously). */
  waitForTraces(
    service: string,
    predicate: (traces: JaegerTrace[]) => boolean,
    opts?: { timeoutMs?: number },
  ): Promise<JaegerTrace[]>;
  stop(): Promise<void>;
}

async function getJson(url: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: keep the text for the error message
  }
  return { status: res.status, body };
}

export async function startJaeger(opts: JaegerOptions = {}): Promise<Jaeger> {
  assertBinaries(['jaeger']);
  const keepDir = opts.keepDir ?? (process.env['TETHER_E2E_KEEP'] ?? '') !== '';
  const timeoutMs = opts.startTimeoutMs ?? 60_000;
  const dir = resolve(opts.dir ?? mkdtempSync(join(tmpdir(), 'tether-e2e-jaeger-')));
  mkdirSync(dir, { recursive: true });
  const [otlpPort, queryHttpPort, queryGrpcPort] = await freePorts(3);
  if (otlpPort === undefined || queryHttpPort === undefined || queryGrpcPort === undefined)
    throw new Error('no free ports');

  // Only what tests need: OTLP/HTTP in, memory store, query API out. Every listener is named
  // here because the defaults bind 0.0.0.0 on fixed ports (4317, 4318, 16685, 16686, 8888).
  const config = {
    service: {
      extensions: ['jaeger_storage', 'jaeger_query'],
      pipelines: {
        // No batch processor: its flush delay only slows tests down.
        traces: { receivers: ['otlp'], processors: [], exporters: ['jaeger_storage_exporter'] },
      },
      telemetry: {
        // level none: no internal metrics server, which would otherwise claim :8888.
        metrics: { level: 'none' },
        logs: { level: 'info' },
      },
    },
    extensions: {
      jaeger_storage: { backends: { mem: { memory: { max_traces: 100_000 } } } },
      jaeger_query: {
        storage: { traces: 'mem' },
        // On by default in v2: the query service traces itself to localhost:4317 (the stock
        // all-in-one receiver), which here is nobody or someone else, and then spends 10s+
        // retrying that export on shutdown.
        enable_tracing: false,
        http: { endpoint: `127.0.0.1:${queryHttpPort}` },
        grpc: { endpoint: `127.0.0.1:${queryGrpcPort}` },
      },
    },
    receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${otlpPort}` } } } },
    exporters: { jaeger_storage_exporter: { trace_storage: 'mem' } },
  };
  const configPath = join(dir, 'jaeger.yaml');
  writeFileSync(configPath, stringify(config));

  const proc = spawnManaged('jaeger', jaegerBin(), ['--config', configPath], {
    logFile: join(dir, 'jaeger.log'),
  });
  const removeExitHook = onAbnormalExit(() => {
    if (!keepDir) rmSync(dir, { recursive: true, force: true });
  });
  const otlpHttpEndpoint = `http://127.0.0.1:${otlpPort}`;
  const otlpTracesUrl = `${otlpHttpEndpoint}/v1/traces`;
  const queryUrl = `http://127.0.0.1:${queryHttpPort}`;

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= proc
      .stop(10_000)
      .then(() => {
        if (!keepDir) rmSync(dir, { recursive: true, force: true });
      })
      .finally(removeExitHook);
    return stopping;
  };

  try {
    await waitUntil(
      'jaeger query API',
      async () => (await getJson(`${queryUrl}/api/services`)).status === 200,
      {
        timeoutMs,
        proc,
      },
    );
    // An empty export proves the receiver is accepting without storing anything.
    await waitUntil(
      'jaeger OTLP/HTTP receiver',
      async () => {
        const res = await fetch(otlpTracesUrl, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: '{"resourceSpans":[]}',
          signal: AbortSignal.timeout(5_000),
        });
        await res.text();
        return res.ok;
      },
      { timeoutMs, proc },
    );
  } catch (err) {
    await stop();
    throw err;
  }

  const findTraces = async (
    service: string,
    o: { limit?: number; lookbackMs?: number } = {},
  ): Promise<JaegerTrace[]> => {
    const q = new URLSearchParams({ service, limit: String(o.limit ?? 100) });
    if (o.lookbackMs !== undefined) q.set('lookback', `${Math.ceil(o.lookbackMs / 1000)}s`);
    const { status, body } = await getJson(`${queryUrl}/api/traces?${q.toString()}`);
    // An unknown service is an error in some versions and an empty list in others.
    if (status === 404 || status === 400 || status === 500) return [];
    if (status !== 200) throw new Error(`jaeger /api/traces: ${status} ${JSON.stringify(body)}`);
    return ((body as { data?: JaegerTrace[] | null }).data ?? []).filter((t) => t !== null);
  };

  return {
    otlpHttpEndpoint,
    otlpTracesUrl,
    queryUrl,
    pid: proc.pid,
    logFile: proc.logFile,
    findTraces,
    getTrace: async (traceId) => {
      const { status, body } = await getJson(`${queryUrl}/api/traces/${traceId}`);
      if (status === 404) return undefined;
      if (status !== 200) throw new Error(`jaeger /api/traces/${traceId}: ${status} ${JSON.stringify(body)}`);
      return (body as { data?: JaegerTrace[] | null }).data?.[0];
    },
    waitForTraces: async (service, predicate, o = {}) => {
      const deadline = Date.now() + (o.timeoutMs ?? 10_000);
      for (;;) {
        const traces = await findTraces(service);
        if (predicate(traces)) return traces;
        if (Date.now() >= deadline) {
          throw new Error(`jaeger: traces of ${service} never matched (have ${traces.length} traces)`);
        }
        await delay(100);
      }
    },
    stop,
  };
}
