// The sidecar's settings: every flag, its environment variable, default and reason; the only reader of process.env for tether-sidecar.

import { LOG_LEVELS } from '../telemetry/log.ts';
import { SAMPLERS } from '../telemetry/trace-config.ts';
import {
  hostPort,
  isLoopback,
  oneOf,
  parseSettings,
  positiveMs,
  text,
  helpText,
  type HostPort,
  type Setting,
} from './settings.ts';

export const SIDECAR_SETTINGS = {
  policyFile: {
    flag: 'policy-file',
    env: 'TETHER_POLICY_FILE',
    default: undefined as string | undefined,
    help: 'TrafficPolicy YAML to enforce and watch for edits; without it the embedded default policy applies',
    parse: text,
  },
  listen: {
    flag: 'listen',
    env: 'TETHER_LISTEN',
    default: { host: '127.0.0.1', port: 15001 },
    help: 'egress proxy address; loopback only, so only processes in the pod can use it',
    parse: (raw: string): HostPort | { error: string } => {
      const hp = hostPort(raw);
      if ('error' in hp) return hp;
      return isLoopback(hp.host)
        ? hp
        : {
            error: `${hp.host} is not a loopback address: the egress proxy must only be reachable from inside the pod`,
          };
    },
  },
  adminListen: {
    flag: 'admin-listen',
    env: 'TETHER_ADMIN_LISTEN',
    default: { host: '0.0.0.0', port: 15020 },
    help: 'admin address for /livez, /readyz, /metrics (the kubelet probes it from outside the pod)',
    parse: hostPort,
  },
  logLevel: {
    flag: 'log-level',
    env: 'TETHER_LOG_LEVEL',
    default: 'info',
    help: `log level: ${LOG_LEVELS.join(', ')}`,
    parse: oneOf(LOG_LEVELS),
  },
  policyPollMs: {
    flag: 'policy-poll',
    env: 'TETHER_POLICY_POLL',
    default: 500,
    help: 'how often the policy file is checked for edits; 500ms applies an edit well within 2s',
    parse: positiveMs,
  },
  drainGraceMs: {
    flag: 'drain-grace',
    env: 'TETHER_DRAIN_GRACE',
    default: 25_000,
    help: "on SIGTERM or POST /shutdown, how long in-flight requests and streams may take to finish before exit 0; 25s fits Kubernetes' default 30s terminationGracePeriodSeconds with time left to flush spans (raise both for long streams)",
    parse: positiveMs,
  },
  accessLog: {
    flag: 'access-log',
    env: 'TETHER_ACCESS_LOG',
    default: 'on',
    help: 'one JSON line per request on stdout (never headers, cookies or query strings); off saves log volume',
    parse: oneOf(['on', 'off'] as const),
  },
  otlpEndpoint: {
    flag: 'otlp-endpoint',
    env: 'OTEL_EXPORTER_OTLP_ENDPOINT',
    default: undefined as string | undefined,
    help: 'OTLP/HTTP collector base URL (spans go to URL/v1/traces), e.g. http://jaeger-collector.observability:4318; with no endpoint tracing is off, so nothing is exported to a collector that is not there',
    parse: httpUrl,
  },
  otlpTracesEndpoint: {
    flag: 'otlp-traces-endpoint',
    env: 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
    default: undefined as string | undefined,
    help: 'full OTLP/HTTP traces URL; wins over --otlp-endpoint',
    parse: httpUrl,
  },
  tracingDisabled: {
    flag: 'tracing-disabled',
    env: 'OTEL_SDK_DISABLED',
    default: false,
    boolean: true,
    help: "no spans and no per-request tracing work even with an endpoint; the app's traceparent is still forwarded untouched",
    parse: bool,
  },
  traceSampler: {
    flag: 'trace-sampler',
    env: 'OTEL_TRACES_SAMPLER',
    default: 'parentbased_traceidratio',
    help: `${SAMPLERS.join(', ')}; parent-based follows the app's own sampling decision and applies the ratio only to requests without a traceparent`,
    parse: oneOf(SAMPLERS),
  },
  traceSamplerArg: {
    flag: 'trace-sampler-arg',
    env: 'OTEL_TRACES_SAMPLER_ARG',
    default: 1,
    help: 'ratio 0..1 for the traceidratio samplers; 1 traces every request the app did not decide about (Istio uses 0.01 at scale)',
    parse: ratio,
  },
  serviceName: {
    flag: 'service-name',
    env: 'OTEL_SERVICE_NAME',
    default: 'tether-sidecar',
    help: "service.name on Tether's spans; the injector sets the app's name so the app's calls and Tether's spans show under one service",
    parse: text,
  },
  podName: {
    flag: 'pod-name',
    env: 'POD_NAME',
    default: undefined as string | undefined,
    help: 'k8s.pod.name on spans (set from the downward API)',
    parse: text,
  },
  namespace: {
    flag: 'namespace',
    env: 'POD_NAMESPACE',
    default: undefined as string | undefined,
    help: "the pod's namespace (set from the downward API): k8s.namespace.name on spans, and where the tether-policy ConfigMap is read",
    parse: text,
  },
} satisfies Record<string, Setting<unknown>>;

function httpUrl(raw: string): string | { error: string } {
  try {
    const u = new URL(raw);
    if (u.protocol === 'http:' || u.protocol === 'https:') return raw;
  } catch {
    // reported below
  }
  return { error: `"${raw}" is not an http:// or https:// URL` };
}

/** The OTel specification's boolean: "true" or "false", any case. */
function bool(raw: string): boolean | { error: string } {
  const v = raw.trim().toLowerCase();
  if (v === 'true') return true;
  if (v === 'false') return false;
  return { error: `"${raw}" must be true or false` };
}

function ratio(raw: string): number | { error: string } {
  const n = Number(raw.trim());
  if (raw.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1)
    return { error: `"${raw}" must be a number from 0 to 1` };
  return n;
}

export const SIDECAR_USAGE = `tether-sidecar: Tether's egress proxy and admin server.

Usage: tether-sidecar [options]
       npm start -- [options]`;

export type SidecarConfig = ReturnType<typeof loadSidecarConfig>['values'];

export function loadSidecarConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>> = process.env,
) {
  return parseSettings(SIDECAR_SETTINGS, argv, env);
}

export const sidecarHelp = (): string => helpText(SIDECAR_USAGE, SIDECAR_SETTINGS);
