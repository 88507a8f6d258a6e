// The Kubernetes policy source's decisions, against a scriptable API server on a real socket: merge order, bad edits, absence, grace, and aggregated Events.

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { connectKube } from '../src/kube/client.ts';
import { EventRecorder, eventName } from '../src/kube/events.ts';
import { EMBEDDED_DEFAULT_PATH, loadPolicyFile } from '../src/policy/load.ts';
import type { EffectivePolicy } from '../src/policy/resolve.ts';
import { KubernetesPolicySource } from '../src/policy/sources/kubernetes.ts';
import { PolicyStore, type ReloadFailure } from '../src/policy/store.ts';
import { realClock } from '../src/resilience/clock.ts';
import { createLogger } from '../src/telemetry/log.ts';
import {
  startFakeKubeApi,
  statusJson,
  type FakeKubeApi,
  type RecordedRequest,
} from './support/fake-kube-api.ts';
import { eventually } from './support/sidecar.ts';

const log = createLogger(process.env.TETHER_TEST_LOG === '1' ? 'debug' : 'silent', 'test');

/** A TrafficPolicy with one destination `payments` (responseHeaders as given) and optionally others. */
function policy(name: string, responseHeaders: string, extra = ''): string {
  return `apiVersion: tether.io/v1alpha1
kind: TrafficPolicy
metadata: { name: ${name} }
spec:
  destinations:
    - name: payments
      match: { host: payments.shop.svc.cluster.local, port: 8080 }
      timeouts: { responseHeaders: ${responseHeaders} }
${extra}`;
}

const MESH_ONLY = `    - name: audit
      match: { host: audit.infra.svc.cluster.local }
      timeouts: { responseHeaders: 7s }
`;

function ms(store: PolicyStore, dest: string): number | null | undefined {
  return store.current().policy.destinations.find((d) => d.name === dest)?.settings.timeouts
    .responseHeadersMs;
}

describe('Kubernetes policy source', () => {
  let api: FakeKubeApi;
  let fallback: EffectivePolicy;
  let store: PolicyStore;
  let source: KubernetesPolicySource | undefined;
  let rejected: ReloadFailure[];
  let applied: number;

  before(async () => {
    api = await startFakeKubeApi();
    const f = await loadPolicyFile(EMBEDDED_DEFAULT_PATH);
    assert.ok(f.ok);
    fallback = f.policy;
  });
  after(async () => {
    await source?.stop();
    await api.close();
  });
  beforeEach(async () => {
    await source?.stop();
    source = undefined;
    for (const key of [...api.objects.keys()]) {
      const [namespace = '', name = ''] = key.split('/');
      api.setConfigMap({ namespace, name, deleted: true });
    }
    api.requests.length = 0;
    api.onList = () => false;
    api.onEvent = (r) => ({ status: 201, body: JSON.parse(r.body) as unknown });
    store = new PolicyStore();
    rejected = [];
    applied = 0;
    store.on('rejected', (f) => rejected.push(f));
    store.on('applied', () => applied++);
  });

  function start(graceMs = 30_000, events?: EventRecorder): KubernetesPolicySource {
    const conn = connectKube({ kind: 'kubeconfig', path: api.kubeconfigPath });
    source = new KubernetesPolicySource(
      {
        namespace: 'shop',
        meshNamespace: 'tether-system',
        graceMs,
        fallback,
        watch: {
          idleMs: 5000,
          backoffBaseMs: 50,
          backoffMaxMs: 200,
          watchTimeoutSeconds: 300,
          requestTimeoutMs: 2000,
        },
        clock: realClock,
        server: `http://127.0.0.1:${api.port}`,
      },
      conn.api,
      events ??
        new EventRecorder(conn.api, {
          clock: realClock,
          log,
          component: 'tether-sidecar',
          instance: 'pod-a',
        }),
      store,
      log,
    );
    source.start();
    return source;
  }

  const mesh = (text: string): void =>
    api.setConfigMap({
      namespace: 'tether-system',
      name: 'tether-mesh-policy',
      resourceVersion: '',
      data: { 'policy.yaml': text },
    });
  const ns = (data: Record<string, string>): void =>
    api.setConfigMap({ namespace: 'shop', name: 'tether-policy', resourceVersion: '', data });
  // Filtered by reason: a previous test's sidecar may still be finishing its last Event write.
  const rejectedPosts = (): RecordedRequest[] =>
    eventPosts().filter((r) => r.body.includes('"PolicyRejected"'));
  const eventPosts = (): RecordedRequest[] =>
    api.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/events'));

  test('both ConfigMaps absent: the embedded default applies and readiness stops waiting once both were read', async () => {
    const s = start(); // returns before any API call is answered

    assert.match(
      store.pending ?? '',
      /waiting for the first sync of ConfigMaps tether-system\/tether-mesh-policy and shop\/tether-policy/,
    );
    assert.equal(store.current().policy.version, fallback.version, 'the fallback serves requests meanwhile');
    await eventually(() => s.isSynced, 3000, 'the first sync');
    assert.equal(store.pending, null);
    assert.equal(store.current().policy.version, fallback.version);
    assert.match(store.status().source, /embedded-default \(no policy ConfigMap in force\)/);
    assert.equal(eventPosts().length, 0, 'nothing to report');
  });

  test('namespace policy wins per destination; mesh-only destinations stay; deleting it falls back to the mesh policy', async () => {
    mesh(policy('mesh', '3s', MESH_ONLY));
    ns({ 'policy.yaml': policy('shop', '250ms') });
    const s = start();
    await eventually(() => s.isSynced, 3000, 'the first sync');
    assert.equal(ms(store, 'payments'), 250);
    assert.equal(ms(store, 'audit'), 7000);
    assert.match(
      store.status().source,
      /^configmap tether-system\/tether-mesh-policy@\d+ \+ configmap shop\/tether-policy@\d+$/,
    );
    api.setConfigMap({ namespace: 'shop', name: 'tether-policy', deleted: true });
    await eventually(() => ms(store, 'payments') === 3000, 2000, 'the mesh policy after the delete');
    assert.equal(ms(store, 'audit'), 7000);
    mesh(policy('mesh', '4s'));
    await eventually(() => ms(store, 'payments') === 4000, 2000, 'a mesh edit');
    assert.equal(ms(store, 'audit'), undefined, 'the edit removed it');
  });

  test('a bad edit is rejected whole: its last good spec stays merged, the reason is kept until fixed, and it is reported once', async () => {
    mesh(policy('mesh', '3s', MESH_ONLY));
    ns({ 'policy.yaml': policy('shop', '250ms') });
    const s = start();
    await eventually(() => s.isSynced, 3000, 'the first sync');
    const appliedBefore = applied;

    ns({ 'policy.yaml': policy('shop', 'fast') });
    await eventually(() => rejected.length === 1, 2000, 'the rejection');
    assert.equal(ms(store, 'payments'), 250, 'the old timeout holds');
    assert.equal(applied, appliedBefore, 'nothing applied');
    const err = store.status().lastError;
    assert.match(err?.source ?? '', /^configmap shop\/tether-policy@\d+$/);
    assert.match(err?.problems.map((p) => p.message).join() ?? '', /fast/);
    await eventually(() => rejectedPosts().length === 1, 2000, 'the PolicyRejected Event');
    const ev = JSON.parse(rejectedPosts()[0]?.body ?? '{}') as Record<string, unknown> & {
      involvedObject: Record<string, string>;
    };
    assert.equal(ev.reason, 'PolicyRejected');
    assert.equal(ev.type, 'Warning');
    assert.match(
      String(ev.message),
      /rejected policy\.yaml; the previous policy stays in force: .*responseHeaders.*fast/,
    );
    assert.equal(ev.involvedObject.kind, 'ConfigMap');
    assert.equal(ev.involvedObject.name, 'tether-policy');
    assert.equal(ev.involvedObject.namespace, 'shop');

    // The mesh document changes meanwhile: it applies, merged with the namespace's last good spec.
    mesh(policy('mesh', '3s', MESH_ONLY.replace('7s', '8s')));
    await eventually(() => ms(store, 'audit') === 8000, 2000, 'the mesh edit');
    assert.equal(ms(store, 'payments'), 250);
    assert.equal(store.status().lastError, err, 'the namespace rejection is still what /debug/policy shows');

    // A relist re-delivers the same bad content: no second rejection, no second Event.
    api.watches
      .filter((w) => !w.closed && w.namespace === 'shop')
      .forEach((w) => {
        w.send('ERROR', statusJson(410, 'Expired', 'too old'));
        w.end();
      });
    await eventually(() => api.lists('shop').length >= 2, 3000, 'a relist');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(rejected.length, 1);
    assert.equal(rejectedPosts().length, 1);

    ns({ 'policy.yaml': policy('shop', '400ms') });
    await eventually(() => ms(store, 'payments') === 400, 2000, 'the fix');
    assert.equal(store.status().lastError, null);
    await eventually(
      () => eventPosts().some((r) => r.body.includes('PolicyApplied')),
      2000,
      'a PolicyApplied Event',
    );
  });

  test('a bad ConfigMap at start-up: the rest applies, the rejection is visible, readiness is not held', async () => {
    mesh(policy('mesh', '3s'));
    ns({ 'other.yaml': 'x' });
    const s = start();
    await eventually(() => s.isSynced, 3000, 'the first sync');
    assert.equal(store.pending, null);
    assert.equal(ms(store, 'payments'), 3000);
    assert.match(
      store.status().lastError?.problems[0]?.message ?? '',
      /has no data key "policy\.yaml" holding the policy \(it has: other\.yaml\)/,
    );
    await eventually(() => rejectedPosts().length === 1, 2000, 'the PolicyRejected Event');
  });

  test('API unreachable at start: not ready until the grace period, then ready on the fallback; the ConfigMaps apply when it is back', async () => {
    let down = true;
    api.onList = (req) => {
      if (!down) return false;
      req.socket.resetAndDestroy();
      return true;
    };
    ns({ 'policy.yaml': policy('shop', '250ms') });
    const s = start(400);
    await new Promise((r) => setTimeout(r, 150));
    assert.notEqual(store.pending, null, 'still waiting within the grace');
    await eventually(() => store.pending === null, 2000, 'the grace to expire');
    assert.equal(s.isSynced, false);
    assert.equal(store.current().policy.version, fallback.version);
    down = false;
    await eventually(() => ms(store, 'payments') === 250, 3000, 'the ConfigMaps once the API is back');
  });

  test('grace period over with one ConfigMap unreadable (403): the readable one applies; the other joins when readable', async () => {
    let forbidden = true;
    api.onList = (req, res) => {
      if (!forbidden || !(req.url ?? '').includes('/namespaces/tether-system/')) return false;
      res.writeHead(403, { 'content-type': 'application/json' });
      res.end(JSON.stringify(statusJson(403, 'Forbidden', 'configmaps "tether-mesh-policy" is forbidden')));
      return true;
    };
    mesh(policy('mesh', '3s', MESH_ONLY));
    ns({ 'policy.yaml': policy('shop', '250ms') });
    const s = start(400);
    await eventually(() => store.pending === null, 3000, 'the grace to expire');
    await eventually(() => ms(store, 'payments') === 250, 2000, 'the namespace policy, read in time');
    assert.equal(ms(store, 'audit'), undefined);
    assert.equal(s.isSynced, false);
    assert.match(
      store.status().source,
      /configmap shop\/tether-policy@\d+ \(not read yet: tether-system\/tether-mesh-policy\)/,
    );
    forbidden = false;
    await eventually(() => ms(store, 'audit') === 7000, 3000, 'the mesh policy once readable');
    assert.equal(s.isSynced, true);
    assert.equal(ms(store, 'payments'), 250, 'the namespace policy still wins');
  });

  test('Events are aggregated across sidecars by name, count bumped atomically, and rate-limited per sidecar', async () => {
    const conn = connectKube({ kind: 'kubeconfig', path: api.kubeconfigPath });
    const rec = new EventRecorder(conn.api, {
      clock: realClock,
      log,
      component: 'tether-sidecar',
      instance: 'pod-b',
      burst: 3,
      refillMs: 60_000,
    });
    const cm = { namespace: 'shop', name: 'tether-policy', uid: 'u1', resourceVersion: '5', data: {} };
    let count = 4;
    let rv = 10;
    const patches: unknown[] = [];
    api.onEvent = (r) => {
      if (r.method === 'POST') return { status: 409, body: statusJson(409, 'AlreadyExists', 'exists') };
      const ops = JSON.parse(r.body) as { op: string; path: string; value: unknown }[];
      patches.push({ contentType: r.contentType, ops });
      const t = ops.find((o) => o.op === 'test');
      if (t && t.value !== String(rv))
        return { status: 422, body: statusJson(422, 'Invalid', 'test failed') };
      for (const o of ops) if (o.op === 'replace' && o.path === '/count') count = o.value as number;
      rv++;
      const body = { metadata: { name: 'x', resourceVersion: String(rv) }, count };
      if (patches.length === 1) {
        // Another sidecar bumps the count between our read and our bump: our first bump must lose.
        rv++;
        count++;
      }
      return { status: 200, body };
    };
    rec.record(cm, 'Warning', 'PolicyRejected', 'bad', 'hash-1');
    await rec.flush();
    assert.equal(count, 6, "4, the other sidecar's bump, then ours: none lost");
    assert.equal(patches.length, 4, 'read (lastTimestamp), lost bump, read again, bump');
    assert.deepEqual((patches[0] as { ops: unknown[] }).ops.length, 1);
    assert.equal((patches[0] as { contentType: string }).contentType, 'application/json-patch+json');
    const name = api.requests
      .find((r) => r.method === 'PATCH')
      ?.path.split('/')
      .pop();
    assert.equal(name, eventName(cm, 'PolicyRejected', 'hash-1'), 'a name every sidecar derives alike');

    const writes = (): number => api.requests.filter((r) => r.path.includes('/events')).length;
    const n = writes();
    rec.record(cm, 'Warning', 'PolicyRejected', 'bad', 'hash-1');
    await rec.flush();
    assert.equal(writes(), n, 'the same Event is not written again within repeatMs');
    for (let i = 2; i < 10; i++) rec.record(cm, 'Warning', 'PolicyRejected', 'bad', `hash-${i}`);
    await rec.flush();
    assert.equal(rec.droppedCount, 6, 'burst of 3 tokens: 1 spent above, 2 more written, 6 dropped');
  });
});
