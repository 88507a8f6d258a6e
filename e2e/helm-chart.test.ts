// The Helm chart and manifests/ against the real helm and kube-apiserver: lint, template with default and
// non-default values, every rendered object accepted by server-side dry-run, and the contracts between the
// chart and the code (webhook paths, injector env, mesh policy, RBAC rules).

import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseAllDocuments, stringify } from 'yaml';
import { INJECTOR_SETTINGS, loadInjectorConfig } from '../src/config/injector.ts';
import { WEBHOOK_PATHS } from '../src/inject/server.ts';
import { startCluster, type Cluster } from './lib/cluster.ts';
import { assertBinaries, helmBin, skipUnlessBinaries } from './lib/testbin.ts';
import { CHART, exec, kubectl, must, ROOT, tetherctl } from './inject-support.ts';

const BINS = ['etcd', 'kube-apiserver', 'kubectl', 'helm'] as const;

interface Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; annotations?: Record<string, string> };
  [k: string]: unknown;
}

const template = (args: string[]): string =>
  must(helmBin(), ['template', 'tether', CHART, '-n', 'tether-system', ...args]);
const objects = (yaml: string): Obj[] =>
  parseAllDocuments(yaml)
    .map((d) => (Array.isArray(d) ? undefined : (d.toJS() as Obj | null)))
    .filter((o): o is Obj => o !== null && o !== undefined);
const find = (objs: Obj[], kind: string, name?: string): Obj => {
  const o = objs.find((x) => x.kind === kind && (name === undefined || x.metadata.name === name));
  assert.ok(o, `no ${kind} ${name ?? ''} rendered`);
  return o;
};

const CA_BUNDLE = Buffer.from('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n').toString(
  'base64',
);

/** Value sets the chart must render and the API server must accept. */
const VARIANTS: Record<string, string[]> = {
  defaults: [],
  'everything on': [
    '--set', 'jaeger.enabled=true',
    '--set', 'policyReader.namespaces={shop,web}',
    '--set', 'webhook.failurePolicy=Fail',
    '--set', 'webhook.timeoutSeconds=10',
    '--set', 'webhook.excludeNamespaces={legacy}',
    '--set', 'injector.replicas=3',
    '--set', 'injector.nodeSelector.kubernetes\\.io/os=linux',
    '--set', 'imagePullSecrets[0].name=regcred',
    '--set', 'image.repository=registry.example.com/tether',
    '--set', 'image.tag=dev',
    '--set', 'sidecar.mode=legacy',
    '--set', 'sidecar.resources.limits.cpu=500m',
    '--set', 'sidecar.resources.requests.memory=',
    '--set', 'sidecar.captureImage=registry.example.com/iptables:1',
  ], // prettier-ignore
  'all namespaces, one replica, no workloads webhook, webhook URL': [
    '--set', 'policyReader.allNamespaces=true',
    '--set', 'injector.replicas=1',
    '--set', 'webhook.workloads=false',
    '--set', 'webhook.url=https://127.0.0.1:9443',
    '--set', `webhook.caBundle=${CA_BUNDLE}`,
    '--set', 'tracing.otlpEndpoint=http://otel-collector.observability:4318',
    '--set', 'meshPolicy.enabled=false',
  ], // prettier-ignore
};

describe('Helm chart', { skip: skipUnlessBinaries(BINS) }, () => {
  let cluster: Cluster;
  let kc: string;
  let dir: string;

  before(
    async () => {
      assertBinaries(BINS);
      // Dry-run needs no controllers; the namespaces rendered objects live in must exist.
      cluster = await startCluster({ controllerManager: false });
      kc = cluster.kubeconfigPath;
      for (const ns of ['tether-system', 'shop', 'web']) kubectl(kc, ['create', 'namespace', ns]);
      dir = mkdtempSync(join(tmpdir(), 'tether-helm-'));
    },
    { timeout: 180_000 },
  );
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await cluster?.stop();
  });

  test('helm lint --strict passes with default and non-default values', { timeout: 60_000 }, () => {
    must(helmBin(), ['lint', '--strict', CHART]);
    for (const args of Object.values(VARIANTS)) must(helmBin(), ['lint', '--strict', CHART, ...args]);
  });

  for (const [name, args] of Object.entries(VARIANTS)) {
    test(
      `helm template (${name}): every object is accepted by kube-apiserver (server-side dry-run)`,
      { timeout: 60_000 },
      () => {
        const yaml = template(args);
        const objs = objects(yaml);
        assert.ok(objs.length >= 8, `${objs.length} objects`);
        const out = kubectl(kc, ['apply', '--dry-run=server', '-f', '-'], { input: yaml });
        assert.equal(out.trim().split('\n').length, objs.length, out);
        assert.ok(
          out
            .split('\n')
            .filter(Boolean)
            .every((l) => l.endsWith('(server dry run)')),
          out,
        );
      },
    );
  }

  test(
    'with cert-manager: Issuer and Certificate feed the Secret the injector mounts; the rest passes dry-run',
    { timeout: 60_000 },
    () => {
      const objs = objects(template(['--set', 'webhook.tls.certManager.enabled=true']));
      const cert = find(objs, 'Certificate') as Obj & {
        spec: { secretName: string; dnsNames: string[]; issuerRef: { name: string } };
      };
      assert.equal(cert.apiVersion, 'cert-manager.io/v1');
      assert.equal(find(objs, 'Issuer').metadata.name, cert.spec.issuerRef.name);
      assert.ok(cert.spec.dnsNames.includes('tether-injector.tether-system.svc'));
      assert.equal(
        objs.some((o) => o.kind === 'Secret'),
        false,
        'cert-manager writes the Secret',
      );
      const deploy = find(objs, 'Deployment', 'tether-injector') as Obj & {
        spec: { template: { spec: { volumes: { secret?: { secretName: string } }[] } } };
      };
      assert.equal(deploy.spec.template.spec.volumes[0]?.secret?.secretName, cert.spec.secretName);
      const hook = find(objs, 'MutatingWebhookConfiguration');
      assert.equal(
        hook.metadata.annotations?.['cert-manager.io/inject-ca-from'],
        `tether-system/${cert.metadata.name}`,
      );
      // No cert-manager CRDs in this cluster: the rest must still be valid.
      const rest = objs.filter((o) => !o.apiVersion.startsWith('cert-manager.io/'));
      const out = kubectl(kc, ['apply', '--dry-run=server', '-f', '-'], {
        input: rest.map((o) => stringify(o)).join('---\n'),
      });
      assert.equal(out.trim().split('\n').length, rest.length);
    },
  );

  test('the webhook: failurePolicy Ignore, a timeout, IfNeeded, system and release namespaces excluded, paths the injector serves', () => {
    const hook = find(objects(template([])), 'MutatingWebhookConfiguration') as Obj & {
      webhooks: {
        name: string;
        failurePolicy: string;
        timeoutSeconds: number;
        reinvocationPolicy: string;
        sideEffects: string;
        clientConfig: { service: { path: string }; caBundle: string };
        namespaceSelector: { matchExpressions: { key: string; operator: string; values: string[] }[] };
      }[];
    };
    assert.deepEqual(
      hook.webhooks.map((w) => w.name),
      ['pods.inject.tether.io', 'namespace.inject.tether.io', 'workloads.inject.tether.io'],
    );
    for (const w of hook.webhooks) {
      assert.equal(w.failurePolicy, 'Ignore');
      assert.equal(w.timeoutSeconds, 5);
      assert.equal(w.reinvocationPolicy, 'IfNeeded');
      assert.equal(w.sideEffects, 'None');
      assert.ok(
        w.clientConfig.service.path in WEBHOOK_PATHS,
        `${w.clientConfig.service.path} is not served by tether-injector`,
      );
      assert.ok(w.clientConfig.caBundle.length > 100);
      const names = w.namespaceSelector.matchExpressions.find((e) => e.key === 'kubernetes.io/metadata.name');
      assert.deepEqual(names?.operator, 'NotIn');
      for (const ns of ['kube-system', 'tether-system']) assert.ok(names?.values.includes(ns), ns);
    }
    const [pods, namespaced] = hook.webhooks;
    for (const w of [pods, namespaced]) {
      assert.deepEqual((w as unknown as { objectSelector: unknown }).objectSelector, {
        matchExpressions: [{ key: 'tether.io/inject', operator: 'NotIn', values: ['false'] }],
      });
    }
    assert.deepEqual(
      pods?.namespaceSelector.matchExpressions.find((e) => e.key === 'tether.io/inject'),
      { key: 'tether.io/inject', operator: 'NotIn', values: ['enabled'] },
    );
    assert.deepEqual(
      namespaced?.namespaceSelector.matchExpressions.find((e) => e.key === 'tether.io/inject'),
      { key: 'tether.io/inject', operator: 'In', values: ['enabled'] },
    );
  });

  test('the injector Deployment: 2 replicas, PDB, probes, and env tether-injector reads and accepts', () => {
    for (const args of Object.values(VARIANTS)) {
      const objs = objects(template(args));
      const deploy = find(objs, 'Deployment', 'tether-injector') as Obj & {
        spec: {
          replicas: number;
          template: {
            spec: {
              containers: {
                env: { name: string; value: string }[];
                readinessProbe: unknown;
                livenessProbe: unknown;
                args: string[];
              }[];
            };
          };
        };
      };
      const c = deploy.spec.template.spec.containers[0];
      assert.ok(c?.readinessProbe && c.livenessProbe);
      assert.deepEqual(c?.args, ['injector']);
      const known = new Set(Object.values(INJECTOR_SETTINGS).map((s) => s.env));
      const env = Object.fromEntries((c?.env ?? []).map((e) => [e.name, e.value]));
      assert.deepEqual(
        Object.keys(env).filter((n) => !known.has(n)),
        [],
        'env the injector does not read',
      );
      const config = loadInjectorConfig([], env).values; // throws on any invalid value
      if (args.length === 0) {
        assert.equal(deploy.spec.replicas, 2);
        assert.equal(find(objs, 'PodDisruptionBudget').kind, 'PodDisruptionBudget');
        assert.equal(config.sidecarMode, 'native');
        assert.equal(config.meshNamespace, 'tether-system');
        assert.equal(config.otlpEndpoint, undefined);
      }
    }
    const legacy = loadInjectorConfig(
      [],
      Object.fromEntries(
        (
          (
            find(
              objects(template(VARIANTS['everything on'] ?? [])),
              'Deployment',
              'tether-injector',
            ) as unknown as {
              spec: { template: { spec: { containers: { env: { name: string; value: string }[] }[] } } };
            }
          ).spec.template.spec.containers[0]?.env ?? []
        ).map((e) => [e.name, e.value]),
      ),
    ).values;
    assert.equal(
      legacy.otlpEndpoint,
      'http://tether-jaeger.tether-system.svc.cluster.local:4318',
      'jaeger.enabled points the sidecars at it',
    );
    assert.equal(legacy.cpuLimit, '500m');
    assert.equal(legacy.memoryRequest, undefined, 'an empty value means none');
  });

  test('sidecar.mode auto: native from Kubernetes 1.29, legacy before', () => {
    const modeFor = (v: string): string | undefined =>
      /TETHER_INJECT_SIDECAR_MODE\n\s+value: "(\w+)"/.exec(template(['--kube-version', v]))?.[1];
    assert.equal(modeFor('1.28.9'), 'legacy');
    assert.equal(modeFor('1.29.0'), 'native');
    assert.equal(modeFor('1.33.0'), 'native');
  });

  test('values.schema.json rejects typos and bad values by name', () => {
    const bad = (args: string[], msg: RegExp): void => {
      const r = exec(helmBin(), ['template', 'tether', CHART, ...args]);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, msg);
    };
    bad(['--set', 'injector.replica=3'], /Additional property replica is not allowed/);
    bad(['--set', 'webhook.failurePolicy=Sometimes'], /failurePolicy/);
    bad(['--set', 'sidecar.resources.limits.memory=lots'], /memory/);
    bad(['--set', 'webhook.url=https://127.0.0.1:9443'], /webhook\.caBundle is required with webhook\.url/);
  });

  test('the mesh policy ConfigMap rendered from values passes tetherctl validate; a broken one fails it', () => {
    const file = join(dir, 'mesh.yaml');
    const mesh = (args: string[]): Obj => find(objects(template(args)), 'ConfigMap', 'tether-mesh-policy');
    writeFileSync(file, stringify(mesh([])));
    assert.match(tetherctl(['validate', file]), /valid TrafficPolicy "mesh"/);
    writeFileSync(file, stringify(mesh(['--set', 'meshPolicy.spec.defaults.timeouts.connect=fast'])));
    const r = exec(process.execPath, [
      '--disable-warning=DEP0060',
      join(ROOT, 'cmd/tetherctl.ts'),
      'validate',
      file,
    ]);
    assert.equal(r.status, 1);
    assert.match(r.stdout, /timeouts\.connect/);
  });

  test("the chart's policy-reader RBAC has the same rules as manifests/rbac/", () => {
    const rules = (objs: Obj[]): Record<string, unknown> =>
      Object.fromEntries(
        objs.filter((o) => o.kind === 'ClusterRole' || o.kind === 'Role').map((o) => [o.kind, o.rules]),
      );
    const fromManifests = readdirSync(join(ROOT, 'manifests/rbac')).flatMap((f) =>
      objects(readFileSync(join(ROOT, 'manifests/rbac', f), 'utf8')),
    );
    const fromChart = objects(template([]));
    assert.deepEqual(rules(fromChart), rules(fromManifests));
    const names = (objs: Obj[]): string[] =>
      objs
        .filter((o) => o.kind.startsWith('ClusterRole') || o.kind === 'Role')
        .map((o) => `${o.kind}/${o.metadata.name}`)
        .sort();
    assert.deepEqual(names(fromChart), names(fromManifests.filter((o) => o.kind !== 'RoleBinding')));
  });
});

describe('manifests/', { skip: skipUnlessBinaries(BINS) }, () => {
  let cluster: Cluster;
  before(
    async () => {
      assertBinaries(BINS);
      cluster = await startCluster({ controllerManager: false });
      for (const ns of ['tether-system', 'shop'])
        kubectl(cluster.kubeconfigPath, ['create', 'namespace', ns]);
    },
    { timeout: 180_000 },
  );
  after(() => cluster?.stop());

  const files = (sub = ''): string[] =>
    readdirSync(join(ROOT, 'manifests', sub))
      .filter((f) => f.endsWith('.yaml'))
      .map((f) => join('manifests', sub, f));

  test('every manifest is accepted by kube-apiserver (server-side dry-run)', { timeout: 60_000 }, () => {
    for (const f of [...files(), ...files('rbac')]) {
      const out = kubectl(cluster.kubeconfigPath, ['apply', '--dry-run=server', '-f', join(ROOT, f)]);
      assert.match(out, /\(server dry run\)/, f);
    }
  });

  test('the example policies pass tetherctl validate', () => {
    const out = tetherctl(['validate', 'manifests/mesh-policy.yaml', 'manifests/namespace-policy.yaml']);
    assert.match(out, /valid TrafficPolicy "mesh"/);
    assert.match(out, /valid TrafficPolicy "shop"/);
    assert.doesNotMatch(out, /warning/);
  });

  test('the demo app is opted in by annotation, and tetherctl inject injects it', () => {
    const source = objects(readFileSync(join(ROOT, 'manifests/demo-app.yaml'), 'utf8')).find(
      (o) => o.metadata.name === 'web',
    ) as Obj & { spec: { template: { metadata: { annotations: Record<string, string> } } } };
    assert.equal(source.spec.template.metadata.annotations['tether.io/inject'], 'true');
    const out = tetherctl(['inject', '-f', 'manifests/demo-app.yaml']);
    const web = objects(out).find((o) => o.kind === 'Deployment' && o.metadata.name === 'web') as Obj & {
      spec: { template: { spec: { initContainers?: { name: string }[] } } };
    };
    assert.equal(web.spec.template.spec.initContainers?.[0]?.name, 'tether-proxy');
  });
});
