// Owns what the injection needs to know that a pod does not say: image, mode, defaults — filled by the injector's or tetherctl's settings.

import type { LogLevel } from '../telemetry/log.ts';
import type { SidecarMode } from './names.ts';

export const PULL_POLICIES = ['Always', 'IfNotPresent', 'Never'] as const;
export type PullPolicy = (typeof PULL_POLICIES)[number];

/** A Kubernetes resource quantity, or undefined for "not set" (no request / no limit). */
export interface ProxyResources {
  cpuRequest: string | undefined;
  memoryRequest: string | undefined;
  cpuLimit: string | undefined;
  memoryLimit: string | undefined;
}

export interface InjectOptions {
  /** The sidecar image (the one Tether image; its entrypoint picks the binary from the first argument). */
  image: string;
  imagePullPolicy: PullPolicy;
  /** Image for the opt-in iptables capture init container; needs `iptables` and `sh`. */
  captureImage: string;
  /** Default sidecar mode; a pod's `tether.io/sidecar-mode` wins. */
  mode: SidecarMode;
  /** Where `tether-mesh-policy` lives. */
  meshNamespace: string;
  /** OTLP/HTTP endpoint the sidecars export spans to; undefined = tracing export off. */
  otlpEndpoint: string | undefined;
  resources: ProxyResources;
  logLevel: LogLevel;
  /** For the Kubernetes API's fully qualified name in NO_PROXY. */
  clusterDomain: string;
  /** Written to `tether.io/injected`. */
  version: string;
}
