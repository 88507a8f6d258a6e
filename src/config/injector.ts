// The injector's settings (and the injection settings tetherctl inject shares): every flag, its env var, default and reason; the only reader of process.env for tether-injector.

import { ANNOTATIONS, SIDECAR_MODES, TETHER_VERSION } from '../inject/names.ts';
import { PULL_POLICIES, type InjectOptions } from '../inject/options.ts';
import { parseQuantity } from '../inject/overrides.ts';
import { LOG_LEVELS } from '../telemetry/log.ts';
import {
  helpText,
  hostPort,
  oneOf,
  parseSettings,
  positiveMs,
  text,
  type Setting,
  type Values,
} from './settings.ts';

export const DEFAULT_IMAGE = `ghcr.io/tether-mesh/tether:${TETHER_VERSION}`;

const quantity = (raw: string): string | undefined | { error: string } => parseQuantity(raw);

function url(raw: string): string | { error: string } {
  try {
    const u = new URL(raw);
    if (u.protocol === 'http:' || u.protocol === 'https:') return raw;
  } catch {
    // reported below
  }
  return { error: `"${raw}" is not an http(s) URL such as http://jaeger-collector.tether-system:4318` };
}

function dnsName(raw: string): string | { error: string } {
  return /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(raw) && raw.length <= 253
    ? raw
    : { error: `"${raw}" is not a DNS name (lower case letters, digits, "-" and ".")` };
}

/** What gets injected into pods. Shared by tether-injector (flags + env) and `tetherctl inject` (flags only). */
export const INJECTION_SETTINGS = {
  image: {
    flag: 'image',
    env: 'TETHER_INJECT_IMAGE',
    default: DEFAULT_IMAGE,
    help: 'the sidecar image; the chart sets it from image.repository and image.tag',
    parse: text,
  },
  imagePullPolicy: {
    flag: 'image-pull-policy',
    env: 'TETHER_INJECT_IMAGE_PULL_POLICY',
    default: 'IfNotPresent',
    help: `pull policy for the injected containers: ${PULL_POLICIES.join(', ')}`,
    parse: oneOf(PULL_POLICIES),
  },
  captureImage: {
    flag: 'capture-image',
    env: 'TETHER_INJECT_CAPTURE_IMAGE',
    default: undefined as string | undefined,
    help: `image of the ${ANNOTATIONS.capture}: iptables init container (needs sh and iptables); default: the sidecar image, which has both`,
    parse: text,
  },
  sidecarMode: {
    flag: 'sidecar-mode',
    env: 'TETHER_INJECT_SIDECAR_MODE',
    default: 'native',
    help: `native (init container with restartPolicy: Always, Kubernetes >= 1.29) or legacy (first container + postStart wait); the chart picks by the cluster version; ${ANNOTATIONS.sidecarMode} overrides per pod`,
    parse: oneOf(SIDECAR_MODES),
  },
  meshNamespace: {
    flag: 'mesh-namespace',
    env: 'TETHER_INJECT_MESH_NAMESPACE',
    default: 'tether-system',
    help: 'namespace of the tether-mesh-policy ConfigMap the sidecars read',
    parse: dnsName,
  },
  otlpEndpoint: {
    flag: 'otlp-endpoint',
    env: 'TETHER_INJECT_OTLP_ENDPOINT',
    default: undefined as string | undefined,
    help: 'OTLP/HTTP endpoint the sidecars send spans to (OTEL_EXPORTER_OTLP_ENDPOINT); unset: no export',
    parse: url,
  },
  cpuRequest: {
    flag: 'proxy-cpu-request',
    env: 'TETHER_INJECT_CPU_REQUEST',
    default: '20m',
    help: `sidecar CPU request ("none" for no request); ${ANNOTATIONS.cpuRequest} overrides per pod`,
    parse: quantity,
  },
  memoryRequest: {
    flag: 'proxy-memory-request',
    env: 'TETHER_INJECT_MEMORY_REQUEST',
    default: '64Mi',
    help: `sidecar memory request: a Node.js proxy idles at ~50 MiB RSS; ${ANNOTATIONS.memoryRequest} overrides per pod`,
    parse: quantity,
  },
  cpuLimit: {
    flag: 'proxy-cpu-limit',
    env: 'TETHER_INJECT_CPU_LIMIT',
    default: undefined as string | undefined,
    help: `sidecar CPU limit; none by default, since CFS throttling adds tail latency to every proxied call; ${ANNOTATIONS.cpuLimit} overrides per pod`,
    parse: quantity,
  },
  memoryLimit: {
    flag: 'proxy-memory-limit',
    env: 'TETHER_INJECT_MEMORY_LIMIT',
    default: '256Mi',
    help: `sidecar memory limit ("none" for no limit); ${ANNOTATIONS.memoryLimit} overrides per pod`,
    parse: quantity,
  },
  proxyLogLevel: {
    flag: 'proxy-log-level',
    env: 'TETHER_INJECT_LOG_LEVEL',
    default: 'info',
    help: `the sidecars' log level: ${LOG_LEVELS.join(', ')}; ${ANNOTATIONS.logLevel} overrides per pod`,
    parse: oneOf(LOG_LEVELS),
  },
  clusterDomain: {
    flag: 'cluster-domain',
    env: 'TETHER_INJECT_CLUSTER_DOMAIN',
    default: 'cluster.local',
    help: "the cluster's DNS domain, for the Kubernetes API's full name in NO_PROXY",
    parse: dnsName,
  },
} satisfies Record<string, Setting<unknown>>;

export const INJECTOR_SETTINGS = {
  listen: {
    flag: 'listen',
    env: 'TETHER_INJECTOR_LISTEN',
    default: { host: '0.0.0.0', port: 8443 },
    help: 'HTTPS address the API server calls; 8443 needs no privileges',
    parse: hostPort,
  },
  tlsCertFile: {
    flag: 'tls-cert-file',
    env: 'TETHER_INJECTOR_TLS_CERT_FILE',
    default: '/etc/tether-injector/tls/tls.crt',
    help: 'serving certificate (PEM); the chart mounts its Secret here',
    parse: text,
  },
  tlsKeyFile: {
    flag: 'tls-key-file',
    env: 'TETHER_INJECTOR_TLS_KEY_FILE',
    default: '/etc/tether-injector/tls/tls.key',
    help: 'serving key (PEM)',
    parse: text,
  },
  certReloadMs: {
    flag: 'cert-reload-interval',
    env: 'TETHER_INJECTOR_CERT_RELOAD_INTERVAL',
    default: 60_000,
    help: 'how often the certificate files are re-read; Secret volume updates land within about a minute anyway',
    parse: positiveMs,
  },
  logLevel: {
    flag: 'log-level',
    env: 'TETHER_INJECTOR_LOG_LEVEL',
    default: 'info',
    help: `the injector's own log level: ${LOG_LEVELS.join(', ')}`,
    parse: oneOf(LOG_LEVELS),
  },
  ...INJECTION_SETTINGS,
} satisfies Record<string, Setting<unknown>>;

export const INJECTOR_USAGE = `tether-injector: Tether's mutating admission webhook (HTTPS, AdmissionReview v1).

Usage: tether-injector [options]
       npm run injector -- [options]`;

type InjectionValues = Values<typeof INJECTION_SETTINGS>;

/** The InjectOptions the mutation reads, from either table's parsed values. */
export function injectOptionsFrom(v: InjectionValues): InjectOptions {
  return {
    image: v.image,
    imagePullPolicy: v.imagePullPolicy,
    captureImage: v.captureImage ?? v.image,
    mode: v.sidecarMode,
    meshNamespace: v.meshNamespace,
    otlpEndpoint: v.otlpEndpoint,
    resources: {
      cpuRequest: v.cpuRequest,
      memoryRequest: v.memoryRequest,
      cpuLimit: v.cpuLimit,
      memoryLimit: v.memoryLimit,
    },
    logLevel: v.proxyLogLevel,
    clusterDomain: v.clusterDomain,
    version: TETHER_VERSION,
  };
}

export type InjectorConfig = ReturnType<typeof loadInjectorConfig>['values'];

export function loadInjectorConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>> = process.env,
) {
  return parseSettings(INJECTOR_SETTINGS, argv, env);
}

export const injectorHelp = (): string => helpText(INJECTOR_USAGE, INJECTOR_SETTINGS);
