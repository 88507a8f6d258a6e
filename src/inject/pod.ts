// Owns the pod mutation itself — the sidecar, its probes and limits, the app containers' proxy env, capture — shared by the webhook and tetherctl.

import {
  ADMIN_PORT,
  ADMIN_PORT_NAME,
  ANNOTATIONS,
  CAPTURE_CONTAINER,
  EGRESS_PORT,
  PROXY_UID,
  SIDECAR_CONTAINER,
  type SidecarMode,
} from './names.ts';
import type { InjectOptions, ProxyResources } from './options.ts';
import { readOverrides, type PodOverrides } from './overrides.ts';
import type { Container, EnvVar, ObjectMeta, PodSpec, PodTemplate } from './types.ts';

export const PROXY_URL = `http://127.0.0.1:${EGRESS_PORT}`;

/** Downward-API env in app containers, so NO_PROXY can name the pod's own IP (`$(VAR)` is expanded by the kubelet). */
export const POD_IP_ENV = 'TETHER_POD_IP';

/**
 * What never goes through the proxy. NO_PROXY lists hosts, not ports: "the pod's own ports" are reached
 * through loopback or the pod's own IP, so those hosts are listed, and every port on them bypasses Tether.
 * The Kubernetes API is listed by name (the service CIDR cannot be known here) and by the
 * KUBERNETES_SERVICE_HOST IP the kubelet sets in every container (client-go and friends dial that IP).
 */
export function noProxyValue(clusterDomain: string): string {
  return [
    'localhost',
    '127.0.0.1',
    '::1',
    `$(${POD_IP_ENV})`,
    '$(KUBERNETES_SERVICE_HOST)',
    'kubernetes',
    'kubernetes.default',
    'kubernetes.default.svc',
    `kubernetes.default.svc.${clusterDomain}`,
  ].join(',');
}

/**
 * The legacy-mode postStart hook: the kubelet starts the next container only after this returns, so the
 * app starts once the proxy carries traffic (Istio's holdApplicationUntilProxyStarts). Plain node, no curl
 * in the image. 120 s matches the startupProbe's budget.
 */
export const WAIT_FOR_PROXY_SCRIPT =
  `const u='http://127.0.0.1:${ADMIN_PORT}/startupz',end=Date.now()+120e3;` +
  `const t=()=>fetch(u).then(r=>r.ok,()=>false).then(ok=>ok?process.exit(0):` +
  `Date.now()>end?(console.error('tether-proxy did not start within 120s'),process.exit(1)):setTimeout(t,250));t()`;

export class InjectError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(problems.join('; '));
    this.problems = problems;
  }
}

/** The name spans are reported under: app labels first, then the owner's name, then the pod's. */
export function serviceNameOf(meta: ObjectMeta | undefined, fallback?: string): string {
  const labels = meta?.labels ?? {};
  const fromLabel = labels['app.kubernetes.io/name'] ?? labels['app'];
  if (fromLabel) return fromLabel;
  if (fallback) return fallback;
  const generated = meta?.generateName;
  if (generated) {
    // A ReplicaSet's pods are named <deployment>-<pod-template-hash>-<random>.
    const hash = labels['pod-template-hash'];
    const base = generated.replace(/-$/, '');
    return hash && base.endsWith(`-${hash}`) ? base.slice(0, -hash.length - 1) : base;
  }
  return meta?.name ?? 'unknown';
}

export function isInjected(pod: PodTemplate): boolean {
  if (pod.metadata?.annotations?.[ANNOTATIONS.injected] !== undefined) return true;
  const all = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
  return all.some((c) => c.name === SIDECAR_CONTAINER);
}

function resourcesOf(r: ProxyResources): Record<string, Record<string, string>> | undefined {
  const requests: Record<string, string> = {};
  const limits: Record<string, string> = {};
  if (r.cpuRequest !== undefined) requests.cpu = r.cpuRequest;
  if (r.memoryRequest !== undefined) requests.memory = r.memoryRequest;
  if (r.cpuLimit !== undefined) limits.cpu = r.cpuLimit;
  if (r.memoryLimit !== undefined) limits.memory = r.memoryLimit;
  const out: Record<string, Record<string, string>> = {};
  if (Object.keys(requests).length > 0) out.requests = requests;
  if (Object.keys(limits).length > 0) out.limits = limits;
  return Object.keys(out).length > 0 ? out : undefined;
}

const fieldEnv = (name: string, fieldPath: string): EnvVar => ({
  name,
  valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath } },
});
const httpProbe = (path: string, timing: Record<string, number>): Record<string, unknown> => ({
  httpGet: { path, port: ADMIN_PORT_NAME },
  ...timing,
});

/** The restricted Pod Security Standard, so injected pods pass `pod-security.kubernetes.io/enforce: restricted`. */
const RESTRICTED_SECURITY_CONTEXT = {
  runAsNonRoot: true,
  runAsUser: PROXY_UID,
  runAsGroup: PROXY_UID,
  readOnlyRootFilesystem: true,
  allowPrivilegeEscalation: false,
  capabilities: { drop: ['ALL'] },
  seccompProfile: { type: 'RuntimeDefault' },
};

/** The pod volume holding the sidecar's own ServiceAccount token (see tokenVolume). */
export const TOKEN_VOLUME = 'tether-token';
const TOKEN_PATH = '/var/run/secrets/kubernetes.io/serviceaccount';

/**
 * The sidecar reads its policy ConfigMaps with the pod's ServiceAccount, so it mounts a token itself:
 * pods (or ServiceAccounts) with automountServiceAccountToken: false would otherwise leave it without
 * one. Same sources as the kubelet's kube-api-access volume; the ServiceAccount admission plugin skips
 * containers that already mount this path, so nothing is mounted twice.
 */
function tokenVolume(): Record<string, unknown> {
  return {
    name: TOKEN_VOLUME,
    projected: {
      defaultMode: 0o444,
      sources: [
        { serviceAccountToken: { path: 'token', expirationSeconds: 3607 } },
        { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
        {
          downwardAPI: {
            items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }],
          },
        },
      ],
    },
  };
}

function sidecarContainer(
  opts: InjectOptions,
  o: PodOverrides,
  mode: SidecarMode,
  serviceName: string,
): Container {
  const env: EnvVar[] = [
    fieldEnv('POD_NAME', 'metadata.name'),
    fieldEnv('POD_NAMESPACE', 'metadata.namespace'),
    { name: 'TETHER_POLICY_SOURCE', value: 'kubernetes' },
    { name: 'TETHER_MESH_NAMESPACE', value: opts.meshNamespace },
    { name: 'TETHER_LOG_LEVEL', value: o.logLevel ?? opts.logLevel },
    // The app's name, so the app's calls and Tether's spans show under one service.
    { name: 'OTEL_SERVICE_NAME', value: serviceName },
  ];
  if (opts.otlpEndpoint !== undefined)
    env.push({ name: 'OTEL_EXPORTER_OTLP_ENDPOINT', value: opts.otlpEndpoint });
  const resources = resourcesOf({ ...opts.resources, ...o.resources });
  const c: Container = {
    name: SIDECAR_CONTAINER,
    image: opts.image,
    imagePullPolicy: opts.imagePullPolicy,
    args: ['sidecar'],
    ...(mode === 'native' ? { restartPolicy: 'Always' } : {}),
    ports: [{ name: ADMIN_PORT_NAME, containerPort: ADMIN_PORT, protocol: 'TCP' }],
    env,
    volumeMounts: [{ name: TOKEN_VOLUME, mountPath: TOKEN_PATH, readOnly: true }],
    ...(resources ? { resources } : {}),
    securityContext: RESTRICTED_SECURITY_CONTEXT,
    // Gates the app containers (native) and the liveness probe: 120 × 1 s for a cold start on a busy node.
    startupProbe: httpProbe('/startupz', { periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 120 }),
    livenessProbe: httpProbe('/livez', { periodSeconds: 10, timeoutSeconds: 2, failureThreshold: 3 }),
    readinessProbe: httpProbe('/readyz', { periodSeconds: 5, timeoutSeconds: 2, failureThreshold: 3 }),
  };
  if (mode === 'legacy')
    c.lifecycle = { postStart: { exec: { command: ['node', '-e', WAIT_FOR_PROXY_SCRIPT] } } };
  return c;
}

/**
 * REDIRECTs the pod's outbound TCP to the listed ports into the proxy. The proxy's own traffic (by UID)
 * and loopback (app → proxy, app → itself) are exempt, or it would loop. Needs NET_ADMIN/NET_RAW and root,
 * which is why it is off unless a pod asks for it.
 */
export function captureScript(ports: readonly number[]): string {
  return [
    'set -e',
    'iptables -t nat -N TETHER_OUTPUT',
    'iptables -t nat -A OUTPUT -p tcp -j TETHER_OUTPUT',
    `iptables -t nat -A TETHER_OUTPUT -m owner --uid-owner ${PROXY_UID} -j RETURN`,
    'iptables -t nat -A TETHER_OUTPUT -o lo -j RETURN',
    ...ports.map(
      (p) => `iptables -t nat -A TETHER_OUTPUT -p tcp --dport ${p} -j REDIRECT --to-ports ${EGRESS_PORT}`,
    ),
  ].join('\n');
}

function captureContainer(opts: InjectOptions, ports: readonly number[]): Container {
  return {
    name: CAPTURE_CONTAINER,
    image: opts.captureImage,
    imagePullPolicy: opts.imagePullPolicy,
    command: ['sh', '-c', captureScript(ports)],
    resources: { requests: { cpu: '10m', memory: '16Mi' }, limits: { memory: '64Mi' } },
    securityContext: {
      runAsNonRoot: false,
      runAsUser: 0,
      allowPrivilegeEscalation: false,
      // iptables takes its lock file under /run.
      readOnlyRootFilesystem: false,
      capabilities: { drop: ['ALL'], add: ['NET_ADMIN', 'NET_RAW'] },
    },
  };
}

/** The env every app container gets, in order (NO_PROXY expands the pod IP variable defined before it). */
function appEnv(opts: InjectOptions): EnvVar[] {
  const noProxy = noProxyValue(opts.clusterDomain);
  return [
    { name: 'HTTP_PROXY', value: PROXY_URL },
    { name: 'http_proxy', value: PROXY_URL },
    fieldEnv(POD_IP_ENV, 'status.podIP'),
    { name: 'NO_PROXY', value: noProxy },
    { name: 'no_proxy', value: noProxy },
    // Node's http and fetch ignore proxy env without it (Node >= 24).
    { name: 'NODE_USE_ENV_PROXY', value: '1' },
  ];
}

const isOurs = (c: Container): boolean => c.name === SIDECAR_CONTAINER || c.name === CAPTURE_CONTAINER;

/**
 * Containers that run while the proxy does get the app env: app containers, and in native mode the init
 * containers after it. A container that sets its own proxy variables keeps them all, untouched (a warning
 * says its traffic bypasses Tether); env a re-invocation finds missing is added.
 */
function applyAppEnv(spec: PodSpec, env: EnvVar[], warnings: string[]): PodSpec {
  const names = new Set(env.map((e) => e.name));
  const withEnv = (c: Container): Container => {
    if (isOurs(c)) return c;
    const own = (c.env ?? []).filter((e) => names.has(e.name) && !isInjectedEnv(e));
    if (own.length > 0) {
      warnings.push(
        `container ${c.name} sets ${own.map((e) => e.name).join(', ')} itself: its proxy env is left as is, so its traffic does not go through Tether unless that points at ${PROXY_URL}`,
      );
      return c;
    }
    const have = new Set((c.env ?? []).map((e) => e.name));
    const missing = env.filter((e) => !have.has(e.name));
    return missing.length > 0 ? { ...c, env: [...(c.env ?? []), ...missing] } : c;
  };
  const init = spec.initContainers ?? [];
  const sidecarAt = init.findIndex((c) => c.name === SIDECAR_CONTAINER);
  const out: PodSpec = { ...spec, containers: spec.containers.map(withEnv) };
  if (sidecarAt >= 0) out.initContainers = init.map((c, i) => (i > sidecarAt ? withEnv(c) : c));
  return out;
}

function reservedPortProblems(spec: PodSpec): string[] {
  const problems: string[] = [];
  for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
    if (isOurs(c)) continue;
    for (const p of c.ports ?? []) {
      if (p.containerPort === EGRESS_PORT || p.containerPort === ADMIN_PORT) {
        problems.push(`container ${c.name} declares port ${p.containerPort}, which the Tether proxy uses`);
      }
    }
  }
  return problems;
}

export interface Injected {
  pod: PodTemplate;
  /** Things the user should know: a container keeping its own proxy env. */
  warnings: string[];
}

export interface InjectContext {
  /** Service name when the pod has no app label: a workload's name for templates (tetherctl). */
  fallbackServiceName?: string;
}

/**
 * Returns an injected copy of `pod` (the input is never modified). Already injected pods only get the app
 * env their containers lack — containers added after injection (webhook re-invocation) — so applying it
 * twice equals applying it once (with the same warnings). Throws InjectError naming every bad annotation.
 */
export function injectPod(pod: PodTemplate, opts: InjectOptions, ctx: InjectContext = {}): Injected {
  const spec = pod.spec;
  if (!spec || !Array.isArray(spec.containers)) throw new InjectError(['the pod has no spec.containers']);
  const annotations = pod.metadata?.annotations ?? {};
  const env = appEnv(opts);
  const warnings: string[] = [];
  if (isInjected(pod)) {
    return {
      pod: { ...structuredClone(pod), spec: applyAppEnv(structuredClone(spec), env, warnings) },
      warnings,
    };
  }

  const read = readOverrides(annotations);
  const problems = [...('problems' in read ? read.problems : []), ...reservedPortProblems(spec)];
  if (((spec.volumes as { name?: string }[] | undefined) ?? []).some((v) => v.name === TOKEN_VOLUME)) {
    problems.push(`volume name ${TOKEN_VOLUME} is reserved for the Tether proxy's ServiceAccount token`);
  }
  if ('problems' in read || problems.length > 0) throw new InjectError(problems);
  const o = read.overrides;
  const mode = o.mode ?? opts.mode;

  const copy = structuredClone(pod);
  const s = copy.spec as PodSpec;
  const sidecar = sidecarContainer(opts, o, mode, serviceNameOf(pod.metadata, ctx.fallbackServiceName));
  const capture = o.capturePorts ? [captureContainer(opts, o.capturePorts)] : [];
  const init = s.initContainers ?? [];
  if (mode === 'native') {
    s.initContainers = [...capture, sidecar, ...init];
  } else {
    if (capture.length > 0 || init.length > 0) s.initContainers = [...capture, ...init];
    s.containers = [sidecar, ...s.containers];
  }
  // First: so the webhook (after the ServiceAccount plugin added its volume) and tetherctl (before) agree.
  s.volumes = [tokenVolume(), ...((s.volumes as unknown[] | undefined) ?? [])];
  copy.metadata = { ...copy.metadata, annotations: { ...annotations, [ANNOTATIONS.injected]: opts.version } };
  copy.spec = applyAppEnv(s, env, warnings);
  return { pod: copy, warnings };
}

function isInjectedEnv(e: EnvVar): boolean {
  switch (e.name) {
    case 'HTTP_PROXY':
    case 'http_proxy':
      return e.value === PROXY_URL;
    case 'NO_PROXY':
    case 'no_proxy':
      return e.value?.includes(`$(${POD_IP_ENV})`) === true;
    case 'NODE_USE_ENV_PROXY':
      return e.value === '1';
    case POD_IP_ENV:
      return e.valueFrom?.fieldRef?.fieldPath === 'status.podIP';
    default:
      return false;
  }
}

/** The inverse of injectPod: removes Tether's containers, env and annotation; the pod's own settings stay. */
export function uninjectPod(pod: PodTemplate): PodTemplate {
  const copy = structuredClone(pod);
  const s = copy.spec;
  if (!s || !Array.isArray(s.containers)) return copy;
  const strip = (c: Container): Container => {
    if (!c.env) return c;
    const env = c.env.filter((e) => !isInjectedEnv(e));
    const { env: _drop, ...rest } = c;
    return env.length > 0 ? { ...rest, env } : rest;
  };
  s.containers = s.containers.filter((c) => !isOurs(c)).map(strip);
  if (Array.isArray(s.volumes)) {
    const volumes = (s.volumes as { name?: string }[]).filter((v) => v.name !== TOKEN_VOLUME);
    if (volumes.length > 0) s.volumes = volumes;
    else delete s.volumes;
  }
  if (s.initContainers) {
    const init = s.initContainers.filter((c) => !isOurs(c)).map(strip);
    if (init.length > 0) s.initContainers = init;
    else delete s.initContainers;
  }
  const annotations = copy.metadata?.annotations;
  if (annotations && ANNOTATIONS.injected in annotations) {
    delete annotations[ANNOTATIONS.injected];
    if (Object.keys(annotations).length === 0) delete copy.metadata?.annotations;
    // Templates that had no metadata got it only for the annotation.
    if (copy.metadata && Object.keys(copy.metadata).length === 0) delete copy.metadata;
  }
  return copy;
}
