// Retries as an app sees them: only what the policy allows, never a POST that reached the upstream, within the budget and the deadline.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { closedPort, startUpstream, type Upstream } from './support/upstream.ts';
import { POLICY_HEAD, startTestSidecar, viaProxy, type TestSidecar } from './support/sidecar.ts';

describe('retries', () => {
  let up: Upstream;
  let budgeted: Upstream;
  let slow: Upstream;
  let plain: Upstream;
  let sc: TestSidecar;
  let refused: number;
  let n = 0;
  const key = (): string => `k${++n}`;

  before(async () => {
    up = await startUpstream();
    budgeted = await startUpstream();
    slow = await startUpstream();
    plain = await startUpstream();
    refused = await closedPort();
    // `up` is named twice (127.0.0.1 and localhost) to try two retry settings against one hit counter.
    sc = await startTestSidecar(
      POLICY_HEAD +
        `spec:
  defaults:
    timeouts: { connect: 300ms, responseHeaders: 2s }
  destinations:
    - name: retrying
      match: { host: 127.0.0.1, port: ${up.port} }
      retries: { attempts: 2, on: [connect-failure, connection-reset, "503"], backoff: { base: 10ms, max: 20ms } }
    - name: unsafe
      match: { host: localhost, port: ${up.port} }
      retries: { attempts: 2, on: ["503"], unsafeMethods: true, backoff: { base: 10ms, max: 20ms } }
    - name: refused
      match: { host: 127.0.0.1, port: ${refused} }
      retries: { attempts: 2, on: [connect-failure], backoff: { base: 10ms, max: 20ms } }
    - name: budgeted
      match: { host: 127.0.0.1, port: ${budgeted.port} }
      retries: { attempts: 2, on: ["503"], backoff: { base: 1ms, max: 2ms }, budget: { ratio: 0.2, minPerSecond: 0 } }
      circuitBreaker: { enabled: false }
    - name: deadline
      match: { host: 127.0.0.1, port: ${slow.port} }
      timeouts: { responseHeaders: 200ms, total: 500ms }
      retries: { attempts: 5, on: [response-timeout], backoff: { base: 100ms, max: 100ms } }
    - name: off
      match: { host: 127.0.0.1, port: ${plain.port} }
`,
    );
  });
  after(async () => {
    await sc.close();
    for (const u of [up, budgeted, slow, plain]) await u.close();
  });

  test('GET retried on 503 then 200 answers 200 with x-tether-attempts: 2', async () => {
    const k = key();
    const r = await viaProxy(sc.egress.port, `http://127.0.0.1:${up.port}/seq/503,200?key=${k}`);
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-tether-attempts'], '2');
    assert.equal(r.body, 'try 2: 200');
  });

  test('a response that needed one try carries no x-tether-attempts', async () => {
    const r = await viaProxy(sc.egress.port, `http://127.0.0.1:${up.port}/ok`);
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-tether-attempts'], undefined);
  });

  test('retries are off unless the policy asks', async () => {
    const k = key();
    const r = await viaProxy(sc.egress.port, `http://127.0.0.1:${plain.port}/seq/503,200?key=${k}`);
    assert.equal(r.status, 503);
    assert.equal(r.headers['x-tether-attempts'], undefined);
  });

  test('a POST that reached the upstream is not retried on 503', async () => {
    const before = up.hit('/seq/503,200');
    const r = await viaProxy(sc.egress.port, `http://127.0.0.1:${up.port}/seq/503,200?key=${key()}`, {
      method: 'POST',
      body: 'pay 10',
    });
    assert.equal(r.status, 503);
    assert.equal(up.hit('/seq/503,200') - before, 1, 'the upstream must see the POST exactly once');
  });

  test('unsafeMethods: true retries a POST and replays its body byte for byte', async () => {
    const k = key();
    const r = await viaProxy(sc.egress.port, `http://localhost:${up.port}/seq/503,200?key=${k}`, {
      method: 'POST',
      body: 'order=42&qty=3',
    });
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-tether-attempts'], '2');
    const bodies = up.bodies.get('/seq/503,200') ?? [];
    assert.deepEqual(bodies.slice(-2), ['order=42&qty=3', 'order=42&qty=3']);
  });

  test('a body larger than maxBodyBytes is sent once and never retried', async () => {
    const before = up.hit('/seq/503,200');
    const big = 'x'.repeat(70_000);
    const r = await viaProxy(sc.egress.port, `http://localhost:${up.port}/seq/503,200?key=${key()}`, {
      method: 'PUT',
      body: big,
    });
    assert.equal(r.status, 503);
    assert.equal(up.hit('/seq/503,200') - before, 1);
    assert.equal(up.bodies.get('/seq/503,200')?.at(-1)?.length, 70_000);
  });

  test('a connect failure is retried even for POST (nothing was sent), and named after the last try', async () => {
    const r = await viaProxy(sc.egress.port, `http://127.0.0.1:${refused}/`, { method: 'POST', body: 'x' });
    assert.equal(r.status, 502);
    assert.equal(r.headers['x-tether-error'], 'connection_refused');
    assert.equal(r.headers['x-tether-attempts'], '3');
    assert.equal((JSON.parse(r.body) as { attempts: number }).attempts, 3);
  });

  test('the retry budget caps retries under a 100%-failing upstream', async () => {
    for (let i = 0; i < 50; i++) {
      const r = await viaProxy(sc.egress.port, `http://127.0.0.1:${budgeted.port}/status/503`);
      assert.equal(r.status, 503);
    }
    const hits = budgeted.hit('/status/503');
    // Unbudgeted, 50 requests × 3 tries = 150 hits; ratio 0.2 allows about 10 retries.
    assert.ok(hits >= 50 && hits <= 62, `upstream saw ${hits} requests`);
  });

  test('no retry starts past the deadline', async () => {
    const r = await viaProxy(sc.egress.port, `http://127.0.0.1:${slow.port}/slow-headers/5000`);
    assert.equal(r.status, 504);
    assert.ok(['deadline_exceeded', 'response_timeout'].includes(String(r.headers['x-tether-error'])));
    assert.ok(r.ms < 900, `took ${r.ms}ms`);
    // attempts: 5 would mean 6 tries of 200ms; within 500ms (200ms tries, backoff under 100ms) at most 3 can start.
    const tries = slow.hit('/slow-headers/5000');
    assert.ok(tries >= 2 && tries <= 3, `upstream saw ${tries} tries`);
  });
});
