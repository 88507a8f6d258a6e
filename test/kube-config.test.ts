// How the sidecar picks its policy source and reaches the API server: the token rule, the flags, and the errors a user sees.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../src/config/settings.ts';
import { loadSidecarConfig, resolvePolicySource } from '../src/config/sidecar.ts';
import { validateFiles } from '../src/cli/validate.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'tether-kube-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const saWithToken = join(dir, 'sa');
mkdirSync(saWithToken);
writeFileSync(join(saWithToken, 'token'), 'x');
const saEmpty = join(dir, 'no-sa');

function sidecar(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(
    process.execPath,
    [
      '--disable-warning=DEP0060',
      join(root, 'cmd/sidecar.ts'),
      '--listen',
      '127.0.0.1:0',
      '--admin-listen',
      '127.0.0.1:0',
      ...args,
    ],
    { encoding: 'utf8', timeout: 20_000, env: { PATH: process.env.PATH ?? '', ...env } },
  );
  return { code: r.status, stderr: r.stderr, stdout: r.stdout };
}

describe('policy source selection', () => {
  test('kubernetes by default when a service-account token is mounted; file otherwise; --policy-file wins', () => {
    const cfg = (argv: string[], env: Record<string, string> = {}) => loadSidecarConfig(argv, env).values;
    assert.equal(resolvePolicySource(cfg(['--service-account-dir', saWithToken])).source, 'kubernetes');
    assert.equal(
      resolvePolicySource(cfg([], { TETHER_SERVICE_ACCOUNT_DIR: saWithToken })).source,
      'kubernetes',
    );
    assert.equal(resolvePolicySource(cfg(['--service-account-dir', saEmpty])).source, 'file');
    assert.equal(
      resolvePolicySource(cfg(['--service-account-dir', saWithToken, '--policy-file', 'p.yaml'])).source,
      'file',
    );
    assert.equal(
      resolvePolicySource(cfg(['--service-account-dir', saWithToken, '--policy-source', 'file'])).source,
      'file',
    );
    assert.equal(
      resolvePolicySource(cfg(['--policy-source', 'kubernetes', '--service-account-dir', saEmpty])).source,
      'kubernetes',
    );
    assert.match(
      resolvePolicySource(cfg(['--service-account-dir', saWithToken])).why,
      /token is mounted at .*sa\/token/,
    );
  });

  test('flags and env for the Kubernetes source parse with their defaults, and bad values fail together', () => {
    const v = loadSidecarConfig([], {}).values;
    assert.equal(v.meshNamespace, 'tether-system');
    assert.equal(v.policySyncGraceMs, 30_000);
    assert.equal(v.kubeWatchIdleMs, 90_000);
    assert.equal(v.kubeBackoffMaxMs, 30_000);
    assert.equal(v.kubeServicePort, 443);
    const e = loadSidecarConfig([], {
      POD_NAMESPACE: 'shop',
      KUBERNETES_SERVICE_HOST: '10.0.0.1',
      KUBERNETES_SERVICE_PORT: '6443',
    }).values;
    assert.deepEqual([e.namespace, e.kubeServiceHost, e.kubeServicePort], ['shop', '10.0.0.1', 6443]);
    assert.throws(
      () =>
        loadSidecarConfig(
          ['--policy-source', 'etcd', '--kube-watch-idle', '10ms', '--kube-service-port', 'x'],
          {},
        ),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.problems.length, 3, err.problems.join('\n'));
        assert.match(err.problems.join('\n'), /--policy-source: "etcd" must be one of file, kubernetes/);
        assert.match(err.problems.join('\n'), /--kube-watch-idle: "10ms" is too short/);
        return true;
      },
    );
    assert.throws(
      () => loadSidecarConfig(['--policy-source', 'kubernetes', '--policy-file', 'p.yaml'], {}),
      /exclude each other/,
    );
  });

  test('the sidecar exits 64 with a clear reason when the Kubernetes source cannot be set up', () => {
    const noServer = sidecar(['--policy-source', 'kubernetes', '--namespace', 'shop']);
    assert.equal(noServer.code, 64, noServer.stderr);
    assert.match(noServer.stderr, /needs the API server: give --kubeconfig outside a pod/);
    const missing = sidecar([
      '--policy-source',
      'kubernetes',
      '--kubeconfig',
      join(dir, 'nope.kubeconfig'),
      '--namespace',
      'shop',
    ]);
    assert.equal(missing.code, 64);
    assert.match(missing.stderr, /cannot load kubeconfig .*nope\.kubeconfig/);
    const kc = join(dir, 'no-ns.kubeconfig');
    writeFileSync(
      kc,
      'apiVersion: v1\nkind: Config\nclusters: [{ name: c, cluster: { server: "https://127.0.0.1:1" } }]\nusers: [{ name: u, user: {} }]\ncontexts: [{ name: x, context: { cluster: c, user: u } }]\ncurrent-context: x\n',
    );
    const noNs = sidecar(['--policy-source', 'kubernetes', '--kubeconfig', kc]);
    assert.equal(noNs.code, 64);
    assert.match(noNs.stderr, /needs the pod's namespace: set --namespace or POD_NAMESPACE/);
  });

  test('--help documents the Kubernetes source flags with their env vars', () => {
    const r = sidecar(['--help']);
    assert.equal(r.code, 0);
    for (const f of [
      '--policy-source',
      'TETHER_POLICY_SOURCE',
      '--kubeconfig',
      '--namespace',
      'POD_NAMESPACE',
      '--mesh-namespace',
      '--service-account-dir',
      '--policy-sync-grace',
      '--kube-watch-idle',
      '--kube-backoff-max',
      'KUBERNETES_SERVICE_HOST',
    ])
      assert.ok(r.stdout.includes(f), f);
  });
});

describe('tetherctl validate with ConfigMap manifests', () => {
  const cm = (name: string, policyYaml: string | null, extraKeys = ''): string =>
    `apiVersion: v1
kind: ConfigMap
metadata: { name: ${name} }
data:
${policyYaml === null ? '' : `  policy.yaml: |\n${policyYaml.replace(/^/gm, '    ')}\n`}${extraKeys}`;
  const good = 'apiVersion: tether.io/v1alpha1\nkind: TrafficPolicy\nmetadata: { name: shop }\nspec: {}';
  const read = (files: Record<string, string>) => (f: string) => Promise.resolve(files[f] ?? '');

  test('the same validator as the sidecar: a bad policy.yaml fails with the path and the reason', async () => {
    const bad = good.replace('spec: {}', 'spec:\n  defaults:\n    timeouts: { responseHeaders: fast }');
    const r = await validateFiles(['cm.yaml'], read({ 'cm.yaml': cm('tether-policy', bad) }));
    assert.equal(r.code, 1);
    assert.match(
      r.out.join('\n'),
      /cm\.yaml \(ConfigMap tether-policy data\.policy\.yaml\):\d+:\d+: error: spec\.defaults\.timeouts\.responseHeaders: "fast" is not a duration/,
    );
  });

  test('mesh and namespace ConfigMaps in one file are both checked; another name is flagged as never applied', async () => {
    const both = `${cm('tether-mesh-policy', good)}---\n${cm('tether-policy', good)}---\n${cm('my-policy', good)}`;
    const r = await validateFiles(['all.yaml'], read({ 'all.yaml': both }));
    assert.equal(r.code, 0, r.out.join('\n'));
    assert.equal(r.out.filter((l) => /: valid TrafficPolicy "shop"/.test(l)).length, 3);
    assert.match(
      r.out.join('\n'),
      /ConfigMap my-policy data\.policy\.yaml\): warning: metadata\.name: sidecars read only ConfigMaps named tether-policy .* "my-policy" is never applied/,
    );
  });

  test('a ConfigMap without the policy.yaml key is an error naming the keys it has', async () => {
    const r = await validateFiles(
      ['k.yaml'],
      read({ 'k.yaml': cm('tether-policy', null, '  policy.yml: x\n') }),
    );
    assert.equal(r.code, 1);
    assert.match(
      r.out.join('\n'),
      /ConfigMap tether-policy has no data key "policy\.yaml" holding the policy \(it has: policy\.yml\)/,
    );
  });

  test('the shipped example ConfigMaps validate', async () => {
    const r = await validateFiles([
      join(root, 'manifests/mesh-policy.yaml'),
      join(root, 'manifests/namespace-policy.yaml'),
    ]);
    assert.equal(r.code, 0, r.out.join('\n'));
  });
});
