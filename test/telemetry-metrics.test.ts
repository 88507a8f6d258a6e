// /metrics as a Prometheus scraper sees it: request, try, retry and timeout counters, the breaker gauge and transitions, in-flight, policy reloads.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { metricValue, parseMetrics, scrape, type Sample } from './support/metrics.ts';
import { eventually, POLICY_HEAD, startTestSidecar, viaProxy, type TestSidecar } from './support/sidecar.ts';
import { closedPort, startUpstream, type Upstream } from './support/upstream.ts';

describe('prometheus metrics', () => {
  let shop: Upstream;
  let flaky: Upstream;
  let unnamed: Upstream;
  let refusedPort: number;
  let sc: TestSidecar;
  let policy: string;

  before(async () => {
    shop = await startUpstream();
    flaky = await startUpstream();
    unnamed = await startUpstream();
    refusedPort = await closedPort();
    policy =
      POLICY_HEAD +
      `spec:
  destinations:
    - name: shop
      match: { host: 127.0.0.1, port: ${shop.port} }
      timeouts: { responseHeaders: 600ms }
      retries: { attempts: 2, on: ["503", response-timeout], backoff: { base: 5ms, max: 10ms } }
    - name: refused
      match: { host: 127.0.0.1, port: ${refusedPort} }
    - name: deadline
      match: { host: localhost, port: ${shop.port} }
      timeouts: { responseHeaders: 0s, total: 150ms }
    - name: flaky
      match: { host: 127.0.0.1, port: ${flaky.port} }
      circuitBreaker: { failureRatio: 0.5, minimumRequests: 2, window: 10s, openFor: 400ms }
`;
    sc = await startTestSidecar(policy);
  });
  after(async () => {
    await sc.close();
    for (const u of [shop, flaky, unnamed]) await u.close();
  });

  const metrics = (): Promise<Sample[]> => scrape(sc.admin.port);
  const get = (url: string, opts: Parameters<typeof viaProxy>[2] = {}) => viaProxy(sc.egress.port, url, opts);

  test('exposition is valid Prometheus text on the admin port, with process metrics', async () => {
    const res = await fetch(`http://127.0.0.1:${sc.admin.port}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const samples = parseMetrics(text);
    assert.ok(samples.length > 0);
    assert.match(text, /^# HELP tether_requests_total /m);
    assert.match(text, /^# TYPE tether_request_duration_seconds histogram$/m);
    assert.ok(metricValue(samples, 'process_resident_memory_bytes') > 0, 'process metrics are included');
    for (const s of samples.filter((x) => x.name.startsWith('tether_'))) {
      assert.ok(
        !('authority' in s.labels) && !('host' in s.labels),
        `${s.name} must not carry raw authorities`,
      );
    }
  });

  test('requests are counted by destination, method class, status and error word', async () => {
    const before = await metrics();
    for (let i = 0; i < 3; i++) assert.equal((await get(`http://${shop.authority}/ok`)).status, 200);
    assert.equal(
      (await get(`http://${shop.authority}/status/201`, { method: 'POST', body: 'x' })).status,
      201,
    );
    assert.equal((await get(`http://127.0.0.1:${refusedPort}/`)).status, 502);
    assert.equal((await get(`http://${unnamed.authority}/ok`)).status, 200);
    assert.equal((await get(`https://example.com/`)).status, 400);
    const m = await metrics();
    const delta = (labels: Record<string, string>): number =>
      metricValue(m, 'tether_requests_total', labels) - metricValue(before, 'tether_requests_total', labels);
    assert.equal(delta({ destination: 'shop', method_class: 'read', status: '200', error: 'none' }), 3);
    assert.equal(delta({ destination: 'shop', method_class: 'write', status: '201', error: 'none' }), 1);
    assert.equal(delta({ destination: 'refused', status: '502', error: 'connection_refused' }), 1);
    // Hosts the policy does not name share one label value: cardinality stays bounded.
    assert.equal(delta({ destination: 'default', status: '200' }), 1);
    assert.equal(delta({ destination: 'none', status: '400', error: 'bad_request' }), 1);
    const count = (s: Sample[]): number =>
      metricValue(s, 'tether_request_duration_seconds_count', { destination: 'shop', method_class: 'read' });
    assert.equal(count(m) - count(before), 3);
  });

  test('tries and retries are counted per try, with the reason for each retry', async () => {
    const before = await metrics();
    const r = await get(`http://${shop.authority}/seq/503,503,200?key=metrics`);
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-tether-attempts'], '3');
    const m = await metrics();
    const delta = (name: string, labels: Record<string, string>): number =>
      metricValue(m, name, labels) - metricValue(before, name, labels);
    assert.equal(delta('tether_tries_total', { destination: 'shop', status: '503', error: 'none' }), 2);
    assert.equal(delta('tether_tries_total', { destination: 'shop', status: '200', error: 'none' }), 1);
    assert.equal(delta('tether_retries_total', { destination: 'shop', reason: '503' }), 2);
    assert.equal(delta('tether_requests_total', { destination: 'shop', status: '200' }), 1);
  });

  test('timeouts are counted by kind, once per timer that fired', async () => {
    const before = await metrics();
    // Three tries each hit the 600ms response-headers timeout.
    const slow = await get(`http://${shop.authority}/slow-headers/2000`);
    assert.equal(slow.status, 504);
    assert.equal(slow.headers['x-tether-error'], 'response_timeout');
    // The 150ms total deadline ends the only try; it is one timeout, not two.
    const late = await get(`http://localhost:${shop.port}/hold`);
    assert.equal(late.headers['x-tether-error'], 'deadline_exceeded');
    const m = await metrics();
    const delta = (labels: Record<string, string>): number =>
      metricValue(m, 'tether_timeouts_total', labels) - metricValue(before, 'tether_timeouts_total', labels);
    assert.equal(delta({ destination: 'shop', kind: 'response_timeout' }), 3);
    assert.equal(delta({ destination: 'deadline', kind: 'deadline_exceeded' }), 1);
    assert.equal(delta({ destination: 'deadline', kind: 'response_timeout' }), 0);
  });

  test('the breaker gauge and transitions follow the breaker: closed → open → half-open → closed', async () => {
    const state = (m: Sample[], s: string): number =>
      metricValue(m, 'tether_breaker_state', { destination: 'flaky', state: s });
    const moves = (m: Sample[], to: string): number =>
      metricValue(m, 'tether_breaker_transitions_total', { destination: 'flaky', to });
    assert.equal((await get(`http://${flaky.authority}/ok`)).status, 200);
    let m = await metrics();
    assert.deepEqual([state(m, 'closed'), state(m, 'half-open'), state(m, 'open')], [1, 0, 0]);
    for (let i = 0; i < 2; i++) assert.equal((await get(`http://${flaky.authority}/status/500`)).status, 500);
    const rejected = await get(`http://${flaky.authority}/ok`);
    assert.equal(rejected.headers['x-tether-error'], 'circuit_open');
    m = await metrics();
    assert.deepEqual([state(m, 'closed'), state(m, 'half-open'), state(m, 'open')], [0, 0, 1]);
    assert.equal(moves(m, 'open'), 1);
    assert.equal(
      metricValue(m, 'tether_requests_total', { destination: 'flaky', status: '503', error: 'circuit_open' }),
      1,
    );
    await eventually(
      async () => state(await metrics(), 'half-open') === 1,
      3000,
      'the breaker to half-open after openFor',
    );
    assert.equal((await get(`http://${flaky.authority}/ok`)).status, 200);
    m = await metrics();
    assert.deepEqual([state(m, 'closed'), state(m, 'half-open'), state(m, 'open')], [1, 0, 0]);
    assert.equal(moves(m, 'half-open'), 1);
    assert.equal(moves(m, 'closed'), 1);
  });

  test('in-flight requests are visible while they wait and gone when they finish', async () => {
    const slow = get(`http://${shop.authority}/slow-headers/250`);
    await eventually(
      async () => metricValue(await metrics(), 'tether_requests_in_flight', { destination: 'shop' }) === 1,
      2000,
      'the slow request to show as in flight',
    );
    assert.equal((await slow).status, 200);
    assert.equal(metricValue(await metrics(), 'tether_requests_in_flight', { destination: 'shop' }), 0);
  });

  test('policy reloads are counted by result and the active version is labelled', async () => {
    const before = await metrics();
    const version = (m: Sample[]): string | undefined =>
      m.find((s) => s.name === 'tether_policy_info')?.labels.version;
    const v1 = version(before);
    assert.match(v1 ?? '', /^[0-9a-f]{12}$/);
    assert.equal(metricValue(before, 'tether_policy_info', { version: v1 ?? '' }), 1);
    sc.writePolicy(
      policy + '    - name: broken\n      match: { host: 127.0.0.1 }\n      timeouts: { connect: soon }\n',
    );
    await eventually(
      async () => metricValue(await metrics(), 'tether_policy_reloads_total', { result: 'rejected' }) === 1,
      3000,
      'the invalid policy to be rejected',
    );
    assert.equal(version(await metrics()), v1, 'a rejected policy changes nothing in force');
    sc.writePolicy(policy.replace('openFor: 400ms', 'openFor: 500ms'));
    await eventually(
      async () => {
        const m = await metrics();
        return (
          metricValue(m, 'tether_policy_reloads_total', { result: 'applied' }) ===
          metricValue(before, 'tether_policy_reloads_total', { result: 'applied' }) + 1
        );
      },
      3000,
      'the edited policy to be applied',
    );
    const m = await metrics();
    assert.notEqual(version(m), v1);
    assert.equal(
      m.filter((s) => s.name === 'tether_policy_info').length,
      1,
      'only the policy in force is reported',
    );
  });

  test('docs/metrics.md documents exactly the metrics the sidecar defines', () => {
    const doc = readFileSync(new URL('../docs/metrics.md', import.meta.url), 'utf8');
    const documented = new Set([...doc.matchAll(/`(tether_[a-z_]+)`/g)].map((m) => m[1]));
    const defined = new Set(sc.metrics.registry.getMetricsAsArray().map((m) => m.name));
    assert.deepEqual([...defined].sort(), [...documented].sort());
  });
});
