// Owns the smoke tests proving the e2e infrastructure itself works: real control plane, kubectl, client-node, Jaeger.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { AppsV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { createServiceAccountKubeconfig, startCluster } from './lib/cluster.ts';
import type { Cluster } from './lib/cluster.ts';
import { startJaeger } from './lib/jaeger.ts';
import type { Jaeger } from './lib/jaeger.ts';
import { pidAlive, run, waitUntil } from './lib/proc.ts';
import { assertBinaries, helmBin, kubectlBin, skipUnlessBinaries } from './lib/testbin.ts';

const CLUSTER_BINS = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kubectl'] as const;

function statusCode(err: unknown): number | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? Number(err.code) : undefined;
}

// Skip is set per test (not on the suite) so the runner's summary counts skipped tests.
const clusterSkip = skipUnlessBinaries(CLUSTER_BINS);
const jaegerSkip = skipUnlessBinaries(['jaeger']);

describe('control plane (etcd + kube-apiserver + kube-controller-manager)', () => {
  let cluster: Cluster | undefined;
  const need = (): Cluster => {
    assert.ok(cluster, 'cluster did not start');
    return cluster;
  };

  before(
    async () => {
      if (clusterSkip !== false) return;
      assertBinaries(CLUSTER_BINS);
      cluster = await startCluster();
    },
    { timeout: 180_000 },
  );
  after(() => cluster?.stop(), { timeout: 60_000 });

  test('kubectl get ns works with the admin kubeconfig', { skip: clusterSkip, timeout: 30_000 }, () => {
    const out = run(kubectlBin(), ['--kubeconfig', need().kubeconfigPath, 'get', 'ns', '-o', 'name'], {
      timeoutMs: 20_000,
    });
    assert.match(out, /^namespace\/default$/m);
    assert.match(out, /^namespace\/kube-system$/m);
  });

  test('the apiserver reports the version it was built as', { skip: clusterSkip, timeout: 30_000 }, () => {
    const out = run(kubectlBin(), ['--kubeconfig', need().kubeconfigPath, 'version', '-o', 'json'], {
      timeoutMs: 20_000,
    });
    const server = (JSON.parse(out) as { serverVersion?: { gitVersion?: string; minor?: string } })
      .serverVersion;
    assert.match(
      server?.gitVersion ?? '',
      /^v1\.\d+\.\d+$/,
      'helm kubeVersion checks need a real gitVersion',
    );
    assert.notEqual(server?.minor, '0');
  });

  test(
    'a ConfigMap round-trips through @kubernetes/client-node',
    { skip: clusterSkip, timeout: 30_000 },
    async () => {
      const core = need().kubeConfig().makeApiClient(CoreV1Api);
      await core.createNamespacedConfigMap({
        namespace: 'default',
        body: { metadata: { name: 'infra-smoke' }, data: { 'policy.yaml': 'hello: world\n' } },
      });
      const cm = await core.readNamespacedConfigMap({ name: 'infra-smoke', namespace: 'default' });
      assert.equal(cm.data?.['policy.yaml'], 'hello: world\n');
    },
  );

  test(
    'a Deployment gets a ReplicaSet and Pending Pods from the controller manager',
    { skip: clusterSkip, timeout: 60_000 },
    async () => {
      const kc = need().kubeConfig();
      const apps = kc.makeApiClient(AppsV1Api);
      const core = kc.makeApiClient(CoreV1Api);
      const labels = { app: 'infra-smoke' };
      await apps.createNamespacedDeployment({
        namespace: 'default',
        body: {
          metadata: { name: 'infra-smoke' },
          spec: {
            replicas: 2,
            selector: { matchLabels: labels },
            template: {
              metadata: { labels },
              spec: { containers: [{ name: 'app', image: 'example.invalid/app:1' }] },
            },
          },
        },
      });
      await waitUntil(
        'ReplicaSet + 2 Pods for deployment infra-smoke',
        async () => {
          const rs = await apps.listNamespacedReplicaSet({
            namespace: 'default',
            labelSelector: 'app=infra-smoke',
          });
          const pods = await core.listNamespacedPod({
            namespace: 'default',
            labelSelector: 'app=infra-smoke',
          });
          return rs.items.length === 1 && pods.items.length === 2;
        },
        { timeoutMs: 45_000, intervalMs: 250 },
      );
      const pods = await core.listNamespacedPod({ namespace: 'default', labelSelector: 'app=infra-smoke' });
      // No kubelet and no scheduler: the pods exist and stay Pending, which is all admission tests need.
      for (const pod of pods.items) assert.equal(pod.status?.phase, 'Pending');
    },
  );

  test(
    'a ServiceAccount kubeconfig has exactly the granted rights',
    { skip: clusterSkip, timeout: 30_000 },
    async () => {
      const c = need();
      const core = c.kubeConfig().makeApiClient(CoreV1Api);
      await core.createNamespace({ body: { metadata: { name: 'smoke-sa' } } });
      await core.createNamespacedConfigMap({
        namespace: 'smoke-sa',
        body: { metadata: { name: 'tether-policy' }, data: { a: '1' } },
      });
      await core.createNamespacedConfigMap({
        namespace: 'smoke-sa',
        body: { metadata: { name: 'other' }, data: { b: '2' } },
      });
      const { kubeconfigPath, token } = await createServiceAccountKubeconfig(c, {
        namespace: 'smoke-sa',
        name: 'sidecar',
        rules: [
          { apiGroups: [''], resources: ['configmaps'], resourceNames: ['tether-policy'], verbs: ['get'] },
        ],
      });
      assert.ok(token.length > 20);
      const kc = new KubeConfig();
      kc.loadFromFile(kubeconfigPath);
      const sa = kc.makeApiClient(CoreV1Api);
      const cm = await sa.readNamespacedConfigMap({ name: 'tether-policy', namespace: 'smoke-sa' });
      assert.equal(cm.data?.['a'], '1');
      await assert.rejects(
        sa.readNamespacedConfigMap({ name: 'other', namespace: 'smoke-sa' }),
        (err) => statusCode(err) === 403,
      );
      await assert.rejects(
        sa.listNamespacedSecret({ namespace: 'smoke-sa' }),
        (err) => statusCode(err) === 403,
      );
      const whoami = run(
        kubectlBin(),
        ['--kubeconfig', kubeconfigPath, 'auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}'],
        {
          timeoutMs: 20_000,
        },
      );
      assert.equal(whoami, 'system:serviceaccount:smoke-sa:sidecar');
    },
  );

  test(
    'kube-apiserver can be killed and restarted on the same port while etcd keeps the data',
    { skip: clusterSkip, timeout: 120_000 },
    async () => {
      const c = need();
      const core = c.kubeConfig().makeApiClient(CoreV1Api);
      const before = c.pids();
      await c.stopApiServer();
      assert.equal(c.pids()['kube-apiserver'], undefined);
      assert.equal(c.pids()['etcd'], before['etcd']);
      await assert.rejects(
        core.readNamespacedConfigMap({ name: 'infra-smoke', namespace: 'default' }),
        (err) => /ECONNREFUSED/.test(String((err as { cause?: unknown }).cause ?? err)),
      );
      await c.startApiServer();
      assert.notEqual(c.pids()['kube-apiserver'], before['kube-apiserver']);
      const cm = await core.readNamespacedConfigMap({ name: 'infra-smoke', namespace: 'default' });
      assert.equal(cm.data?.['policy.yaml'], 'hello: world\n');
    },
  );

  test(
    'helm runs and sees the cluster version',
    { skip: clusterSkip || skipUnlessBinaries(['helm']), timeout: 30_000 },
    () => {
      const out = run(helmBin(), ['version', '--short'], { timeoutMs: 20_000 });
      assert.match(out, /^v3\./);
      // `helm list` needs a reachable cluster: proves helm can talk to it.
      const rendered = run(
        helmBin(),
        ['--kubeconfig', need().kubeconfigPath, 'list', '--all-namespaces', '-o', 'json'],
        { timeoutMs: 20_000 },
      );
      assert.deepEqual(JSON.parse(rendered), []);
    },
  );

  test('stop() leaves no processes and no state behind', { skip: clusterSkip, timeout: 60_000 }, async () => {
    const c = need();
    const pids = Object.values(c.pids());
    assert.equal(pids.length, 3);
    await c.stop();
    for (const pid of pids) assert.equal(pidAlive(pid), false, `pid ${pid} still alive`);
    assert.equal(existsSync(c.dir), false);
  });
});

describe('jaeger v2 (OTLP/HTTP in, query API out)', () => {
  let jaeger: Jaeger | undefined;
  before(
    async () => {
      if (jaegerSkip !== false) return;
      assertBinaries(['jaeger']);
      jaeger = await startJaeger();
    },
    { timeout: 90_000 },
  );
  after(() => jaeger?.stop(), { timeout: 30_000 });

  test(
    'a span posted as OTLP/HTTP JSON is found through the query API',
    { skip: jaegerSkip, timeout: 30_000 },
    async () => {
      assert.ok(jaeger);
      const traceId = randomBytes(16).toString('hex');
      const spanId = randomBytes(8).toString('hex');
      const nowNs = BigInt(Date.now()) * 1_000_000n;
      const body = {
        resourceSpans: [
          {
            resource: { attributes: [{ key: 'service.name', value: { stringValue: 'tether-infra-smoke' } }] },
            scopeSpans: [
              {
                scope: { name: 'infra.test' },
                spans: [
                  {
                    traceId,
                    spanId,
                    name: 'smoke-span',
                    kind: 3,
                    startTimeUnixNano: String(nowNs - 5_000_000n),
                    endTimeUnixNano: String(nowNs),
                    attributes: [{ key: 'error.type', value: { stringValue: 'connect_timeout' } }],
                  },
                ],
              },
            ],
          },
        ],
      };
      const res = await fetch(jaeger.otlpTracesUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(5_000),
      });
      assert.equal(res.status, 200, await res.text());
      const traces = await jaeger.waitForTraces('tether-infra-smoke', (ts) =>
        ts.some((t) => t.traceID === traceId),
      );
      const trace = traces.find((t) => t.traceID === traceId);
      const span = trace?.spans.find((s) => s.spanID === spanId);
      assert.equal(span?.operationName, 'smoke-span');
      assert.ok(span?.tags.some((t) => t.key === 'error.type' && t.value === 'connect_timeout'));
      const byId = await jaeger.getTrace(traceId);
      assert.equal(byId?.spans.length, 1);
    },
  );

  test('stop() leaves no process behind', { skip: jaegerSkip, timeout: 30_000 }, async () => {
    assert.ok(jaeger);
    await jaeger.stop();
    assert.equal(pidAlive(jaeger.pid), false);
  });
});
