// Owns the injection contract's names: annotations, labels, container names, ports, the proxy's UID and the injected version.

import { readFileSync } from 'node:fs';

/** Annotations users write on Pods (or pod templates) to steer injection, and the one Tether writes. */
export const ANNOTATIONS = {
  /** "true" opts a pod in; "false" opts it out of a namespace-wide `tether.io/inject=enabled`. */
  inject: 'tether.io/inject',
  /** Written by Tether: the version that injected the pod. Its presence makes re-injection a no-op. */
  injected: 'tether.io/injected',
  /** "native" (init container with restartPolicy: Always, K8s >= 1.29) or "legacy" (first container + postStart wait). */
  sidecarMode: 'tether.io/sidecar-mode',
  cpuRequest: 'tether.io/proxy-cpu-request',
  memoryRequest: 'tether.io/proxy-memory-request',
  cpuLimit: 'tether.io/proxy-cpu-limit',
  memoryLimit: 'tether.io/proxy-memory-limit',
  /** The sidecar's log level (TETHER_LOG_LEVEL). */
  logLevel: 'tether.io/log-level',
  /** "iptables": an init container REDIRECTs the ports in capture-ports to 15001. Off unless set. */
  capture: 'tether.io/capture',
  capturePorts: 'tether.io/capture-ports',
} as const;

/** The namespace label that turns injection on for every pod in the namespace (the webhook's namespaceSelector). */
export const NAMESPACE_LABEL = 'tether.io/inject';
export const NAMESPACE_LABEL_ENABLED = 'enabled';

export const SIDECAR_CONTAINER = 'tether-proxy';
export const CAPTURE_CONTAINER = 'tether-capture';

export const EGRESS_PORT = 15001;
export const ADMIN_PORT = 15020;
/** Port names are at most 15 characters (IANA_SVC_NAME). */
export const ADMIN_PORT_NAME = 'tether-admin';

/**
 * The proxy's numeric UID and GID, baked into the image (Dockerfile) and set in the injected securityContext.
 * Numeric so `runAsNonRoot` can be verified by the kubelet; distinct from common app UIDs (0, 1000, 65532)
 * so iptables capture can exempt the proxy's own traffic by owner without catching the app's.
 */
export const PROXY_UID = 15001;

export const SIDECAR_MODES = ['native', 'legacy'] as const;
export type SidecarMode = (typeof SIDECAR_MODES)[number];

/** The package version: recorded in `tether.io/injected` and used as the default image tag. */
export const TETHER_VERSION: string = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
