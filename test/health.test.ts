// Health as the kubelet sees it: /readyz follows critical breakers only, /livez only the proxy itself (listener, event loop), /startupz latches once traffic can flow.

import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import {
  adminGet,
  eventually,
  POLICY_HEAD,
  startTestSidecar,
  viaProxy,
  type TestSidecar,
} from './support/sidecar.ts';
import { startUpstream, type Upstream } from './support/upstream.ts';

interface Health {
  ready?: boolean;
  live?: boolean;
  started?: boolean;
  reasons: string[];
}

const health = async (sc: TestSidecar, path: string): Promise<{ status: number; body: Health }> => {
  const r = await adminGet(sc, path);
  return { status: r.status, body: r.body as Health };
};

/** Blocks this process's event loop — and so the in-process sidecar's — for `ms`. */
function blockLoop(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // busy: nothing else may run
  }
}

describe('readiness follows critical destinations only', () => {
  let payments: Upstream;
  let reports: Upstream;
  let sc: TestSidecar;

  before(async () => {
    payments = await startUpstream();
    reports = await startUpstream();
    const breaker = '{ failureRatio: 0.5, minimumRequests: 2, window: 10s, openFor: 600ms }';
    sc = await startTestSidecar(
      POLICY_HEAD +
        `spec:
  destinations:
    - name: payments
      match: { host: 127.0.0.1, port: ${payments.port} }
      critical: true
      circuitBreaker: ${breaker}
    - name: reports
      match: { host: 127.0.0.1, port: ${reports.port} }
      circuitBreaker: ${breaker}
`,
    );
  });
  after(async () => {
    await sc.close();
    await payments.close();
    await reports.close();
  });

  async function trip(up: Upstream): Promise<void> {
    for (let i = 0; i < 2; i++)
      assert.equal((await viaProxy(sc.egress.port, `http://${up.authority}/status/500`)).status, 500);
    const r = await viaProxy(sc.egress.port, `http://${up.authority}/ok`);
    assert.equal(r.headers['x-tether-error'], 'circuit_open', 'the breaker should be open now');
  }

  test('ready and live at start; startupz reports started', async () => {
    assert.deepEqual(await health(sc, '/readyz'), { status: 200, body: { ready: true, reasons: [] } });
    assert.equal((await health(sc, '/livez')).status, 200);
    assert.deepEqual(await health(sc, '/startupz'), { status: 200, body: { started: true, reasons: [] } });
  });

  test('an open breaker of a non-critical destination never affects readiness or liveness', async () => {
    await trip(reports);
    assert.equal((await health(sc, '/readyz')).status, 200);
    assert.equal((await health(sc, '/livez')).status, 200);
  });

  test('a critical destination: 503 while open and half-open, 200 again once the probe closes it; livez stays 200', async () => {
    await trip(payments);
    const open = await health(sc, '/readyz');
    assert.equal(open.status, 503);
    assert.equal(open.body.ready, false);
    assert.deepEqual(open.body.reasons, ['circuit breaker open for critical destination payments']);
    assert.equal((await health(sc, '/livez')).status, 200, 'a restart cannot heal an upstream');
    assert.equal((await health(sc, '/startupz')).status, 200, 'startup never flaps with upstream health');
    await eventually(
      () => [...sc.destinations.all()].some((d) => d.name === 'payments' && d.breaker.state === 'half-open'),
      3000,
      'the payments breaker to half-open',
    );
    assert.equal((await health(sc, '/readyz')).status, 503, 'half-open is not healed yet');
    assert.equal((await viaProxy(sc.egress.port, `http://${payments.authority}/ok`)).status, 200);
    const healed = await health(sc, '/readyz');
    assert.deepEqual(healed, { status: 200, body: { ready: true, reasons: [] } });
    assert.equal((await health(sc, '/livez')).status, 200);
  });
});

describe('liveness sees event-loop stalls, never upstreams', () => {
  let sc: TestSidecar;
  before(async () => {
    sc = await startTestSidecar(POLICY_HEAD + 'spec: {}\n', [], { loop: { stallMs: 300, windowMs: 1500 } });
  });
  after(() => sc.close());

  test('a stall past the bound turns /livez 503 with the lag, and it recovers after the window', async () => {
    assert.equal((await health(sc, '/livez')).status, 200);
    // Let the monitor tick once so the stall is measured from a fresh timer.
    await new Promise((r) => setTimeout(r, 300));
    blockLoop(700);
    const stalled = await health(sc, '/livez');
    assert.equal(stalled.status, 503);
    assert.match(stalled.body.reasons.join(), /event loop stalled for \d+ms \(more than 300ms\)/);
    assert.equal((await health(sc, '/readyz')).status, 200, 'readiness is not about the loop');
    await eventually(
      async () => (await health(sc, '/livez')).status === 200,
      4000,
      '/livez to recover after the window',
    );
  });
});

describe('while draining', () => {
  let up: Upstream;
  let sc: TestSidecar;
  before(async () => {
    up = await startUpstream();
    sc = await startTestSidecar(POLICY_HEAD + 'spec: {}\n');
  });
  after(async () => {
    await sc.close();
    await up.close();
  });

  test('readyz is 503 with the reason, livez stays 200, new connections are refused, the in-flight request completes', async () => {
    const slow = viaProxy(sc.egress.port, `http://${up.authority}/slow-headers/600`);
    await eventually(
      () => [...sc.destinations.all()].some((d) => d.inFlight === 1),
      2000,
      'the request to be in flight',
    );
    const drained = sc.drain(5000);
    const ready = await health(sc, '/readyz');
    assert.equal(ready.status, 503);
    assert.ok(ready.body.reasons.includes('draining: shutting down'), ready.body.reasons.join());
    assert.equal((await health(sc, '/livez')).status, 200, 'a draining proxy must not be restarted');
    const refused = await new Promise<string>((resolve) => {
      const req = request({
        host: '127.0.0.1',
        port: sc.egress.port,
        path: `http://${up.authority}/ok`,
        agent: false,
      });
      req.on('response', (res) => resolve(`answered ${res.statusCode}`));
      req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
      req.end();
    });
    assert.equal(refused, 'ECONNREFUSED');
    const r = await slow;
    assert.equal(r.status, 200);
    assert.equal(r.body, 'late');
    assert.deepEqual(await drained, { cut: 0 });
  });
});
