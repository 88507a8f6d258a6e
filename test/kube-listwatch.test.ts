// The ConfigMap list+watch loop against a scriptable API server on a real socket: 410 relists, silent watches restart, outages back off (client-node#364, #596, #1933, #3020).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connectKube, type ConfigMapObject } from '../src/kube/client.ts';
import { ListWatch, type ListWatchOptions } from '../src/kube/listwatch.ts';
import { realClock } from '../src/resilience/clock.ts';
import { createLogger } from '../src/telemetry/log.ts';
import { eventually } from './support/sidecar.ts';
import { startFakeKubeApi, statusJson, type FakeKubeApi } from './support/fake-kube-api.ts';

const log = createLogger(process.env.TETHER_TEST_LOG === '1' ? 'debug' : 'silent', 'test');

function watcher(api: FakeKubeApi, over: Partial<ListWatchOptions> = {}) {
  const seen: (ConfigMapObject | undefined)[] = [];
  const lw = new ListWatch(
    {
      namespace: 'app',
      name: 'tether-policy',
      idleMs: 5_000,
      watchTimeoutSeconds: 300,
      backoff: { baseMs: 50, maxMs: 400 },
      requestTimeoutMs: 2_000,
      clock: realClock,
      log,
      ...over,
    },
    connectKube({ kind: 'kubeconfig', path: api.kubeconfigPath }).api,
    (o) => seen.push(o),
  );
  return { lw, seen, data: () => seen.map((o) => o?.data['policy.yaml'] ?? null) };
}

describe('ConfigMap list+watch', () => {
  let api: FakeKubeApi;
  before(async () => {
    api = await startFakeKubeApi();
  });
  after(() => api.close());

  test('lists by metadata.name field selector, then watches from the list resourceVersion with bookmarks', async () => {
    api.requests.length = 0;
    api.onWatch = () => undefined;
    api.setConfigMap({
      namespace: 'app',
      name: 'tether-policy',
      resourceVersion: '',
      data: { 'policy.yaml': 'v1' },
    });
    const { lw, data } = watcher(api);
    lw.start();
    try {
      await eventually(() => api.watchRequests().length === 1, 3000, 'a watch');
      const [list] = api.lists();
      assert.equal(list?.query.get('fieldSelector'), 'metadata.name=tether-policy');
      const w = api.watchRequests()[0];
      assert.equal(w?.query.get('fieldSelector'), 'metadata.name=tether-policy');
      assert.equal(w?.query.get('allowWatchBookmarks'), 'true');
      assert.equal(w?.query.get('resourceVersion'), lw.state().resourceVersion);
      const t = Number(w?.query.get('timeoutSeconds'));
      assert.ok(t >= 300 && t < 600, `timeoutSeconds ${t} is jittered in [300, 600)`);
      assert.deepEqual(data(), ['v1']);
      api.setConfigMap({
        namespace: 'app',
        name: 'tether-policy',
        resourceVersion: '',
        data: { 'policy.yaml': 'v2' },
      });
      await eventually(() => data().length === 2, 2000, 'the MODIFIED event');
      api.setConfigMap({ namespace: 'app', name: 'tether-policy', deleted: true });
      await eventually(() => data().length === 3, 2000, 'the DELETED event');
      assert.deepEqual(data(), ['v1', 'v2', null]);
      assert.equal(lw.state().synced, true);
      assert.equal(lw.state().watching, true);
    } finally {
      await lw.stop();
    }
  });

  test('a 410 Gone ERROR event inside a 200 watch stream (client-node#781) makes it relist, not stall', async () => {
    api.requests.length = 0;
    api.setConfigMap({
      namespace: 'app',
      name: 'tether-policy',
      resourceVersion: '',
      data: { 'policy.yaml': 'before' },
    });
    let n = 0;
    api.onWatch = (w) => {
      if (++n === 1) {
        // Meanwhile the object changed and the history was compacted: the watch can only say 410.
        api.setConfigMap(
          { namespace: 'app', name: 'tether-policy', resourceVersion: '', data: { 'policy.yaml': 'after' } },
          { quiet: true },
        );
        w.send('ERROR', statusJson(410, 'Expired', 'too old resource version: 1 (150)'));
        w.end();
      }
    };
    const { lw, data } = watcher(api);
    lw.start();
    try {
      await eventually(() => api.watchRequests().length === 2, 3000, 'a second watch after the relist');
      assert.equal(api.lists().length, 2, 'relisted once');
      assert.deepEqual(data(), ['before', 'after']);
      assert.equal(api.watchRequests()[1]?.query.get('resourceVersion'), lw.state().resourceVersion);
    } finally {
      await lw.stop();
    }
  });

  test('an HTTP 410 answer to the watch request relists too', async () => {
    api.requests.length = 0;
    let n = 0;
    api.onWatch = (_w, _req, res) => {
      if (++n > 1) return;
      res.writeHead(410, { 'content-type': 'application/json' });
      res.end(JSON.stringify(statusJson(410, 'Gone', 'too old resource version')));
    };
    const { lw } = watcher(api);
    lw.start();
    try {
      await eventually(() => api.watchRequests().length === 2, 3000, 'a second watch after the relist');
      assert.equal(api.lists().length, 2);
      assert.equal(lw.state().consecutiveFailures, 0);
    } finally {
      await lw.stop();
    }
  });

  test('a watch that goes silent is restarted after the idle timeout from the last bookmark, without a relist (#364, #596)', async () => {
    api.requests.length = 0;
    let n = 0;
    api.onWatch = (w) => {
      if (++n === 1)
        w.send('BOOKMARK', { kind: 'ConfigMap', apiVersion: 'v1', metadata: { resourceVersion: '4242' } });
      // then nothing, forever: a half-open connection looks exactly like this
    };
    const { lw } = watcher(api, { idleMs: 400 });
    const started = performance.now();
    lw.start();
    try {
      await eventually(() => api.watchRequests().length >= 2, 3000, 'the watch to be restarted');
      const ms = performance.now() - started;
      assert.ok(ms >= 350, `restarted after ${ms}ms, not before the idle timeout`);
      assert.equal(api.watchRequests()[1]?.query.get('resourceVersion'), '4242', 'resumes from the bookmark');
      assert.equal(api.lists().length, 1, 'no relist needed');
    } finally {
      await lw.stop();
    }
  });

  test('a watch the server ends normally (its timeoutSeconds) resumes from the last resourceVersion at once', async () => {
    api.requests.length = 0;
    let n = 0;
    api.onWatch = (w) => {
      if (++n > 1) return;
      setTimeout(() => {
        w.send('BOOKMARK', { kind: 'ConfigMap', apiVersion: 'v1', metadata: { resourceVersion: '777' } });
        w.end();
      }, 1100);
    };
    const { lw } = watcher(api);
    lw.start();
    try {
      await eventually(() => api.watchRequests().length === 2, 4000, 'the second watch');
      assert.equal(api.watchRequests()[1]?.query.get('resourceVersion'), '777');
      assert.equal(api.lists().length, 1);
    } finally {
      await lw.stop();
    }
  });

  test('an unreachable API server is retried with jittered exponential backoff, not a storm (#1933), and recovers', async () => {
    api.requests.length = 0;
    const before = api.connections;
    let down = true;
    api.onList = (req) => {
      if (!down) return false;
      req.socket.resetAndDestroy();
      return true;
    };
    const { lw, data } = watcher(api, { backoff: { baseMs: 50, maxMs: 400 } });
    lw.start();
    try {
      await new Promise((r) => setTimeout(r, 2000));
      const attempts = api.lists().length;
      // Delays are uniform in [c/2, c] with c = 50, 100, 200, 400, 400…: at most ~12 attempts in 2s, and at least 4.
      assert.ok(attempts >= 4 && attempts <= 14, `${attempts} list attempts in 2s`);
      assert.ok(api.connections - before <= attempts + 2, 'one connection per attempt');
      assert.ok(lw.state().consecutiveFailures >= 4);
      assert.match(lw.state().lastError ?? '', /list ConfigMap app\/tether-policy/);
      down = false;
      await eventually(() => lw.state().synced && lw.state().consecutiveFailures === 0, 2000, 'recovery');
      assert.equal(data().length, 1);
    } finally {
      api.onList = () => false;
      await lw.stop();
    }
  });

  test('a list the API server never answers is abandoned after the request timeout and retried', async () => {
    api.requests.length = 0;
    let hang = true;
    api.onList = () => hang; // hold the request open, never answer
    const { lw } = watcher(api, { requestTimeoutMs: 300 });
    const started = performance.now();
    lw.start();
    try {
      await eventually(() => api.lists().length >= 2, 3000, 'a second list attempt');
      assert.ok(performance.now() - started >= 300, 'not before the timeout');
      assert.match(lw.state().lastError ?? '', /list ConfigMap app\/tether-policy: no answer in time/);
      hang = false;
      await eventually(() => lw.state().synced, 3000, 'the sync once the server answers');
    } finally {
      api.onList = () => false;
      await lw.stop();
    }
  });

  test('backoff delays: equal jitter between half the ceiling and the ceiling, capped', () => {
    const mk = (r: number) =>
      new ListWatch(
        {
          namespace: 'a',
          name: 'b',
          idleMs: 1000,
          watchTimeoutSeconds: 300,
          backoff: { baseMs: 500, maxMs: 30_000 },
          requestTimeoutMs: 1000,
          clock: realClock,
          random: () => r,
          log,
        },
        connectKube({ kind: 'kubeconfig', path: api.kubeconfigPath }).api,
        () => undefined,
      );
    const lo = mk(0);
    const hi = mk(1);
    assert.deepEqual(
      [1, 2, 3, 4].map((f) => lo.backoffMs(f)),
      [250, 500, 1000, 2000],
    );
    assert.deepEqual(
      [1, 2, 3, 4].map((f) => hi.backoffMs(f)),
      [500, 1000, 2000, 4000],
    );
    assert.equal(hi.backoffMs(20), 30_000);
    assert.equal(lo.backoffMs(20), 15_000, 'never zero: a fleet cannot bunch up at the cap');
  });

  test('stop() closes the watch and ends the loop', async () => {
    api.requests.length = 0;
    api.onWatch = () => undefined;
    const { lw } = watcher(api);
    lw.start();
    await eventually(() => api.watches.some((w) => !w.closed), 3000, 'an open watch');
    await lw.stop();
    await eventually(() => api.watches.every((w) => w.closed), 2000, 'the watch socket to close');
    const n = api.requests.length;
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(api.requests.length, n, 'no requests after stop');
  });
});
