// Layered timeouts as an app sees them: each expiry has its own status, x-tether-error word and time bound; healthy streams are never cut.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { RequestRecord } from '../src/proxy/observer.ts';
import {
  closedPort,
  startBlackHole,
  startUpstream,
  type BlackHole,
  type Upstream,
} from './support/upstream.ts';
import { eventually, POLICY_HEAD, startTestSidecar, viaProxy, type TestSidecar } from './support/sidecar.ts';

describe('layered timeouts', () => {
  let up: Upstream;
  let hole: BlackHole;
  let sc: TestSidecar;
  const records: RequestRecord[] = [];

  before(async () => {
    up = await startUpstream();
    hole = await startBlackHole();
    sc = await startTestSidecar(
      POLICY_HEAD +
        `spec:
  defaults:
    timeouts: { connect: 300ms, responseHeaders: 400ms, idle: 500ms }
  destinations:
    - name: deadline
      match: { host: localhost, port: ${up.port} }
      timeouts: { connect: 300ms, responseHeaders: 2s, idle: 2s, total: 600ms }
`,
      [],
      { observers: [{ requestEnded: (r) => records.push(r) }] },
    );
  });
  after(async () => {
    await sc.close();
    await up.close();
    await hole.close();
  });

  test('a SYN black hole fails with 504 connect_timeout near timeouts.connect', async () => {
    const r = await viaProxy(sc.egress.port, `http://127.0.0.1:${hole.port}/`);
    assert.equal(r.status, 504);
    assert.equal(r.headers['x-tether-error'], 'connect_timeout');
    assert.ok(r.ms >= 250 && r.ms < 2000, `took ${r.ms}ms`);
    const body = JSON.parse(r.body) as { error: string; message: string; destination: string };
    assert.equal(body.error, 'connect_timeout');
    assert.equal(body.destination, `127.0.0.1:${hole.port}`);
    assert.match(body.message, /accepted no connection within 300ms \(timeouts\.connect\)/);
  });

  test('a closed port fails fast with 502 connection_refused', async () => {
    const port = await closedPort();
    const r = await viaProxy(sc.egress.port, `http://127.0.0.1:${port}/`);
    assert.equal(r.status, 502);
    assert.equal(r.headers['x-tether-error'], 'connection_refused');
    assert.ok(r.ms < 250, `took ${r.ms}ms`);
  });

  test('an upstream that resets before responding gives 502 connection_reset', async () => {
    const r = await viaProxy(sc.egress.port, `http://${up.authority}/reset-before`);
    assert.equal(r.status, 502);
    assert.equal(r.headers['x-tether-error'], 'connection_reset');
  });

  test('a reset mid-response aborts the stream and is recorded as connection_reset', async () => {
    const r = await viaProxy(sc.egress.port, `http://${up.authority}/reset-mid`);
    assert.equal(r.status, 200);
    assert.ok(r.aborted, 'the app must see a truncated stream, not a clean end');
    await eventually(
      () => records.some((x) => x.plan?.destination.path === '/reset-mid'),
      2000,
      'the request to end',
    );
    const rec = records.find((x) => x.plan?.destination.path === '/reset-mid');
    assert.equal(rec?.error, 'connection_reset', rec?.errorMessage);
  });

  test('slow response headers give 504 response_timeout near timeouts.responseHeaders', async () => {
    const r = await viaProxy(sc.egress.port, `http://${up.authority}/slow-headers/3000`);
    assert.equal(r.status, 504);
    assert.equal(r.headers['x-tether-error'], 'response_timeout');
    assert.ok(r.ms >= 350 && r.ms < 1500, `took ${r.ms}ms`);
  });

  test('a stall mid-body aborts the stream after timeouts.idle, recorded as idle_timeout', async () => {
    const r = await viaProxy(sc.egress.port, `http://${up.authority}/stall-after/100`);
    assert.equal(r.status, 200);
    assert.ok(r.aborted, 'stream must be aborted');
    assert.equal(r.body.length, 100);
    assert.ok(r.ms >= 450 && r.ms < 2000, `took ${r.ms}ms`);
    await eventually(
      () => records.some((x) => x.plan?.destination.path === '/stall-after/100'),
      2000,
      'the request to end',
    );
    const rec = records.find((x) => x.plan?.destination.path === '/stall-after/100');
    assert.equal(rec?.error, 'idle_timeout');
  });

  test('an SSE stream that keeps talking outlives every timeout but idle and arrives whole', async () => {
    // 8 events 200ms apart: 1.6s, longer than connect (300ms), responseHeaders (400ms) and idle (500ms).
    const r = await viaProxy(sc.egress.port, `http://${up.authority}/sse/8/200`);
    assert.equal(r.status, 200);
    assert.equal(r.aborted, undefined);
    assert.equal((r.body.match(/^data: event \d+$/gm) ?? []).length, 8);
    assert.ok(r.ms >= 1500, `took ${r.ms}ms`);
  });

  test('timeouts.total covers the whole request: 504 deadline_exceeded near the bound', async () => {
    const r = await viaProxy(sc.egress.port, `http://localhost:${up.port}/slow-headers/3000`);
    assert.equal(r.status, 504);
    assert.equal(r.headers['x-tether-error'], 'deadline_exceeded');
    assert.ok(r.ms >= 550 && r.ms < 1500, `took ${r.ms}ms`);
  });

  test('timeouts.total also cuts a body that is still streaming', async () => {
    const r = await viaProxy(sc.egress.port, `http://localhost:${up.port}/sse/20/100`);
    assert.equal(r.status, 200);
    assert.ok(r.aborted);
    assert.ok(r.ms >= 550 && r.ms < 1500, `took ${r.ms}ms`);
  });

  test('x-tether-timeout-ms shortens the deadline and the remaining budget is sent upstream', async () => {
    const r = await viaProxy(sc.egress.port, `http://localhost:${up.port}/slow-headers/3000`, {
      headers: { 'x-tether-timeout-ms': '200' },
    });
    assert.equal(r.status, 504);
    assert.equal(r.headers['x-tether-error'], 'deadline_exceeded');
    assert.ok(r.ms >= 150 && r.ms < 550, `took ${r.ms}ms`);
    assert.match((JSON.parse(r.body) as { message: string }).message, /x-tether-timeout-ms/);
    const echo = await viaProxy(sc.egress.port, `http://localhost:${up.port}/echo`, {
      headers: { 'x-tether-timeout-ms': '5000' },
    });
    const seen = Number(
      (JSON.parse(echo.body) as { headers: Record<string, string> }).headers['x-tether-timeout-ms'],
    );
    // The app asked for 5000ms but the policy's total (600ms) is shorter, so the policy wins.
    assert.ok(seen > 0 && seen <= 600, `upstream saw ${seen}`);
  });

  test('a malformed x-tether-timeout-ms is a 400 bad_request, not silently ignored', async () => {
    const r = await viaProxy(sc.egress.port, `http://${up.authority}/ok`, {
      headers: { 'x-tether-timeout-ms': 'soon' },
    });
    assert.equal(r.status, 400);
    assert.equal(r.headers['x-tether-error'], 'bad_request');
  });
});
