// Policy from the Kubernetes API end to end: a real kube-apiserver, real kubectl, the sidecar as its own process with a least-privilege ServiceAccount.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, stringify } from 'yaml';
import { connectKube, type ConfigMapObject } from '../src/kube/client.ts';
import { EventRecorder, eventName } from '../src/kube/events.ts';
import { realClock } from '../src/resilience/clock.ts';
import { createLogger } from '../src/telemetry/log.ts';
import { eventually, viaProxy } from '../test/support/sidecar.ts';
import { startTcpGate, type TcpGate } from '../test/support/tcp-gate.ts';
import { startUpstream, type Upstream } from '../test/support/upstream.ts';
import {
  createServiceAccountKubeconfig,
  startCluster,
  writeKubeconfig,
  type Cluster,
} from './lib/cluster.ts';
import { spawnManaged, waitUntil, type ManagedProcess } from './lib/proc.ts';
import { assertBinaries, kubectlBin, skipUnlessBinaries } from './lib/testbin.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BINS = ['etcd', 'kube-apiserver', 'kubectl'] as const;
const NS = 'shop';
const MESH = 'tether-system';
const SA = 'shop-app';

interface LogLine {
  level: string;
  msg: string;
  [k: string]: unknown;
}

/** The sidecar as a separate process, as it runs in a pod, with its JSON log lines readable. */
interface SidecarProcess {
  proc: ManagedProcess;
  egressPort: number;
  adminPort: number;
  logs(): LogLine[];
  stop(): Promise<void>;
}

async function startSidecarProcess(
  dir: string,
  args: string[],
  env: Record<string, string> = {},
  logName = 'sidecar.log',
): Promise<SidecarProcess> {
  const logFile = join(dir, logName);
  const proc = spawnManaged(
    'tether-sidecar',
    process.execPath,
    [
      '--disable-warning=DEP0060',
      join(ROOT, 'cmd/sidecar.ts'),
      '--listen',
      '127.0.0.1:0',
      '--admin-listen',
      '127.0.0.1:0',
      '--access-log',
      'off',
      ...args,
    ],
    { logFile, cwd: ROOT, env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...env } },
  );
  const logs = (): LogLine[] =>
    readFileSync(logFile, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as LogLine);
  let ready: LogLine | undefined;
  await waitUntil(
    'tether-sidecar ready log line',
    async () => {
      ready = logs().find((l) => l.msg === 'tether-sidecar ready');
      return ready !== undefined;
    },
    { timeoutMs: 30_000, intervalMs: 100, proc },
  );
  const port = (hp: unknown): number => Number(String(hp).split(':').pop());
  return {
    proc,
    egressPort: port(ready?.['egress']),
    adminPort: port(ready?.['admin']),
    logs,
    stop: () => proc.stop(10_000),
  };
}

/** A TrafficPolicy ConfigMap whose destination `upstream` (the test's slow server) gets the given responseHeaders timeout. */
function policyConfigMap(
  name: string,
  namespace: string,
  upstreamPort: number,
  responseHeaders: string,
  policyName = name,
): string {
  const policy = `apiVersion: tether.io/v1alpha1
kind: TrafficPolicy
metadata: { name: ${policyName} }
spec:
  destinations:
    - name: upstream
      match: { host: 127.0.0.1, port: ${upstreamPort} }
      timeouts: { connect: 100ms, responseHeaders: ${responseHeaders}, idle: 30s }
`;
  return stringify({
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name, namespace },
    data: { 'policy.yaml': policy },
  });
}

interface KEvent {
  metadata: { name: string };
  reason: string;
  type: string;
  message: string;
  count?: number;
  involvedObject: { kind: string; name: string; namespace: string; uid: string };
  lastTimestamp?: string;
}

describe('policy from the Kubernetes API (real kube-apiserver)', { skip: skipUnlessBinaries(BINS) }, () => {
  let cluster: Cluster;
  let gate: TcpGate;
  let upstream: Upstream;
  let sidecar: SidecarProcess;
  let dir: string;
  let saDirectKubeconfig: string;
  let saToken: string;
  const timings: Record<string, number> = {};

  const kubectl = (args: string[], input?: string) => {
    const r = spawnSync(kubectlBin(), ['--kubeconfig', cluster.kubeconfigPath, ...args], {
      encoding: 'utf8',
      input,
      timeout: 30_000,
    });
    if (r.status !== 0) throw new Error(`kubectl ${args.join(' ')} failed: ${r.stderr}${r.stdout}`);
    return r.stdout;
  };
  /** kubectl as the sidecar's ServiceAccount, straight to the API server; never throws. */
  const kubectlAsSA = (args: string[]) => {
    const r = spawnSync(kubectlBin(), ['--kubeconfig', saDirectKubeconfig, ...args], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    return { code: r.status, out: `${r.stdout}${r.stderr}` };
  };
  const apply = (yaml: string): string => kubectl(['apply', '-f', '-'], yaml);
  const events = (namespace: string, configMap: string, reason: string): KEvent[] =>
    (
      JSON.parse(
        kubectl([
          'get',
          'events',
          '-n',
          namespace,
          '--field-selector',
          `involvedObject.name=${configMap},reason=${reason}`,
          '-o',
          'json',
        ]),
      ) as { items: KEvent[] }
    ).items;
  const readyz = async (): Promise<{ status: number; reasons: string[] }> => {
    const r = await fetch(`http://127.0.0.1:${sidecar.adminPort}/readyz`);
    return { status: r.status, reasons: ((await r.json()) as { reasons: string[] }).reasons };
  };
  /** A request to the slow upstream (headers after `ms`); the policy's responseHeaders decides whether it is cut. */
  const slow = (ms: number) =>
    viaProxy(sidecar.egressPort, `http://${upstream.authority}/slow-headers/${ms}`);
  const timedOutWithin = async (lo: number, hi: number): Promise<boolean> => {
    const r = await slow(3000);
    return r.status === 504 && r.headers['x-tether-error'] === 'response_timeout' && r.ms >= lo && r.ms < hi;
  };
  const logsMatching = (re: RegExp): LogLine[] => sidecar.logs().filter((l) => re.test(l.msg));

  before(
    async () => {
      assertBinaries(BINS);
      dir = mkdtempSync(join(tmpdir(), 'tether-e2e-policy-kube-'));
      let t = performance.now();
      cluster = await startCluster({ controllerManager: false });
      timings['control plane up (ms)'] = Math.round(performance.now() - t);
      t = performance.now();
      kubectl(['create', 'namespace', NS]);
      kubectl(['create', 'namespace', MESH]);
      // The shipped RBAC manifest, with its per-namespace binding pointed at this test's namespace.
      const docs = parseAllDocuments(
        readFileSync(join(ROOT, 'manifests/rbac/sidecar-policy-reader.yaml'), 'utf8'),
      ).map(
        (d) =>
          d.toJS() as {
            kind: string;
            metadata: { name: string; namespace?: string };
            subjects?: { name: string }[];
          },
      );
      for (const d of docs) {
        if (d.kind === 'RoleBinding' && d.metadata.name === 'tether-policy-reader') {
          d.metadata.namespace = NS;
          for (const s of d.subjects ?? []) s.name = `system:serviceaccounts:${NS}`;
        }
      }
      apply(docs.map((d) => stringify(d)).join('---\n'));
      // The sidecar reaches the API through a gate the tests can cut; kubectl goes straight to it.
      gate = await startTcpGate({ host: '127.0.0.1', port: cluster.apiServerPort });
      const sa = await createServiceAccountKubeconfig(
        {
          kubeConfig: () => cluster.kubeConfig(),
          apiServerUrl: `https://127.0.0.1:${gate.port}`,
          caCertPath: cluster.caCertPath,
          dir,
        },
        { namespace: NS, name: SA },
      );
      saToken = sa.token;
      saDirectKubeconfig = join(dir, 'sa-direct.kubeconfig');
      writeKubeconfig(saDirectKubeconfig, {
        server: cluster.apiServerUrl,
        caCertPath: cluster.caCertPath,
        user: { token: saToken },
        name: `system:serviceaccount:${NS}:${SA}`,
        namespace: NS,
      });
      upstream = await startUpstream();
      gate.refuse(); // the first test starts the sidecar with the API out of reach
      sidecar = await startSidecarProcess(dir, [
        '--policy-source', 'kubernetes', '--kubeconfig', sa.kubeconfigPath, '--namespace', NS, '--mesh-namespace', MESH,
        '--pod-name', 'shop-app-7d9f-abcde', '--kube-watch-idle', '3s', '--kube-backoff-max', '1s', '--policy-sync-grace', '5m',
        '--log-level', 'debug',
      ]); // prettier-ignore
      timings['namespaces, RBAC, ServiceAccount, sidecar (ms)'] = Math.round(performance.now() - t);
    },
    { timeout: 180_000 },
  );

  after(
    async () => {
      await sidecar?.stop();
      await gate?.close();
      await upstream?.close();
      await cluster?.stop();
      if (process.env['TETHER_E2E_KEEP']) process.stderr.write(`sidecar log kept in ${dir}\n`);
      else if (dir) rmSync(dir, { recursive: true, force: true });
      process.stderr.write(`policy-kubernetes e2e timings: ${JSON.stringify(timings)}\n`);
    },
    { timeout: 60_000 },
  );

  test(
    'readiness is false until the first sync (requests are served meanwhile), then true',
    { timeout: 30_000 },
    async () => {
      const before = await readyz();
      assert.equal(before.status, 503);
      assert.match(
        before.reasons.join(),
        /waiting for the first sync of ConfigMaps tether-system\/tether-mesh-policy and shop\/tether-policy/,
      );
      assert.equal(
        (await viaProxy(sidecar.egressPort, `http://${upstream.authority}/ok`)).status,
        200,
        'the embedded default serves',
      );
      gate.open();
      await eventually(async () => (await readyz()).status === 200, 10_000, 'readiness after the first sync');
      // Log lines go out through an asynchronous buffer: the file may trail readiness a little.
      await eventually(
        () => logsMatching(/^policy synced from the Kubernetes API$/).length === 1,
        5_000,
        'the sync log line',
      );
    },
  );

  test(
    'kubectl apply of tether-policy: the sidecar enforces the new responseHeaders timeout within seconds',
    { timeout: 60_000 },
    async () => {
      const baseline = await slow(1200);
      assert.equal(baseline.status, 200, 'the embedded default (15s) lets a 1.2s response through');
      const t = performance.now();
      apply(policyConfigMap('tether-policy', NS, upstream.port, '300ms', 'shop'));
      await eventually(() => timedOutWithin(250, 1500), 10_000, 'a 504 response_timeout after ~300ms');
      timings['kubectl apply → enforced (ms)'] = Math.round(performance.now() - t);
      await eventually(
        () => events(NS, 'tether-policy', 'PolicyApplied').length === 1,
        10_000,
        'a PolicyApplied Event',
      );
      const [ev] = events(NS, 'tether-policy', 'PolicyApplied');
      assert.equal(ev?.type, 'Normal');
      assert.match(ev?.message ?? '', /tether-sidecar applied TrafficPolicy "shop" \(1 destination\)/);
    },
  );

  test(
    'a broken edit: the old timeout holds, a PolicyRejected Event says why, /debug/policy shows the error',
    { timeout: 60_000 },
    async () => {
      apply(policyConfigMap('tether-policy', NS, upstream.port, 'fast', 'shop'));
      await eventually(
        () => events(NS, 'tether-policy', 'PolicyRejected').length === 1,
        10_000,
        'a PolicyRejected Event',
      );
      const [ev] = events(NS, 'tether-policy', 'PolicyRejected');
      assert.equal(ev?.type, 'Warning');
      assert.match(
        ev?.message ?? '',
        /rejected policy\.yaml; the previous policy stays in force: .*spec\.destinations\[0\]\.timeouts\.responseHeaders: "fast" is not a duration/,
      );
      assert.equal(ev?.involvedObject.kind, 'ConfigMap');
      // Where a user looks first:
      const described = kubectl(['describe', 'configmap', 'tether-policy', '-n', NS]);
      assert.match(described, /Warning\s+PolicyRejected\s+.*"fast" is not a duration/);

      assert.ok(await timedOutWithin(250, 1500), 'still cut at ~300ms');
      assert.equal((await readyz()).status, 200, 'a bad edit never takes readiness down');
      const page = (await (await fetch(`http://127.0.0.1:${sidecar.adminPort}/debug/policy`)).json()) as {
        source: string;
        lastReloadError: { source: string; problems: string[] } | null;
        detail: { configMaps: { name: string; state: string; error: string[] | null }[] };
      };
      assert.match(page.source, /^configmap shop\/tether-policy@\d+$/, 'the last good version is in force');
      assert.match(page.lastReloadError?.source ?? '', /^configmap shop\/tether-policy@\d+$/);
      assert.match(page.lastReloadError?.problems.join() ?? '', /"fast" is not a duration/);
      const mine = page.detail.configMaps.find((c) => c.name === 'tether-policy');
      assert.equal(mine?.state, 'rejected');
      assert.match(mine?.error?.join() ?? '', /"fast" is not a duration/);
      await eventually(
        () => logsMatching(/^policy rejected; the previous policy stays in force$/).length === 1,
        5_000,
        'the log line',
      );
      const metrics = await (await fetch(`http://127.0.0.1:${sidecar.adminPort}/metrics`)).text();
      assert.match(
        metrics,
        /^tether_policy_reloads_total\{result="rejected"\} 1$/m,
        'the reload-failure metric',
      );

      apply(policyConfigMap('tether-policy', NS, upstream.port, '300ms', 'shop-fixed'));
      await eventually(
        async () =>
          (
            (await (await fetch(`http://127.0.0.1:${sidecar.adminPort}/debug/policy`)).json()) as {
              lastReloadError: unknown;
            }
          ).lastReloadError === null,
        10_000,
        'the fix to clear the error',
      );
    },
  );

  test(
    'namespace policy overrides mesh policy per destination; deleting it falls back to the mesh policy',
    { timeout: 60_000 },
    async () => {
      apply(policyConfigMap('tether-mesh-policy', MESH, upstream.port, '1200ms', 'mesh'));
      await eventually(
        () => events(MESH, 'tether-mesh-policy', 'PolicyApplied').length === 1,
        10_000,
        'the mesh policy applied',
      );
      assert.ok(await timedOutWithin(250, 900), 'the namespace 300ms wins over the mesh 1200ms');
      kubectl(['delete', 'configmap', 'tether-policy', '-n', NS]);
      await eventually(() => timedOutWithin(1100, 2500), 10_000, 'the mesh 1200ms after the delete');
    },
  );

  test(
    'kill -9 and restart kube-apiserver while traffic flows: no request fails, an edit made while disconnected is picked up',
    { timeout: 120_000 },
    async () => {
      let stop = false;
      let sent = 0;
      const failures: string[] = [];
      const traffic = (async () => {
        while (!stop) {
          try {
            const r = await viaProxy(sidecar.egressPort, `http://${upstream.authority}/ok`);
            if (r.status !== 200) failures.push(`${r.status} ${String(r.headers['x-tether-error'])}`);
          } catch (err) {
            failures.push(String(err));
          }
          sent++;
          await new Promise((r) => setTimeout(r, 10));
        }
      })();
      const relistsBefore = logsMatching(/410 Gone\); relisting$/).length;
      const t = performance.now();
      await cluster.stopApiServer('SIGKILL');
      // Keep the sidecar disconnected past the restart, so the next edit happens while it cannot see it.
      gate.refuse();
      await new Promise((r) => setTimeout(r, 1500));
      await cluster.startApiServer();
      timings['kube-apiserver restart (ms)'] = Math.round(performance.now() - t);
      assert.equal((await readyz()).status, 200, 'readiness stays true through the outage');
      apply(policyConfigMap('tether-mesh-policy', MESH, upstream.port, '600ms', 'mesh-edited-offline'));
      await new Promise((r) => setTimeout(r, 1000));
      assert.ok(await timedOutWithin(1100, 2500), 'not seen yet: still disconnected');
      const t2 = performance.now();
      gate.open();
      await eventually(() => timedOutWithin(450, 1000), 20_000, 'the edit made while disconnected');
      timings['reconnect → edit applied (ms)'] = Math.round(performance.now() - t2);
      stop = true;
      await traffic;
      assert.ok(sent > 50, `${sent} requests sent`);
      assert.deepEqual(failures, [], 'no request failed because of the outage');
      assert.equal((await readyz()).status, 200);
      // The restarted API server's watch cache starts at the current revision: the sidecar's
      // resourceVersion is older than its history, the watch says 410 Gone, the sidecar relists.
      await eventually(
        () => logsMatching(/410 Gone\); relisting$/).length > relistsBefore,
        5_000,
        'a relist after 410 Gone',
      );
      assert.equal(sidecar.proc.isRunning(), true);
    },
  );

  test(
    'a resourceVersion too old for the API server (410 Gone, compaction) leads to a relist, not a crash',
    { timeout: 120_000 },
    async () => {
      // Make the sidecar's resourceVersion stale: hold it off, restart the API server (its watch
      // history restarts at the current revision), and write meanwhile.
      gate.refuse();
      // Writes the sidecar cannot see (not even as bookmarks): the revision moves past its resourceVersion.
      for (const n of [1, 2, 3]) kubectl(['create', 'configmap', `noise-${n}`, '-n', 'default']);
      await cluster.stopApiServer('SIGTERM');
      await cluster.startApiServer();
      apply(policyConfigMap('tether-mesh-policy', MESH, upstream.port, '700ms', 'mesh-after-compaction'));
      const stale = logsMatching(/410 Gone\); relisting$/).length;
      gate.open();
      await eventually(() => logsMatching(/410 Gone\); relisting$/).length > stale, 20_000, 'a 410 relist');
      const line = logsMatching(/410 Gone\); relisting$/).at(-1);
      assert.match(String(line?.['err']), /too old resource version|410/);
      await eventually(() => timedOutWithin(550, 1100), 10_000, 'the relisted policy (700ms)');
      assert.equal(sidecar.proc.isRunning(), true);
      assert.equal(logsMatching(/crashed/).length, 0);
      // The API server itself answers 410 to that resourceVersion: this is the real compaction path, not a simulation.
      const raw = kubectl([
        'get',
        '--raw',
        `/api/v1/namespaces/${MESH}/configmaps?watch=1&resourceVersion=1&fieldSelector=metadata.name%3Dtether-mesh-policy&timeoutSeconds=2`,
      ]);
      assert.match(raw, /"code":410/);
    },
  );

  test(
    'a watch that goes silent (a black-holed connection) is detected and replaced; readiness stays true',
    { timeout: 60_000 },
    async () => {
      const silentBefore = logsMatching(/^watch went silent/).length;
      gate.blackhole();
      // Both watches fall silent, are noticed (--kube-watch-idle 3s) and retried, into the same hole.
      await eventually(
        () => logsMatching(/^watch went silent/).length >= silentBefore + 2,
        15_000,
        'both silent watches noticed',
      );
      assert.equal((await readyz()).status, 200);
      assert.equal(
        (await viaProxy(sidecar.egressPort, `http://${upstream.authority}/ok`)).status,
        200,
        'traffic is not affected',
      );
      // The partition heals for new connections only; connections caught in it stay silent for good,
      // so a watch stuck on one recovers only by noticing (client-node's own backstop takes 13s).
      gate.open();
      const t = performance.now();
      apply(policyConfigMap('tether-mesh-policy', MESH, upstream.port, '400ms', 'mesh-after-partition'));
      await eventually(() => timedOutWithin(300, 900), 20_000, 'an edit after the partition heals');
      const took = performance.now() - t;
      timings['silent watch: heal → edit applied (ms)'] = Math.round(took);
      assert.ok(took < 9000, `applied ${Math.round(took)}ms after the partition healed`);
    },
  );

  test(
    'an unreachable API server is retried with capped, jittered backoff, not a storm',
    { timeout: 60_000 },
    async () => {
      const before = gate.attempts;
      gate.refuse();
      await new Promise((r) => setTimeout(r, 6000));
      const attempts = gate.attempts - before;
      timings['connection attempts in 6s of outage'] = attempts;
      // Two watchers, delays in [250ms, 500ms] then [500ms, 1s] (--kube-backoff-max 1s): about 14–24 in 6s.
      assert.ok(attempts >= 4 && attempts <= 30, `${attempts} connection attempts in 6s`);
      assert.equal((await readyz()).status, 200);
      gate.open();
      apply(policyConfigMap('tether-mesh-policy', MESH, upstream.port, '500ms', 'mesh-after-outage'));
      await eventually(() => timedOutWithin(400, 1000), 15_000, 'recovery');
    },
  );

  test(
    "the sidecar's ServiceAccount reads exactly its two ConfigMaps and nothing else",
    { timeout: 60_000 },
    () => {
      apply(policyConfigMap('tether-policy', NS, upstream.port, '300ms', 'shop'));
      kubectl(['create', 'configmap', 'other', '-n', NS, '--from-literal=k=v']);
      kubectl(['create', 'configmap', 'other', '-n', MESH, '--from-literal=k=v']);
      kubectl(['create', 'secret', 'generic', 'db', '-n', NS, '--from-literal=password=hunter2']);
      kubectl(['create', 'secret', 'generic', 'db', '-n', MESH, '--from-literal=password=hunter2']);
      const allowed = (args: string[]) => {
        const r = kubectlAsSA(args);
        assert.equal(r.code, 0, `${args.join(' ')}: ${r.out}`);
        return r.out;
      };
      const forbidden = (args: string[]) => {
        const r = kubectlAsSA(args);
        assert.notEqual(r.code, 0, `${args.join(' ')} must be refused`);
        assert.match(r.out, /forbidden/i, args.join(' '));
      };
      // What the sidecar does: get, and list/watch with a metadata.name field selector (RBAC resourceNames).
      assert.match(
        allowed(['get', 'configmap', 'tether-policy', '-n', NS, '-o', 'name']),
        /configmap\/tether-policy/,
      );
      assert.match(
        allowed([
          'get',
          'configmaps',
          '-n',
          NS,
          '--field-selector',
          'metadata.name=tether-policy',
          '-o',
          'name',
        ]),
        /configmap\/tether-policy/,
      );
      assert.match(
        allowed(['get', 'configmap', 'tether-mesh-policy', '-n', MESH, '-o', 'name']),
        /tether-mesh-policy/,
      );
      assert.match(
        allowed([
          'get',
          'configmaps',
          '-n',
          MESH,
          '--field-selector',
          'metadata.name=tether-mesh-policy',
          '-o',
          'name',
        ]),
        /tether-mesh-policy/,
      );
      // Everything else is refused, by the API server, for this identity.
      forbidden(['get', 'configmap', 'other', '-n', NS]);
      forbidden(['get', 'configmaps', '-n', NS]);
      forbidden(['get', 'configmaps', '-n', NS, '--field-selector', 'metadata.name=other']);
      forbidden(['get', 'configmap', 'other', '-n', MESH]);
      forbidden(['get', 'configmap', 'tether-policy', '-n', 'default']);
      forbidden(['get', 'secret', 'db', '-n', NS]);
      forbidden(['get', 'secrets', '-n', NS]);
      forbidden(['get', 'secret', 'db', '-n', MESH]);
      forbidden(['get', 'events', '-n', NS]);
      forbidden(['patch', 'configmap', 'tether-policy', '-n', NS, '-p', '{"data":{"x":"y"}}']);
      forbidden(['delete', 'configmap', 'tether-policy', '-n', NS]);
      const can = (verbAndResource: string[], ns: string): string =>
        kubectlAsSA(['auth', 'can-i', ...verbAndResource, '-n', ns]).out.trim();
      assert.equal(can(['create', 'events'], NS), 'yes');
      assert.equal(can(['patch', 'events'], MESH), 'yes');
      assert.equal(can(['delete', 'events'], NS), 'no');
      assert.equal(can(['watch', 'configmaps/tether-policy'], NS), 'yes');
      assert.equal(can(['get', 'secrets'], NS), 'no');
      assert.equal(can(['create', 'pods'], NS), 'no');
      assert.equal(can(['get', 'configmaps/tether-mesh-policy'], 'kube-system'), 'no');
    },
  );

  test(
    'in a pod: a mounted service-account token makes kubernetes the source, with the namespace and API server the kubelet provides',
    { timeout: 60_000 },
    async () => {
      // What the kubelet mounts and sets; no policy flags at all.
      const sa = join(dir, 'serviceaccount');
      mkdirSync(sa);
      writeFileSync(join(sa, 'token'), saToken);
      copyFileSync(cluster.caCertPath, join(sa, 'ca.crt'));
      writeFileSync(join(sa, 'namespace'), NS);
      const pod = await startSidecarProcess(
        dir,
        [],
        {
          TETHER_SERVICE_ACCOUNT_DIR: sa,
          KUBERNETES_SERVICE_HOST: '127.0.0.1',
          KUBERNETES_SERVICE_PORT: String(cluster.apiServerPort),
        },
        'in-pod-sidecar.log',
      );
      try {
        const chosen = pod.logs().find((l) => l.msg === 'policy source chosen');
        assert.equal(chosen?.['policySource'], 'kubernetes');
        assert.match(String(chosen?.['why']), /service-account token is mounted/);
        await eventually(
          async () => (await fetch(`http://127.0.0.1:${pod.adminPort}/readyz`)).ok,
          15_000,
          'readiness',
        );
        const page = (await (await fetch(`http://127.0.0.1:${pod.adminPort}/debug/policy`)).json()) as {
          source: string;
        };
        assert.match(
          page.source,
          /configmap tether-system\/tether-mesh-policy@\d+ \+ configmap shop\/tether-policy@\d+/,
        );
        const r = await viaProxy(pod.egressPort, `http://${upstream.authority}/slow-headers/3000`);
        assert.equal(r.headers['x-tether-error'], 'response_timeout');
        assert.ok(r.ms < 1500, `the namespace policy's 300ms (${Math.round(r.ms)}ms)`);
      } finally {
        await pod.stop();
      }
    },
  );

  test(
    'Events from many sidecars land on one Event with a count, via the API server and this RBAC',
    { timeout: 60_000 },
    async () => {
      const cm = JSON.parse(kubectl(['get', 'configmap', 'tether-policy', '-n', NS, '-o', 'json'])) as {
        metadata: { uid: string; resourceVersion: string; name: string; namespace: string };
      };
      const obj: ConfigMapObject = { ...cm.metadata, data: {} };
      const api = connectKube({ kind: 'kubeconfig', path: saDirectKubeconfig }).api;
      const log = createLogger('silent', 'test');
      const pods = ['pod-a', 'pod-b', 'pod-c'].map(
        (instance) =>
          new EventRecorder(api, { clock: realClock, log, component: 'tether-sidecar', instance }),
      );
      await Promise.all(
        pods.map((p) => {
          p.record(obj, 'Warning', 'PolicyRejected', 'e2e aggregation check', 'e2e-content-hash');
          return p.flush();
        }),
      );
      const name = eventName(obj, 'PolicyRejected', 'e2e-content-hash');
      const ev = JSON.parse(kubectl(['get', 'event', name, '-n', NS, '-o', 'json'])) as KEvent;
      assert.equal(ev.count, 3, 'three sidecars, one Event, count 3');
      assert.equal(ev.message, 'e2e aggregation check');
      assert.equal(ev.involvedObject.uid, cm.metadata.uid);
      assert.equal(
        pods.reduce((n, p) => n + p.droppedCount, 0),
        0,
      );
    },
  );
});
