// Injection against a real control plane: chart installed with the webhook pointed at tether-injector on the
// host; Deployments, annotations, namespace labels, opt-out, re-invocation, injector outage, upgrade, uninstall.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startCluster, type Cluster } from './lib/cluster.ts';
import { assertBinaries, skipUnlessBinaries } from './lib/testbin.ts';
import {
  CHART,
  eventually,
  exec,
  helm,
  hostWebhookValues,
  injectorEnvFromCluster,
  isInjectedPod,
  kubectl,
  kubectlJson,
  sidecarOf,
  startHostInjector,
  tetherctl,
  type HostInjector,
  type KPod,
} from './inject-support.ts';
import { kubectlBin } from './lib/testbin.ts';
import { TETHER_VERSION } from '../src/inject/names.ts';

const BINS = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kubectl', 'helm'] as const;

const deployment = (
  name: string,
  ns: string,
  templateAnnotations: Record<string, string> = {},
  replicas = 1,
): string =>
  JSON.stringify({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: ns },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name }, annotations: templateAnnotations },
        spec: {
          containers: [
            { name: 'app', image: 'example.invalid/app:1', ports: [{ name: 'http', containerPort: 8080 }] },
          ],
        },
      },
    },
  });

const pod = (name: string, ns: string, annotations: Record<string, string> = {}): string =>
  JSON.stringify({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: ns, labels: { app: name }, annotations },
    spec: { containers: [{ name: 'app', image: 'example.invalid/app:1' }] },
  });

describe('injection on a real control plane', { skip: skipUnlessBinaries(BINS) }, () => {
  let cluster: Cluster;
  let injector: HostInjector;
  let kc: string;
  const k = (args: string[], input?: string): string =>
    kubectl(kc, args, input !== undefined ? { input } : {});
  const podsOf = (ns: string, selector: string): KPod[] =>
    kubectlJson<{ items: KPod[] }>(kc, ['get', 'pods', '-n', ns, '-l', selector]).items;

  before(
    async () => {
      assertBinaries(BINS);
      cluster = await startCluster();
      kc = cluster.kubeconfigPath;
      injector = await startHostInjector();
      helm(kc, [
        'install',
        'tether',
        CHART,
        '-n',
        'tether-system',
        '--create-namespace',
        '--wait=false',
        ...hostWebhookValues(injector),
      ]);
      // Run the host injector with the env the chart gives the in-cluster one.
      await injector.restartWithEnv(injectorEnvFromCluster(kc));
      k(['create', 'namespace', 'shop']);
    },
    { timeout: 180_000 },
  );
  after(
    async () => {
      await injector?.close();
      await cluster?.stop();
    },
    { timeout: 60_000 },
  );

  test(
    'a Deployment annotated on its template gets Pods with the native sidecar, probes, env and resources',
    { timeout: 90_000 },
    async () => {
      k(['apply', '-f', '-'], deployment('web', 'shop', { 'tether.io/inject': 'true' }, 2));
      const pods = await eventually('2 pods of web', () => {
        const p = podsOf('shop', 'app=web');
        return p.length === 2 ? p : undefined;
      });
      for (const p of pods) {
        assert.equal(p.status?.phase, 'Pending', 'no kubelet: pods stay Pending');
        const init = p.spec.initContainers ?? [];
        assert.equal(init[0]?.name, 'tether-proxy');
        assert.equal(init[0]?.restartPolicy, 'Always');
        assert.deepEqual(init[0]?.startupProbe?.httpGet, {
          path: '/startupz',
          port: 'tether-admin',
          scheme: 'HTTP',
        });
        assert.equal(init[0]?.livenessProbe?.httpGet?.path, '/livez');
        assert.equal(init[0]?.readinessProbe?.httpGet?.path, '/readyz');
        assert.deepEqual(
          init[0]?.ports?.map((x) => [x.name, x.containerPort]),
          [['tether-admin', 15020]],
        );
        assert.deepEqual(init[0]?.resources, {
          requests: { cpu: '20m', memory: '64Mi' },
          limits: { memory: '256Mi' },
        });
        assert.equal(init[0]?.securityContext?.runAsNonRoot, true);
        assert.equal(init[0]?.securityContext?.readOnlyRootFilesystem, true);
        // Its own token, mounted once: the ServiceAccount admission plugin (run again after the webhook)
        // leaves a container that already mounts the token path alone.
        assert.deepEqual(
          init[0]?.volumeMounts?.map((m) => [m.name, m.mountPath]),
          [['tether-token', '/var/run/secrets/kubernetes.io/serviceaccount']],
        );
        const env = Object.fromEntries((p.spec.containers[0]?.env ?? []).map((e) => [e.name, e.value]));
        assert.equal(env.HTTP_PROXY, 'http://127.0.0.1:15001');
        assert.equal(env.NODE_USE_ENV_PROXY, '1');
        assert.match(env.NO_PROXY ?? '', /kubernetes\.default\.svc/);
        assert.equal(p.metadata.annotations?.['tether.io/injected'], TETHER_VERSION);
      }
    },
  );

  test(
    'kubectl annotate deployment tether.io/inject=true rolls out injected pods; removing it rolls back out',
    { timeout: 120_000 },
    async () => {
      k(['apply', '-f', '-'], deployment('api', 'shop'));
      const first = await eventually('a pod of api', () => podsOf('shop', 'app=api')[0]);
      assert.equal(isInjectedPod(first), false);

      k(['annotate', 'deployment', 'api', '-n', 'shop', 'tether.io/inject=true']);
      const template = kubectlJson<{
        spec: { template: { metadata: { annotations?: Record<string, string> } } };
      }>(kc, ['get', 'deployment', 'api', '-n', 'shop']);
      assert.equal(
        template.spec.template.metadata.annotations?.['tether.io/inject'],
        'true',
        'the webhook copied the annotation onto the template',
      );
      const injected = await eventually('an injected pod of a new ReplicaSet', () =>
        podsOf('shop', 'app=api').find(isInjectedPod),
      );
      assert.notEqual(
        injected.metadata.labels?.['pod-template-hash'],
        first.metadata.labels?.['pod-template-hash'],
        'a new ReplicaSet',
      );

      k(['annotate', 'deployment', 'api', '-n', 'shop', 'tether.io/inject-']);
      const after = kubectlJson<{
        spec: { template: { metadata: { annotations?: Record<string, string> } } };
      }>(kc, ['get', 'deployment', 'api', '-n', 'shop']);
      assert.equal(after.spec.template.metadata.annotations?.['tether.io/inject'], undefined);
      // Back to the first template: its ReplicaSet becomes the newest revision again, and it holds un-injected
      // pods. (The injected one is not scaled down: with no kubelet, no pod ever becomes available.)
      type RS = {
        metadata: { labels: Record<string, string>; annotations: Record<string, string> };
        spec: { replicas: number };
      };
      const newest = await eventually('the first ReplicaSet is the newest revision again', () => {
        const rs = kubectlJson<{ items: RS[] }>(kc, ['get', 'rs', '-n', 'shop', '-l', 'app=api']).items;
        const top = rs.sort(
          (x, y) =>
            Number(y.metadata.annotations['deployment.kubernetes.io/revision']) -
            Number(x.metadata.annotations['deployment.kubernetes.io/revision']),
        )[0];
        return top?.metadata.labels['pod-template-hash'] === first.metadata.labels?.['pod-template-hash']
          ? top
          : undefined;
      });
      assert.equal(newest.spec.replicas, 1);
      const current = podsOf(
        'shop',
        `app=api,pod-template-hash=${newest.metadata.labels['pod-template-hash']}`,
      );
      assert.ok(current.length >= 1 && current.every((p) => !isInjectedPod(p)));
    },
  );

  test(
    'a namespace labelled tether.io/inject=enabled injects every pod; tether.io/inject "false" opts out',
    { timeout: 60_000 },
    () => {
      k(['create', 'namespace', 'mesh-on']);
      k(['label', 'namespace', 'mesh-on', 'tether.io/inject=enabled']);
      k(['apply', '-f', '-'], pod('plain', 'mesh-on'));
      k(['apply', '-f', '-'], pod('opted-out', 'mesh-on', { 'tether.io/inject': 'false' }));
      const get = (name: string): KPod => kubectlJson<KPod>(kc, ['get', 'pod', name, '-n', 'mesh-on']);
      assert.equal(isInjectedPod(get('plain')), true);
      assert.equal(isInjectedPod(get('opted-out')), false);
      // Labelled out: the API server does not even call the injector (objectSelector).
      const labelled = JSON.parse(pod('labelled-out', 'mesh-on')) as {
        metadata: { labels: Record<string, string> };
      };
      labelled.metadata.labels['tether.io/inject'] = 'false';
      k(['apply', '-f', '-'], JSON.stringify(labelled));
      assert.equal(isInjectedPod(get('labelled-out')), false);
      assert.deepEqual(injector.logLines('labelled-out'), []);
      assert.ok(
        injector.logLines('mesh-on/opted-out').length > 0,
        'the annotated opt-out was seen and skipped',
      );
      // And outside it, no annotation means no sidecar.
      k(['apply', '-f', '-'], pod('plain', 'shop'));
      assert.equal(isInjectedPod(kubectlJson<KPod>(kc, ['get', 'pod', 'plain', '-n', 'shop'])), false);
    },
  );

  test(
    'automountServiceAccountToken: false: the sidecar still has a token to read policy with, the app has none',
    { timeout: 30_000 },
    () => {
      const spec = JSON.parse(pod('no-token', 'shop', { 'tether.io/inject': 'true' })) as {
        spec: Record<string, unknown>;
      };
      spec.spec.automountServiceAccountToken = false;
      k(['apply', '-f', '-'], JSON.stringify(spec));
      const p = kubectlJson<KPod & { spec: { volumes?: { name: string }[] } }>(kc, [
        'get',
        'pod',
        'no-token',
        '-n',
        'shop',
      ]);
      assert.deepEqual(
        sidecarOf(p)?.volumeMounts?.map((m) => m.name),
        ['tether-token'],
      );
      assert.equal(p.spec.containers[0]?.volumeMounts, undefined);
      assert.deepEqual(
        p.spec.volumes?.map((v) => v.name),
        ['tether-token'],
      );
    },
  );

  test(
    'tetherctl inject prints what the webhook produces, and re-admitting an injected pod changes nothing',
    { timeout: 60_000 },
    () => {
      const spec = pod('same', 'shop', {
        'tether.io/inject': 'true',
        'tether.io/proxy-memory-limit': '512Mi',
      });
      // Server-side dry-run runs the webhooks and the API server's defaulting, and stores nothing.
      const viaWebhook = k(['create', '--dry-run=server', '-o', 'json', '-f', '-'], spec);
      const offline = tetherctl(['inject', '-f', '-'], { input: spec });
      const viaCli = k(['create', '--dry-run=server', '-o', 'json', '-f', '-'], offline);
      const normalize = (json: string): unknown => {
        const p = JSON.parse(json.replace(/kube-api-access-[a-z0-9]{5}/g, 'kube-api-access')) as {
          metadata: Record<string, unknown>;
        };
        delete p.metadata.uid;
        delete p.metadata.creationTimestamp;
        return p;
      };
      assert.deepEqual(normalize(viaCli), normalize(viaWebhook));
      const sidecar = sidecarOf(JSON.parse(viaWebhook) as KPod);
      assert.equal(sidecar?.resources?.limits?.memory, '512Mi');
      assert.ok(
        injector.logLines('"action":"unchanged"').some((l) => l.includes('already injected')),
        'the already-injected pod was seen and left alone',
      );
    },
  );

  test(
    "a bad tether.io annotation is refused by the API server with the injector's reason",
    { timeout: 30_000 },
    () => {
      const r = exec(kubectlBin(), ['--kubeconfig', kc, 'create', '-f', '-'], {
        input: pod('bad', 'shop', { 'tether.io/inject': 'true', 'tether.io/proxy-cpu-request': 'lots' }),
      });
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /tether\.io\/proxy-cpu-request: "lots" is not a Kubernetes quantity/);
    },
  );

  test(
    'helm upgrade keeps the webhook working and its certificate unchanged; new values reach new pods',
    { timeout: 120_000 },
    async () => {
      const secret = (): string =>
        k([
          'get',
          'secret',
          'tether-injector-tls',
          '-n',
          'tether-system',
          '-o',
          'jsonpath={.data.tls\\.crt}',
        ]);
      const before = secret();
      assert.ok(before.length > 100);
      helm(kc, [
        'upgrade',
        'tether',
        CHART,
        '-n',
        'tether-system',
        '--reuse-values',
        '--set',
        'sidecar.logLevel=debug',
      ]);
      assert.equal(
        secret(),
        before,
        'the self-signed certificate survives upgrades (lookup of the existing Secret)',
      );
      await injector.restartWithEnv(injectorEnvFromCluster(kc));
      k(['apply', '-f', '-'], pod('after-upgrade', 'shop', { 'tether.io/inject': 'true' }));
      const upgraded = sidecarOf(kubectlJson<KPod>(kc, ['get', 'pod', 'after-upgrade', '-n', 'shop']));
      assert.equal(upgraded?.env?.find((e) => e.name === 'TETHER_LOG_LEVEL')?.value, 'debug');
    },
  );

  test(
    'injector down: pods are still created, without the sidecar (failurePolicy Ignore)',
    { timeout: 90_000 },
    async () => {
      await injector.stop();
      try {
        const started = Date.now();
        k(['apply', '-f', '-'], deployment('during-outage', 'shop', { 'tether.io/inject': 'true' }));
        const p = await eventually('a pod of during-outage', () => podsOf('shop', 'app=during-outage')[0]);
        assert.equal(isInjectedPod(p), false);
        assert.ok(
          Date.now() - started < 30_000,
          'an unreachable injector does not hold pod creation for long',
        );
        k(['annotate', 'deployment', 'during-outage', '-n', 'shop', 'tether.io/inject=false']);
      } finally {
        await injector.start();
      }
    },
  );

  test('helm uninstall leaves no webhook behind', { timeout: 120_000 }, () => {
    helm(kc, ['uninstall', 'tether', '-n', 'tether-system', '--wait']);
    const hooks = kubectlJson<{ items: unknown[] }>(kc, ['get', 'mutatingwebhookconfigurations']).items;
    assert.deepEqual(hooks, []);
    assert.equal(
      exec(kubectlBin(), ['--kubeconfig', kc, 'get', 'secret', 'tether-injector-tls', '-n', 'tether-system'])
        .status,
      1,
    );
    assert.equal(
      exec(kubectlBin(), ['--kubeconfig', kc, 'get', 'clusterrole', 'tether-policy-reader']).status,
      1,
    );
    // The injector still runs, but nothing calls it any more.
    k(['apply', '-f', '-'], pod('after-uninstall', 'shop', { 'tether.io/inject': 'true' }));
    assert.equal(
      isInjectedPod(kubectlJson<KPod>(kc, ['get', 'pod', 'after-uninstall', '-n', 'shop'])),
      false,
    );
    assert.deepEqual(injector.logLines('after-uninstall'), []);
  });
});
