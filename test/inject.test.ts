// The pod mutation as the API server applies it: AdmissionReview in, JSON Patch out, patched pod inspected.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import { loadSidecarConfig, SIDECAR_SETTINGS } from '../src/config/sidecar.ts';
import { ADMIN_PORT, PROXY_UID, TETHER_VERSION } from '../src/inject/names.ts';
import { applyPatchCopy, type PatchOperation } from '../src/inject/patch.ts';
import { captureScript, injectPod, uninjectPod, WAIT_FOR_PROXY_SCRIPT } from '../src/inject/pod.ts';
import { review, type Endpoint } from '../src/inject/review.ts';
import type { Container, PodTemplate } from '../src/inject/types.ts';
import { admissionReview, defaultInjectOptions } from './inject-helpers.ts';

const OPTS = defaultInjectOptions();
const POD_SCOPE: Endpoint = { what: 'pods', scope: 'pod' };
const NS_SCOPE: Endpoint = { what: 'pods', scope: 'namespace' };

function pod(
  annotations: Record<string, string> = { 'tether.io/inject': 'true' },
  spec: Partial<PodTemplate['spec']> = {},
): PodTemplate {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      generateName: 'web-7d4b9c-',
      labels: { app: 'web', 'pod-template-hash': '7d4b9c' },
      annotations,
    },
    spec: {
      containers: [{ name: 'app', image: 'web:1', ports: [{ containerPort: 8080, name: 'http' }] }],
      ...spec,
    },
  };
}

/** Runs the webhook's decision and applies its patch the way the API server does. */
function admit(obj: PodTemplate, endpoint: Endpoint = POD_SCOPE, opts = OPTS) {
  const r = review(admissionReview(obj), endpoint, opts);
  const ops = r.response.patch
    ? (JSON.parse(Buffer.from(r.response.patch, 'base64').toString('utf8')) as PatchOperation[])
    : [];
  return { ...r, ops, pod: applyPatchCopy(obj, ops) };
}

const sidecarOf = (p: PodTemplate): Container | undefined =>
  [...(p.spec?.initContainers ?? []), ...(p.spec?.containers ?? [])].find((c) => c.name === 'tether-proxy');
const envOf = (c: Container | undefined): Record<string, string | undefined> =>
  Object.fromEntries(
    (c?.env ?? []).map((e) => [e.name, e.value ?? `fieldRef:${e.valueFrom?.fieldRef?.fieldPath}`]),
  );

describe('native sidecar (default)', () => {
  test('an annotated pod gets tether-proxy as the first init container with restartPolicy Always and a startup probe', () => {
    const r = admit(pod());
    assert.equal(r.response.allowed, true);
    assert.equal(r.response.patchType, 'JSONPatch');
    const init = r.pod.spec?.initContainers ?? [];
    assert.equal(init[0]?.name, 'tether-proxy');
    assert.equal(init[0]?.restartPolicy, 'Always');
    assert.equal(init[0]?.image, OPTS.image);
    assert.deepEqual(init[0]?.args, ['sidecar']);
    assert.deepEqual(init[0]?.startupProbe, {
      httpGet: { path: '/startupz', port: 'tether-admin' },
      periodSeconds: 1,
      timeoutSeconds: 1,
      failureThreshold: 120,
    });
    assert.equal((init[0]?.livenessProbe as { httpGet: { path: string } }).httpGet.path, '/livez');
    assert.equal((init[0]?.readinessProbe as { httpGet: { path: string } }).httpGet.path, '/readyz');
    assert.deepEqual(init[0]?.ports, [{ name: 'tether-admin', containerPort: ADMIN_PORT, protocol: 'TCP' }]);
    assert.deepEqual(
      r.pod.spec?.containers.map((c) => c.name),
      ['app'],
    );
    assert.equal(r.pod.metadata?.annotations?.['tether.io/injected'], TETHER_VERSION);
  });

  test('the sidecar runs restricted: non-root numeric UID, read-only root, no escalation, no capabilities, RuntimeDefault seccomp', () => {
    const sc = sidecarOf(admit(pod()).pod)?.securityContext;
    assert.deepEqual(sc, {
      runAsNonRoot: true,
      runAsUser: PROXY_UID,
      runAsGroup: PROXY_UID,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
  });

  test('app containers get HTTP_PROXY, NO_PROXY (loopback, pod IP, Kubernetes API) and NODE_USE_ENV_PROXY', () => {
    const env = envOf(admit(pod()).pod.spec?.containers[0]);
    assert.equal(env.HTTP_PROXY, 'http://127.0.0.1:15001');
    assert.equal(env.http_proxy, 'http://127.0.0.1:15001');
    assert.equal(env.NODE_USE_ENV_PROXY, '1');
    assert.equal(env.TETHER_POD_IP, 'fieldRef:status.podIP');
    const noProxy = env.NO_PROXY?.split(',') ?? [];
    for (const host of [
      'localhost',
      '127.0.0.1',
      '::1',
      '$(TETHER_POD_IP)',
      '$(KUBERNETES_SERVICE_HOST)',
      'kubernetes.default.svc',
      'kubernetes.default.svc.cluster.local',
    ]) {
      assert.ok(noProxy.includes(host), `NO_PROXY lacks ${host}: ${env.NO_PROXY}`);
    }
    assert.equal(env.no_proxy, env.NO_PROXY);
  });

  test('the sidecar gets the pod name and namespace from the downward API and the app name as its service name', () => {
    const env = envOf(sidecarOf(admit(pod()).pod));
    assert.equal(env.POD_NAME, 'fieldRef:metadata.name');
    assert.equal(env.POD_NAMESPACE, 'fieldRef:metadata.namespace');
    assert.equal(env.OTEL_SERVICE_NAME, 'web');
    assert.equal(env.TETHER_MESH_NAMESPACE, 'tether-system');
    assert.equal(env.OTEL_EXPORTER_OTLP_ENDPOINT, undefined, 'no endpoint configured: no export');
  });

  test('without app labels the service name is the Deployment name taken from generateName', () => {
    const p = pod();
    p.metadata = {
      generateName: 'checkout-5f6d8-',
      labels: { 'pod-template-hash': '5f6d8' },
      annotations: { 'tether.io/inject': 'true' },
    };
    assert.equal(envOf(sidecarOf(admit(p).pod)).OTEL_SERVICE_NAME, 'checkout');
  });

  test('the OTLP endpoint setting reaches the sidecar as OTEL_EXPORTER_OTLP_ENDPOINT', () => {
    const opts = defaultInjectOptions(['--otlp-endpoint', 'http://jaeger.tether-system:4318']);
    const env = envOf(sidecarOf(admit(pod(), POD_SCOPE, opts).pod));
    assert.equal(env.OTEL_EXPORTER_OTLP_ENDPOINT, 'http://jaeger.tether-system:4318');
  });

  test('init containers after the sidecar get the proxy env too: they run while it does', () => {
    const r = admit(pod(undefined, { initContainers: [{ name: 'migrate', image: 'm:1' }] }));
    const init = r.pod.spec?.initContainers ?? [];
    assert.deepEqual(
      init.map((c) => c.name),
      ['tether-proxy', 'migrate'],
    );
    assert.equal(envOf(init[1]).HTTP_PROXY, 'http://127.0.0.1:15001');
  });

  test('every variable injected into the sidecar is one tether-sidecar reads, with a value it accepts', () => {
    const sidecar = sidecarOf(
      admit(
        pod({ 'tether.io/inject': 'true', 'tether.io/log-level': 'debug' }),
        POD_SCOPE,
        defaultInjectOptions(['--otlp-endpoint', 'http://jaeger:4318']),
      ).pod,
    );
    const known = new Set(Object.values(SIDECAR_SETTINGS).map((s) => ('env' in s ? s.env : undefined)));
    const env = envOf(sidecar);
    const unknown = Object.keys(env).filter((n) => !known.has(n));
    assert.deepEqual(
      unknown,
      [],
      `the injector sets env tether-sidecar does not read: ${unknown.join(', ')}`,
    );
    // What the kubelet resolves from the downward API, then the sidecar's own parser.
    const resolved = { ...env, POD_NAME: 'web-7d4b9c-x2x2x', POD_NAMESPACE: 'shop' };
    const config = loadSidecarConfig((sidecar?.args as string[]).slice(1), resolved).values;
    assert.equal(config.policySource, 'kubernetes');
    assert.equal(config.meshNamespace, 'tether-system');
    assert.equal(config.logLevel, 'debug');
    assert.equal(config.serviceName, 'web');
    assert.equal(config.otlpEndpoint, 'http://jaeger:4318');
  });
});

describe("the sidecar's ServiceAccount token", () => {
  test('the sidecar mounts its own projected token, so automountServiceAccountToken: false pods still get policy', () => {
    const r = admit(pod(undefined, { automountServiceAccountToken: false }));
    const c = sidecarOf(r.pod);
    assert.deepEqual(c?.volumeMounts, [
      { name: 'tether-token', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true },
    ]);
    const vol = (
      r.pod.spec?.volumes as { name: string; projected: { sources: Record<string, unknown>[] } }[]
    ).find((v) => v.name === 'tether-token');
    assert.deepEqual(
      vol?.projected.sources.map((x) => Object.keys(x)[0]),
      ['serviceAccountToken', 'configMap', 'downwardAPI'],
    );
    assert.equal(
      r.pod.spec?.containers[0]?.volumeMounts,
      undefined,
      'the app container is left as the pod asked',
    );
    assert.equal(r.pod.spec?.automountServiceAccountToken, false);
  });

  test('a pod volume named tether-token is refused rather than shadowed', () => {
    const r = admit(pod(undefined, { volumes: [{ name: 'tether-token', emptyDir: {} }] }));
    assert.equal(r.response.allowed, false);
    assert.match(r.response.status?.message ?? '', /volume name tether-token is reserved/);
  });
});

describe('resources and per-pod overrides', () => {
  test('defaults: 20m CPU and 64Mi requested, 256Mi memory limit, no CPU limit', () => {
    assert.deepEqual(sidecarOf(admit(pod()).pod)?.resources, {
      requests: { cpu: '20m', memory: '64Mi' },
      limits: { memory: '256Mi' },
    });
  });

  test('annotations override each request and limit; "none" removes one', () => {
    const r = admit(
      pod({
        'tether.io/inject': 'true',
        'tether.io/proxy-cpu-request': '100m',
        'tether.io/proxy-memory-request': '128Mi',
        'tether.io/proxy-cpu-limit': '1',
        'tether.io/proxy-memory-limit': 'none',
        'tether.io/log-level': 'debug',
      }),
    );
    const c = sidecarOf(r.pod);
    assert.deepEqual(c?.resources, { requests: { cpu: '100m', memory: '128Mi' }, limits: { cpu: '1' } });
    assert.equal(envOf(c).TETHER_LOG_LEVEL, 'debug');
  });

  test('bad annotations deny the pod with every problem named', () => {
    const r = admit(
      pod({
        'tether.io/inject': 'true',
        'tether.io/proxy-cpu-request': 'lots',
        'tether.io/log-level': 'loud',
        'tether.io/sidecar-mode': 'sideways',
      }),
    );
    assert.equal(r.response.allowed, false);
    assert.equal(r.response.status?.code, 400);
    const msg = r.response.status?.message ?? '';
    assert.match(msg, /tether\.io\/proxy-cpu-request: "lots" is not a Kubernetes quantity/);
    assert.match(msg, /tether\.io\/log-level: "loud" must be one of/);
    assert.match(msg, /tether\.io\/sidecar-mode: "sideways" must be one of native, legacy/);
    assert.equal(r.outcome.action, 'denied');
  });

  test('an app port that collides with the proxy ports denies the pod', () => {
    const r = admit(
      pod(undefined, { containers: [{ name: 'app', image: 'a', ports: [{ containerPort: 15020 }] }] }),
    );
    assert.equal(r.response.allowed, false);
    assert.match(r.response.status?.message ?? '', /container app declares port 15020/);
  });
});

describe('who gets injected', () => {
  test('pod scope: no annotation, no injection, no patch', () => {
    const r = admit(pod({}));
    assert.equal(r.response.allowed, true);
    assert.equal(r.response.patch, undefined);
    assert.equal(r.outcome.action, 'skipped');
  });

  test('namespace scope: an unannotated pod is injected; tether.io/inject "false" opts out', () => {
    assert.ok(sidecarOf(admit(pod({}), NS_SCOPE).pod));
    const out = admit(pod({ 'tether.io/inject': 'false' }), NS_SCOPE);
    assert.equal(out.response.patch, undefined);
    assert.match(out.outcome.reason ?? '', /opted out/);
  });

  test('a tether.io/inject value other than true/false is an error, not a guess', () => {
    const r = admit(pod({ 'tether.io/inject': 'yes' }));
    assert.equal(r.response.allowed, false);
    assert.match(r.response.status?.message ?? '', /tether\.io\/inject: "yes" must be "true" or "false"/);
  });

  test('hostNetwork pods are not injected, and an explicit opt-in gets a warning saying why', () => {
    const r = admit(pod(undefined, { hostNetwork: true }));
    assert.equal(r.response.patch, undefined);
    assert.match(r.response.warnings?.[0] ?? '', /hostNetwork/);
  });

  test('only Pod CREATE is mutated', () => {
    const r = review(admissionReview(pod(), { operation: 'UPDATE' }), POD_SCOPE, OPTS);
    assert.equal(r.response.allowed, true);
    assert.equal(r.response.patch, undefined);
  });
});

describe('idempotence and re-invocation', () => {
  test('injecting an injected pod changes nothing: the webhook answers without a patch', () => {
    const once = admit(pod()).pod;
    const again = admit(once);
    assert.equal(again.response.allowed, true);
    assert.equal(again.response.patch, undefined);
    assert.equal(again.outcome.action, 'unchanged');
  });

  test('re-invocation after another webhook added a container: only that container gets the env', () => {
    const injected = admit(pod()).pod;
    injected.spec?.containers.push({ name: 'added-later', image: 'x' });
    const r = admit(injected);
    assert.ok(r.ops.length > 0);
    assert.ok(
      r.ops.every((op) => op.path.startsWith('/spec/containers/1/env')),
      JSON.stringify(r.ops),
    );
    assert.equal(envOf(r.pod.spec?.containers[1]).HTTP_PROXY, 'http://127.0.0.1:15001');
    assert.equal((r.pod.spec?.initContainers ?? []).filter((c) => c.name === 'tether-proxy').length, 1);
  });

  test('a container with its own HTTP_PROXY keeps its env untouched, with a warning', () => {
    const p = pod(undefined, {
      containers: [{ name: 'app', image: 'a', env: [{ name: 'HTTP_PROXY', value: 'http://corp:3128' }] }],
    });
    const r = admit(p);
    assert.deepEqual(r.pod.spec?.containers[0]?.env, [{ name: 'HTTP_PROXY', value: 'http://corp:3128' }]);
    assert.match(r.response.warnings?.[0] ?? '', /container app sets HTTP_PROXY itself/);
  });

  test('uninject(inject(pod)) is the original pod', () => {
    const original = pod(undefined, {
      initContainers: [{ name: 'migrate', image: 'm', env: [{ name: 'A', value: '1' }] }],
    });
    assert.deepEqual(uninjectPod(injectPod(original, OPTS).pod), original);
    const legacy = pod({ 'tether.io/inject': 'true', 'tether.io/sidecar-mode': 'legacy' });
    assert.deepEqual(uninjectPod(injectPod(legacy, OPTS).pod), legacy);
  });
});

describe('legacy sidecar (clusters before 1.29)', () => {
  test('chosen per pod by annotation: tether-proxy first in containers, no restartPolicy, postStart waits for it', () => {
    const r = admit(pod({ 'tether.io/inject': 'true', 'tether.io/sidecar-mode': 'legacy' }));
    const containers = r.pod.spec?.containers ?? [];
    assert.deepEqual(
      containers.map((c) => c.name),
      ['tether-proxy', 'app'],
    );
    assert.equal(containers[0]?.restartPolicy, undefined);
    assert.equal(r.pod.spec?.initContainers, undefined);
    assert.deepEqual(containers[0]?.lifecycle, {
      postStart: { exec: { command: ['node', '-e', WAIT_FOR_PROXY_SCRIPT] } },
    });
  });

  test('chosen for every pod by the injector setting --sidecar-mode legacy', () => {
    const r = admit(pod(), POD_SCOPE, defaultInjectOptions(['--sidecar-mode', 'legacy']));
    assert.equal(r.pod.spec?.containers[0]?.name, 'tether-proxy');
  });

  test('the postStart script returns only once /startupz answers 200', async () => {
    let ready = false;
    let hits = 0;
    const server = createServer((req, res) => {
      hits++;
      res.writeHead(req.url === '/startupz' && ready ? 200 : 503).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      const script = WAIT_FOR_PROXY_SCRIPT.replace(`:${ADMIN_PORT}/`, `:${port}/`);
      assert.notEqual(script, WAIT_FOR_PROXY_SCRIPT);
      const started = Date.now();
      const child = spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
      const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
      setTimeout(() => (ready = true), 1000);
      const code = await exited;
      assert.equal(code, 0);
      assert.ok(Date.now() - started >= 900, 'returned before the proxy was ready');
      assert.ok(hits >= 2, `polled ${hits} times`);
    } finally {
      server.close();
    }
  });
});

describe('iptables capture (opt-in)', () => {
  test('tether.io/capture: iptables adds a NET_ADMIN init container before the sidecar that redirects the listed ports', () => {
    const r = admit(
      pod({
        'tether.io/inject': 'true',
        'tether.io/capture': 'iptables',
        'tether.io/capture-ports': '80, 8080',
      }),
    );
    const init = r.pod.spec?.initContainers ?? [];
    assert.deepEqual(
      init.map((c) => c.name),
      ['tether-capture', 'tether-proxy'],
    );
    const sc = init[0]?.securityContext as { capabilities: { add: string[] }; runAsUser: number };
    assert.deepEqual(sc.capabilities.add, ['NET_ADMIN', 'NET_RAW']);
    assert.equal(sc.runAsUser, 0);
    const script = (init[0]?.command as string[])[2] ?? '';
    assert.equal(script, captureScript([80, 8080]));
    assert.match(script, /--uid-owner 15001 -j RETURN/);
    assert.match(script, /--dport 80 -j REDIRECT --to-ports 15001/);
    assert.match(script, /--dport 8080 -j REDIRECT --to-ports 15001/);
  });

  test('off by default, and capture without ports is an error', () => {
    assert.equal(
      admit(pod()).pod.spec?.initContainers?.some((c) => c.name === 'tether-capture'),
      false,
    );
    const r = admit(pod({ 'tether.io/inject': 'true', 'tether.io/capture': 'iptables' }));
    assert.equal(r.response.allowed, false);
    assert.match(r.response.status?.message ?? '', /tether\.io\/capture-ports: required/);
  });
});

describe('annotating workloads', () => {
  const deployment = (
    annotations?: Record<string, string>,
    templateAnnotations?: Record<string, string>,
  ) => ({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace: 'shop', ...(annotations ? { annotations } : {}) },
    spec: {
      selector: { matchLabels: { app: 'web' } },
      template: {
        metadata: {
          labels: { app: 'web' },
          ...(templateAnnotations ? { annotations: templateAnnotations } : {}),
        },
        spec: { containers: [{ name: 'app', image: 'web:1' }] },
      },
    },
  });
  const admitWorkload = (obj: ReturnType<typeof deployment>, old?: ReturnType<typeof deployment>) => {
    const r = review(
      admissionReview(obj, {
        kind: 'Deployment',
        operation: old ? 'UPDATE' : 'CREATE',
        ...(old ? { oldObject: old } : {}),
      }),
      { what: 'workloads' },
      OPTS,
    );
    const ops = r.response.patch
      ? (JSON.parse(Buffer.from(r.response.patch, 'base64').toString()) as PatchOperation[])
      : [];
    return { ...r, obj: applyPatchCopy(obj, ops) };
  };

  test('kubectl annotate deployment web tether.io/inject=true: the annotation is copied onto the pod template', () => {
    const before = deployment();
    const r = admitWorkload(deployment({ 'tether.io/inject': 'true' }), before);
    assert.equal(r.obj.spec.template.metadata.annotations?.['tether.io/inject'], 'true');
    assert.equal(r.outcome.action, 'propagated');
  });

  test('removing it from the Deployment removes it from the template; one written on the template itself stays', () => {
    const annotated = deployment({ 'tether.io/inject': 'true' }, { 'tether.io/inject': 'true', keep: 'me' });
    const r = admitWorkload(deployment(undefined, { 'tether.io/inject': 'true', keep: 'me' }), annotated);
    assert.deepEqual(r.obj.spec.template.metadata.annotations, { keep: 'me' });
    const own = admitWorkload(deployment(undefined, { 'tether.io/inject': 'true' }), deployment());
    assert.equal(own.response.patch, undefined);
  });

  test('an annotation already in step produces no patch (no needless rollout)', () => {
    const obj = deployment({ 'tether.io/inject': 'false' }, { 'tether.io/inject': 'false' });
    assert.equal(admitWorkload(obj, obj).response.patch, undefined);
  });

  test('a bad value is refused on the Deployment itself', () => {
    const r = admitWorkload(deployment({ 'tether.io/inject': 'on' }));
    assert.equal(r.response.allowed, false);
    assert.match(r.response.status?.message ?? '', /must be "true" or "false"/);
  });
});
