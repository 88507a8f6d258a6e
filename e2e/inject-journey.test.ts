// Runs docs/install.md: every `sh` block, in order, against a real control plane (the chart's webhook pointed
// at tether-injector on the host), checking after each step what the user would see. Then runs the sidecar
// an injected pod would run — its env as injected, its ServiceAccount's token — against a real Jaeger.

import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createServiceAccountKubeconfig, startCluster, type Cluster } from './lib/cluster.ts';
import { startJaeger, type Jaeger } from './lib/jaeger.ts';
import { freePorts, spawnManaged, waitUntil, type ManagedProcess } from './lib/proc.ts';
import { assertBinaries, helmBin, kubectlBin, skipUnlessBinaries } from './lib/testbin.ts';
import {
  eventually,
  exec,
  execAsync,
  hostWebhookValues,
  injectorEnvFromCluster,
  isInjectedPod,
  kubectl,
  kubectlJson,
  ROOT,
  sidecarOf,
  startHostInjector,
  tetherctl,
  type HostInjector,
  type KPod,
} from './inject-support.ts';

const BINS = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kubectl', 'helm', 'jaeger'] as const;
const DOC = join(ROOT, 'docs/install.md');

interface Block {
  heading: string;
  code: string;
  /** Why the suite cannot run it, from a `<!-- e2e: skip (why) -->` line right before the block. */
  skip?: string;
}

function blocks(markdown: string): Block[] {
  const out: Block[] = [];
  const lines = markdown.split('\n');
  let heading = '';
  let skip: string | undefined;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? '';
    if (line.startsWith('#')) heading = line.replace(/^#+\s*/, '');
    const marker = /^<!-- e2e: skip \((.+)\) -->$/.exec(line);
    if (marker) {
      skip = marker[1];
      continue;
    }
    if (line === '```sh') {
      const code: string[] = [];
      while (++i < lines.length && lines[i] !== '```') code.push(lines[i] ?? '');
      out.push({ heading, code: code.join('\n'), ...(skip !== undefined ? { skip } : {}) });
    }
    if (line.trim() !== '') skip = undefined;
  }
  return out;
}

describe('docs/install.md, run step by step', { skip: skipUnlessBinaries(BINS) }, () => {
  let cluster: Cluster;
  let injector: HostInjector;
  let kc: string;
  let work: string;
  let env: NodeJS.ProcessEnv;
  let sync: Server;
  const k = (args: string[], input?: string): string =>
    kubectl(kc, args, input !== undefined ? { input } : {});
  const pods = (ns: string, selector: string): KPod[] =>
    kubectlJson<{ items: KPod[] }>(kc, ['get', 'pods', '-n', ns, '-l', selector]).items;

  before(
    async () => {
      assertBinaries(BINS);
      cluster = await startCluster();
      kc = cluster.kubeconfigPath;
      injector = await startHostInjector();
      // After each helm install/upgrade the shim asks this server to restart the host injector with the
      // env the chart now gives the in-cluster one: what the Deployment's rollout would do.
      sync = createServer((_req, res) => {
        injector.restartWithEnv(injectorEnvFromCluster(kc)).then(
          () => res.end('synced\n'),
          (err: Error) => res.writeHead(500).end(`${err.message}\n`),
        );
      });
      await new Promise<void>((resolve) => sync.listen(0, '127.0.0.1', resolve));
      const syncUrl = `http://127.0.0.1:${(sync.address() as AddressInfo).port}/`;
      // The user's shell: kubectl, helm and tetherctl on PATH, the repository's charts/ and manifests/ in
      // the working directory. The one test-only difference: helm install/upgrade also get the values
      // that point the webhook at the host injector (there is no image registry and no kubelet here).
      work = mkdtempSync(join(tmpdir(), 'tether-journey-'));
      const bin = join(work, '.bin');
      mkdirSync(bin);
      for (const d of ['charts', 'manifests']) symlinkSync(join(ROOT, d), join(work, d));
      const shim = (name: string, body: string): void => {
        writeFileSync(join(bin, name), `#!/bin/sh\n${body}\n`);
        chmodSync(join(bin, name), 0o755);
      };
      const extra = hostWebhookValues(injector)
        .map((a) => `'${a}'`)
        .join(' ');
      shim('kubectl', `exec '${kubectlBin()}' "$@"`);
      const notify = `'${process.execPath}' -e "fetch('${syncUrl}',{method:'POST'}).then(async r=>{if(!r.ok){console.error(await r.text());process.exit(1)}})"`;
      shim(
        'helm',
        `case "$1" in install|upgrade) '${helmBin()}' "$@" ${extra} || exit $?; ${notify} ;; *) exec '${helmBin()}' "$@" ;; esac`,
      );
      shim(
        'tetherctl',
        `exec '${process.execPath}' --disable-warning=DEP0060 '${join(ROOT, 'cmd/tetherctl.ts')}' "$@"`,
      );
      // `kubectl edit` runs $KUBE_EDITOR on a temp file: this "user" raises the echo deadline.
      shim('editor', `sed -i 's/total: 8s/total: 10s/' "$1"`);
      env = {
        PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`,
        HOME: work,
        KUBECONFIG: kc,
        KUBE_EDITOR: join(bin, 'editor'),
        HELM_CACHE_HOME: join(work, '.helm/cache'),
        HELM_CONFIG_HOME: join(work, '.helm/config'),
        HELM_DATA_HOME: join(work, '.helm/data'),
      };
    },
    { timeout: 180_000 },
  );
  after(
    async () => {
      sync?.close();
      await injector?.close();
      await cluster?.stop();
      if (work) rmSync(work, { recursive: true, force: true });
    },
    { timeout: 60_000 },
  );

  /** What the user should see after the block containing `marker` ran; each must be reached. */
  const checks: { marker: string; check: () => Promise<void> | void }[] = [
    {
      marker: 'helm install tether',
      check: () => {
        const hook = kubectlJson<{ webhooks: { clientConfig: { url?: string } }[] }>(kc, [
          'get',
          'mutatingwebhookconfiguration',
          'tether-injector',
        ]);
        assert.ok(hook.webhooks.every((w) => w.clientConfig.url?.startsWith(injector.url)));
      },
    },
    {
      marker: 'annotate deployment echo tether.io/inject=true',
      check: async () => {
        await eventually('an injected echo pod', () => pods('shop', 'app=echo').find(isInjectedPod));
        await eventually('an injected web pod (opted in on its template)', () =>
          pods('shop', 'app=web').find(isInjectedPod),
        );
      },
    },
    {
      marker: 'label namespace shop tether.io/inject=enabled',
      check: () => {
        k(['run', 'anything', '-n', 'shop', '--image=example.invalid/app:1', '--restart=Never']);
        assert.equal(isInjectedPod(kubectlJson<KPod>(kc, ['get', 'pod', 'anything', '-n', 'shop'])), true);
      },
    },
    {
      marker: 'tetherctl inject -f -',
      check: () => {
        const d = kubectlJson<{ spec: { template: { spec: { initContainers?: { name: string }[] } } } }>(kc, [
          'get',
          'deployment',
          'web',
          '-n',
          'shop',
        ]);
        assert.equal(d.spec.template.spec.initContainers?.[0]?.name, 'tether-proxy');
      },
    },
    {
      marker: 'edit configmap tether-policy',
      check: () => {
        const text = k([
          'get',
          'configmap',
          'tether-policy',
          '-n',
          'shop',
          '-o',
          'jsonpath={.data.policy\\.yaml}',
        ]);
        assert.match(text, /total: 10s/);
      },
    },
    {
      marker: 'meshPolicy.spec.defaults.timeouts.total',
      check: () => {
        const file = join(work, 'mesh.yaml');
        writeFileSync(
          file,
          k(['get', 'configmap', 'tether-mesh-policy', '-n', 'tether-system', '-o', 'yaml']),
        );
        assert.match(readFileSync(file, 'utf8'), /total: 60s/);
        assert.match(tetherctl(['validate', file]), /valid TrafficPolicy "mesh"/);
      },
    },
    {
      marker: 'rollout restart deployment web echo',
      check: async () => {
        const endpoint = 'http://tether-jaeger.tether-system.svc.cluster.local:4318';
        await eventually('a restarted web pod exporting to the bundled Jaeger', () =>
          pods('shop', 'app=web').find((p) =>
            sidecarOf(p)?.env?.some((e) => e.name === 'OTEL_EXPORTER_OTLP_ENDPOINT' && e.value === endpoint),
          ),
        );
      },
    },
    {
      marker: 'helm uninstall tether',
      check: () => {
        assert.deepEqual(
          kubectlJson<{ items: unknown[] }>(kc, ['get', 'mutatingwebhookconfigurations']).items,
          [],
        );
      },
    },
  ];

  const all = blocks(readFileSync(DOC, 'utf8'));

  test('every block either runs or says why it cannot', () => {
    assert.ok(all.length >= 8, `${all.length} sh blocks`);
    for (const c of checks)
      assert.ok(
        all.some((b) => !b.skip && b.code.includes(c.marker)),
        `docs/install.md has no runnable block with "${c.marker}"`,
      );
    const skipped = all.filter((b) => b.skip);
    assert.ok(skipped.length <= 2, `skipped: ${skipped.map((b) => b.code).join(' | ')}`);
  });

  test('the README points at it, and its Kubernetes commands are ones this suite runs', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    assert.match(readme, /docs\/install\.md/);
    const section = readme.slice(readme.indexOf('## On Kubernetes'));
    const commands =
      blocks(section)[0]
        ?.code.split('\n')
        .filter((l) => l.trim() !== '') ?? [];
    assert.ok(commands.length >= 3);
    const runnable = all.filter((b) => !b.skip).map((b) => b.code);
    for (const c of commands)
      assert.ok(
        runnable.some((code) => code.split('\n').includes(c)),
        `README command not run from docs/install.md: ${c}`,
      );
  });

  for (const [n, block] of all.entries()) {
    const title = `${n + 1}. ${block.heading}: ${block.code.split('\n')[0]}`;
    test(title, { timeout: 120_000, ...(block.skip ? { skip: block.skip } : {}) }, async () => {
      const r = await execAsync('bash', ['-euo', 'pipefail', '-c', block.code], {
        env,
        cwd: work,
        timeoutMs: 90_000,
      });
      assert.equal(r.status, 0, `${block.code}\n--- stderr:\n${r.stderr}\n--- stdout:\n${r.stdout}`);
      for (const c of checks.filter((x) => block.code.includes(x.marker))) await c.check();
    });
  }
});

describe(
  'the injected sidecar, run as its pod would run it: policy through its ServiceAccount, spans to Jaeger',
  { skip: skipUnlessBinaries(BINS) },
  () => {
    let cluster: Cluster;
    let injector: HostInjector;
    let jaeger: Jaeger;
    let upstream: Server;
    let sidecar: ManagedProcess | undefined;
    let dir: string;

    before(
      async () => {
        assertBinaries(BINS);
        [cluster, jaeger] = await Promise.all([startCluster(), startJaeger()]);
        injector = await startHostInjector();
        dir = mkdtempSync(join(tmpdir(), 'tether-journey-sidecar-'));
        upstream = createServer((_req, res) =>
          res.writeHead(200, { 'content-type': 'text/plain' }).end('hello from echo\n'),
        );
        await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
      },
      { timeout: 180_000 },
    );
    after(
      async () => {
        await sidecar?.stop(10_000);
        upstream?.close();
        await injector?.close();
        await Promise.all([jaeger?.stop(), cluster?.stop()]);
        if (dir) rmSync(dir, { recursive: true, force: true });
      },
      { timeout: 60_000 },
    );

    test(
      'the steps of docs/install.md give a pod whose sidecar reads the namespace policy and reports its calls',
      { timeout: 150_000 },
      async () => {
        const kc = cluster.kubeconfigPath;
        const k = (args: string[]): string => kubectl(kc, args);
        const helm = (args: string[]): void => {
          const r = exec(helmBin(), ['--kubeconfig', kc, ...args, ...hostWebhookValues(injector)]);
          assert.equal(r.status, 0, r.stderr);
        };
        helm([
          'install',
          'tether',
          join(ROOT, 'charts/tether'),
          '-n',
          'tether-system',
          '--create-namespace',
          '--set',
          'jaeger.enabled=true',
        ]);
        await injector.restartWithEnv(injectorEnvFromCluster(kc));
        k(['create', 'namespace', 'shop']);
        k([
          'create',
          'rolebinding',
          'tether-policy-reader',
          '-n',
          'shop',
          '--clusterrole=tether-policy-reader',
          '--group=system:serviceaccounts:shop',
        ]);
        k(['apply', '-f', join(ROOT, 'manifests/demo-app.yaml')]);
        k(['apply', '-f', join(ROOT, 'manifests/namespace-policy.yaml')]);
        const pod = await eventually('an injected web pod', () =>
          kubectlJson<{ items: KPod[] }>(kc, ['get', 'pods', '-n', 'shop', '-l', 'app=web']).items.find(
            isInjectedPod,
          ),
        );
        const container = sidecarOf(pod);
        assert.ok(container?.env);

        // The pod's env, resolved as the kubelet would; then only what differs on a host: where the API
        // server and the collector are, and loopback ports that are free here.
        const { kubeconfigPath } = await createServiceAccountKubeconfig(cluster, {
          namespace: 'shop',
          name: 'default',
          path: join(dir, 'sa.kubeconfig'),
        });
        const [egressPort, adminPort] = await freePorts(2);
        const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
        for (const e of container.env) {
          const field = (e.valueFrom as { fieldRef?: { fieldPath: string } } | undefined)?.fieldRef
            ?.fieldPath;
          env[e.name] =
            field === 'metadata.name'
              ? pod.metadata.name
              : field === 'metadata.namespace'
                ? pod.metadata.namespace
                : (e.value ?? '');
        }
        assert.equal(
          env.OTEL_EXPORTER_OTLP_ENDPOINT,
          'http://tether-jaeger.tether-system.svc.cluster.local:4318',
        );
        Object.assign(env, {
          OTEL_EXPORTER_OTLP_ENDPOINT: jaeger.otlpHttpEndpoint,
          TETHER_KUBECONFIG: kubeconfigPath,
          TETHER_LISTEN: `127.0.0.1:${egressPort}`,
          TETHER_ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
        });
        const args = (container as { args?: string[] }).args ?? [];
        assert.deepEqual(args, ['sidecar'], 'the image entrypoint runs cmd/sidecar.ts for "sidecar"');
        sidecar = spawnManaged(
          'tether-sidecar',
          process.execPath,
          ['--disable-warning=DEP0060', join(ROOT, 'cmd/sidecar.ts')],
          {
            logFile: join(dir, 'sidecar.log'),
            env,
            cwd: ROOT,
          },
        );
        const admin = `http://127.0.0.1:${adminPort}`;
        await waitUntil('the sidecar /readyz', async () => (await fetch(`${admin}/readyz`)).ok, {
          timeoutMs: 60_000,
          intervalMs: 200,
          proc: sidecar,
        });
        // The namespace policy arrived through the pod's ServiceAccount and the RoleBinding from step 2.
        const policy = await (await fetch(`${admin}/debug/policy`)).text();
        assert.match(policy, /echo\.shop\.svc\.cluster\.local/);

        const port = (upstream.address() as AddressInfo).port;
        const status = await new Promise<number>((resolve, reject) => {
          const req = request(
            { host: '127.0.0.1', port: egressPort, method: 'GET', path: `http://127.0.0.1:${port}/` },
            (res) => {
              res.resume();
              res.on('end', () => resolve(res.statusCode ?? 0));
            },
          );
          req.on('error', reject);
          req.end();
        });
        assert.equal(status, 200);
        const traces = await jaeger.waitForTraces('web', (t) => t.length > 0, { timeoutMs: 30_000 });
        assert.ok(traces[0]?.spans.length);
      },
    );
  },
);
