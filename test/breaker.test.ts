// Circuit breakers as an app sees them: open after the failure ratio, fail fast without touching the upstream, probe once, close; cap concurrency.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startUpstream, type Upstream } from './support/upstream.ts';
import { POLICY_HEAD, startTestSidecar, viaProxy, type TestSidecar } from './support/sidecar.ts';

describe('circuit breaker', () => {
  let flaky: Upstream;
  let probe: Upstream;
  let busy: Upstream;
  let clientErr: Upstream;
  let sc: TestSidecar;

  before(async () => {
    flaky = await startUpstream();
    probe = await startUpstream();
    busy = await startUpstream();
    clientErr = await startUpstream();
    const breaker = '{ failureRatio: 0.5, minimumRequests: 5, window: 10s, openFor: 700ms }';
    sc = await startTestSidecar(
      POLICY_HEAD +
        `spec:
  destinations:
    - name: flaky
      match: { host: 127.0.0.1, port: ${flaky.port} }
      circuitBreaker: ${breaker}
    - name: probe
      match: { host: 127.0.0.1, port: ${probe.port} }
      circuitBreaker: ${breaker}
    - name: busy
      match: { host: 127.0.0.1, port: ${busy.port} }
      circuitBreaker: { maxConcurrent: 2 }
    - name: client-errors
      match: { host: 127.0.0.1, port: ${clientErr.port} }
      circuitBreaker: ${breaker}
`,
    );
  });
  after(async () => {
    await sc.close();
    for (const u of [flaky, probe, busy, clientErr]) await u.close();
  });

  async function trip(up: Upstream): Promise<void> {
    // minimumRequests: 5 — the fifth failure (100% > 50%) opens it.
    for (let i = 0; i < 5; i++) {
      const r = await viaProxy(sc.egress.port, `http://${up.authority}/status/500`);
      assert.equal(r.status, 500, 'upstream 5xx passes through untouched while the breaker is closed');
      assert.equal(r.headers['x-tether-error'], undefined);
    }
  }

  test('opens after the failure ratio and then fails fast without touching the upstream', async () => {
    await trip(flaky);
    const hitsWhenOpen = flaky.hit('/status') + flaky.hit('/ok');
    for (let i = 0; i < 10; i++) {
      const r = await viaProxy(sc.egress.port, `http://${flaky.authority}/ok`);
      assert.equal(r.status, 503);
      assert.equal(r.headers['x-tether-error'], 'circuit_open');
      assert.ok(r.ms < 100, `fast fail took ${r.ms}ms`);
      assert.match((JSON.parse(r.body) as { message: string }).message, /circuitBreaker\.openFor/);
    }
    assert.equal(
      flaky.hit('/status') + flaky.hit('/ok'),
      hitsWhenOpen,
      'no request may reach the upstream while open',
    );
  });

  test('half-opens after openFor, lets one probe through, and closes when it succeeds', async () => {
    await trip(probe);
    assert.equal((await viaProxy(sc.egress.port, `http://${probe.authority}/ok`)).status, 503);
    await new Promise((r) => setTimeout(r, 800));
    // Two requests at once while half-open: exactly one is the probe.
    const [a, b] = await Promise.all([
      viaProxy(sc.egress.port, `http://${probe.authority}/slow-headers/200`),
      new Promise((r) => setTimeout(r, 50)).then(() =>
        viaProxy(sc.egress.port, `http://${probe.authority}/ok`),
      ),
    ]);
    assert.equal(a.status, 200, 'the probe reaches the upstream');
    assert.equal(b.status, 503, 'a second request while the probe is out fails fast');
    assert.equal(b.headers['x-tether-error'], 'circuit_open');
    const after = await viaProxy(sc.egress.port, `http://${probe.authority}/ok`);
    assert.equal(after.status, 200, 'closed again after a good probe');
  });

  test('a failed probe opens the breaker again', async () => {
    const up = flaky; // still open from the first test, or open again after it
    await new Promise((r) => setTimeout(r, 800));
    const p = await viaProxy(sc.egress.port, `http://${up.authority}/status/500`);
    assert.equal(p.status, 500);
    const r = await viaProxy(sc.egress.port, `http://${up.authority}/ok`);
    assert.equal(r.headers['x-tether-error'], 'circuit_open');
  });

  test('4xx responses are not failures', async () => {
    for (let i = 0; i < 12; i++)
      assert.equal((await viaProxy(sc.egress.port, `http://${clientErr.authority}/status/404`)).status, 404);
    assert.equal((await viaProxy(sc.egress.port, `http://${clientErr.authority}/ok`)).status, 200);
  });

  test('maxConcurrent caps in-flight requests with 503 overloaded', async () => {
    const slow = [1, 2].map(() => viaProxy(sc.egress.port, `http://${busy.authority}/slow-headers/400`));
    await new Promise((r) => setTimeout(r, 100));
    const third = await viaProxy(sc.egress.port, `http://${busy.authority}/ok`);
    assert.equal(third.status, 503);
    assert.equal(third.headers['x-tether-error'], 'overloaded');
    assert.match((JSON.parse(third.body) as { message: string }).message, /maxConcurrent/);
    for (const r of await Promise.all(slow)) assert.equal(r.status, 200);
    assert.equal(
      (await viaProxy(sc.egress.port, `http://${busy.authority}/ok`)).status,
      200,
      'overload does not trip the breaker',
    );
  });
});
