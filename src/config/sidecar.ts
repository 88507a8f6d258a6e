// The sidecar's settings: every flag, its environment variable, default and reason; the only reader of process.env for tether-sidecar.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { MESH_POLICY_CONFIGMAP, NAMESPACE_POLICY_CONFIGMAP } from '../policy/configmap.ts';
import { LOG_LEVELS } from '../telemetry/log.ts';
import { SAMPLERS } from '../telemetry/trace-config.ts';
import {
  ConfigError,
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

export const POLICY_SOURCES = ['file', 'kubernetes'] as const;
export type PolicySourceKind = (typeof POLICY_SOURCES)[number];

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
  policySource: {
    flag: 'policy-source',
    env: 'TETHER_POLICY_SOURCE',
    default: undefined as PolicySourceKind | undefined,
    help: `where policy comes from: file (--policy-file, else the embedded default) or kubernetes (ConfigMaps ${NAMESPACE_POLICY_CONFIGMAP} and ${MESH_POLICY_CONFIGMAP}); default kubernetes when a service-account token is mounted (see --service-account-dir) and no --policy-file is given, else file`,
    parse: oneOf(POLICY_SOURCES),
  },
  kubeconfig: {
    flag: 'kubeconfig',
    env: 'TETHER_KUBECONFIG',
    default: undefined as string | undefined,
    help: 'kubeconfig for the kubernetes policy source when running outside a pod; in a pod the mounted service account is used',
    parse: text,
  },
  meshNamespace: {
    flag: 'mesh-namespace',
    env: 'TETHER_MESH_NAMESPACE',
    default: 'tether-system',
    help: `namespace of the ${MESH_POLICY_CONFIGMAP} ConfigMap, the mesh-wide policy that ${NAMESPACE_POLICY_CONFIGMAP} overrides per destination`,
    parse: text,
  },
  serviceAccountDir: {
    flag: 'service-account-dir',
    env: 'TETHER_SERVICE_ACCOUNT_DIR',
    default: '/var/run/secrets/kubernetes.io/serviceaccount',
    help: "where the kubelet mounts the pod's service-account token, ca.crt and namespace; a token there makes kubernetes the default --policy-source",
    parse: text,
  },
  kubeServiceHost: {
    flag: 'kube-service-host',
    env: 'KUBERNETES_SERVICE_HOST',
    default: undefined as string | undefined,
    help: 'API server host for the kubernetes policy source in a pod (the kubelet sets the variable)',
    parse: text,
  },
  kubeServicePort: {
    flag: 'kube-service-port',
    env: 'KUBERNETES_SERVICE_PORT',
    default: 443,
    help: 'API server port for the kubernetes policy source in a pod (the kubelet sets the variable)',
    parse: tcpPort,
  },
  policySyncGraceMs: {
    flag: 'policy-sync-grace',
    env: 'TETHER_POLICY_SYNC_GRACE',
    default: 30_000,
    help: 'kubernetes source: readiness waits this long for the first read of the policy ConfigMaps (requests are served on the embedded default meanwhile), then turns ready on the embedded default; 30s rides out a slow API server without holding a rollout forever',
    parse: positiveMs,
  },
  kubeWatchIdleMs: {
    flag: 'kube-watch-idle',
    env: 'TETHER_KUBE_WATCH_IDLE',
    default: 90_000,
    help: 'kubernetes source: a ConfigMap watch with no event or bookmark for this long is presumed dead and restarted; the API server sends a bookmark about once a minute',
    parse: atLeastMs(1000),
  },
  kubeBackoffMaxMs: {
    flag: 'kube-backoff-max',
    env: 'TETHER_KUBE_BACKOFF_MAX',
    default: 30_000,
    help: 'kubernetes source: cap of the jittered exponential backoff between attempts to reach the API server, so a fleet of sidecars does not storm one that is coming back',
    parse: atLeastMs(100),
  },
} satisfies Record<string, Setting<unknown>>;

function tcpPort(raw: string): number | { error: string } {
  const n = Number(raw.trim());
  return Number.isInteger(n) && n > 0 && n <= 65535 ? n : { error: `"${raw}" is not a TCP port` };
}

function atLeastMs(min: number) {
  return (raw: string): number | { error: string } => {
    const ms = positiveMs(raw);
    if (typeof ms !== 'number') return ms;
    return ms >= min ? ms : { error: `"${raw}" is too short: at least ${min}ms` };
  };
}

/**
 * The policy source in effect: the flag when given; else file when --policy-file is given; else
 * kubernetes when the pod has a service-account token mounted (a pod with a token can reach the
 * API); else file with the embedded default.
 */
export function resolvePolicySource(
  config: Pick<SidecarConfig, 'policySource' | 'policyFile' | 'serviceAccountDir'>,
  exists: (path: string) => boolean = existsSync,
): { source: PolicySourceKind; why: string } {
  if (config.policySource) return { source: config.policySource, why: '--policy-source' };
  if (config.policyFile) return { source: 'file', why: '--policy-file is given' };
  const token = join(config.serviceAccountDir, 'token');
  if (exists(token)) return { source: 'kubernetes', why: `a service-account token is mounted at ${token}` };
  return { source: 'file', why: `no service-account token at ${token}` };
}

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
  const parsed = parseSettings(SIDECAR_SETTINGS, argv, env);
  if (parsed.values.policySource === 'kubernetes' && parsed.values.policyFile) {
    throw new ConfigError([
      '--policy-file and --policy-source kubernetes exclude each other: choose one source of policy',
    ]);
  }
  return parsed;
}

export const sidecarHelp = (): string => helpText(SIDECAR_USAGE, SIDECAR_SETTINGS);
