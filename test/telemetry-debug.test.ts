// The loopback-only debug pages: per-upstream breaker state and recent behaviour, the policy in force in policy notation, and the refusal of any other client.

import assert from 'node:assert/strict';
import { networkInterfaces } from 'node:os';
import { after, before, describe, test } from 'node:test';
import { parsePolicy } from '../src/policy/validate.ts';
import { resolvePolicy } from '../src/policy/resolve.ts';
import {
  adminGet,
  eventually,
  POLICY_HEAD,
  startTestSidecar,
  viaProxy,
  type TestSidecar,
} from './support/sidecar.ts';
import { closedPort, startUpstream, type Upstream } from './support/upstream.ts';

interface Row {
  destination: string;
  upstream: string;
  critical: boolean;
  breaker: string;
  inFlight: number;
  requests: number;
  latencyMs: { p50: number; p95: number; p99: number } | null;
  errorRate: number;
  timeoutRate: number;
  lastError: { error: string; at: string } | null;
}

interface PolicyPage {
  source: string;
  version: string;
  appliedAt: string;
  lastReloadError: { at: string; source: string; problems: string[] } | null;
  policy: { spec: { destinations: { name: string; timeouts: Record<string, string> }[] } };
}

/** This machine's own non-loopback IPv4 address: a client connecting from it is not on loopback. */
function externalAddress(): string | undefined {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return undefined;
}

describe('/debug/destinations and /debug/policy', () => {
  let shop: Upstream;
  let refused: number;
  let sc: TestSidecar;
  let policy: string;

  before(async () => {
    shop = await startUpstream();
    refused = await closedPort();
    policy =
      POLICY_HEAD +
      `spec:
  destinations:
    - name: shop
      match: { host: 127.0.0.1, port: ${shop.port} }
      critical: true
      timeouts: { responseHeaders: 400ms, total: 0s }
    - name: gone
      match: { host: 127.0.0.1, port: ${refused} }
`;
    sc = await startTestSidecar(policy);
  });
  after(async () => {
    await sc.close();
    await shop.close();
  });

  const page = async (): Promise<Row[]> => {
    const r = await adminGet(sc, '/debug/destinations');
    assert.equal(r.status, 200);
    return (r.body as { destinations: Row[] }).destinations;
  };

  test('each upstream shows breaker state, in-flight, latency percentiles, error and timeout rates, last error', async () => {
    for (let i = 0; i < 6; i++)
      assert.equal((await viaProxy(sc.egress.port, `http://${shop.authority}/ok`)).status, 200);
    assert.equal((await viaProxy(sc.egress.port, `http://${shop.authority}/status/503`)).status, 503);
    const slow = await viaProxy(sc.egress.port, `http://${shop.authority}/slow-headers/1000`);
    assert.equal(slow.headers['x-tether-error'], 'response_timeout');
    assert.equal((await viaProxy(sc.egress.port, `http://127.0.0.1:${refused}/`)).status, 502);
    const hold = viaProxy(sc.egress.port, `http://${shop.authority}/slow-headers/100`);
    await eventually(
      async () => (await page()).find((r) => r.destination === 'shop')?.inFlight === 1,
      2000,
      'in-flight to show',
    );
    await hold;

    const rows = await page();
    const s = rows.find((r) => r.destination === 'shop');
    assert.ok(s, JSON.stringify(rows));
    assert.equal(s.upstream, shop.authority);
    assert.equal(s.critical, true);
    assert.equal(s.breaker, 'closed');
    assert.equal(s.inFlight, 0);
    assert.equal(s.requests, 9);
    assert.ok(s.latencyMs, 'percentiles once there are requests');
    assert.ok(s.latencyMs.p50 <= s.latencyMs.p95 && s.latencyMs.p95 <= s.latencyMs.p99);
    assert.ok(s.latencyMs.p99 >= 390, `p99 ${s.latencyMs.p99}ms includes the 400ms timeout`);
    assert.equal(s.errorRate, Math.round((2 / 9) * 1000) / 1000, 'the 503 and the timeout');
    assert.equal(s.timeoutRate, Math.round((1 / 9) * 1000) / 1000);
    assert.equal(s.lastError?.error, 'response_timeout');
    assert.ok(Math.abs(Date.parse(s.lastError.at) - Date.now()) < 10_000);

    const g = rows.find((r) => r.destination === 'gone');
    assert.equal(g?.errorRate, 1);
    assert.equal(g?.lastError?.error, 'connection_refused');
  });

  test('the policy in force, in the notation users write: it validates and resolves to the same version', async () => {
    const r = await adminGet(sc, '/debug/policy');
    assert.equal(r.status, 200);
    const p = r.body as PolicyPage;
    assert.equal(p.source, `file:${sc.policyPath}`);
    assert.match(p.version, /^[0-9a-f]{12}$/);
    assert.equal(p.lastReloadError, null);
    const shopRule = p.policy.spec.destinations.find((d) => d.name === 'shop');
    // Filled-in defaults, durations as strings, "0s" for no bound.
    assert.deepEqual(shopRule?.timeouts, {
      connect: '1s',
      responseHeaders: '400ms',
      idle: '5m',
      total: '0s',
    });

    const yaml = await fetch(`http://127.0.0.1:${sc.admin.port}/debug/policy?format=yaml`);
    assert.equal(yaml.headers.get('content-type'), 'application/yaml');
    const parsed = parsePolicy(await yaml.text());
    assert.ok(parsed.ok, JSON.stringify(parsed));
    assert.equal(
      resolvePolicy([parsed.spec]).version,
      p.version,
      'the page round-trips to the same effective policy',
    );
  });

  test('a rejected reload shows its problems while the previous policy stays in force', async () => {
    const before = (await adminGet(sc, '/debug/policy')).body as PolicyPage;
    sc.writePolicy(policy.replace('responseHeaders: 400ms', 'responseHeaders: fast'));
    await eventually(
      async () => ((await adminGet(sc, '/debug/policy')).body as PolicyPage).lastReloadError !== null,
      3000,
      'the reload to be rejected',
    );
    const p = (await adminGet(sc, '/debug/policy')).body as PolicyPage;
    assert.equal(p.version, before.version);
    assert.match(p.lastReloadError?.problems.join('\n') ?? '', /responseHeaders.*"fast" is not a duration/);
    assert.equal(p.lastReloadError?.source, `file:${sc.policyPath}`);
    sc.writePolicy(policy);
  });
});

describe('debug pages and /shutdown refuse clients off the loopback interface', () => {
  const external = externalAddress();
  let sc: TestSidecar;
  before(async () => {
    // The admin port binds every interface, as it does in a pod, so the kubelet-style client below can reach it.
    sc = await startTestSidecar(POLICY_HEAD + 'spec: {}\n', ['--admin-listen', '0.0.0.0:0']);
  });
  after(() => sc.close());

  test(
    'a client connecting from the host address gets 403; the same paths answer on loopback',
    { skip: external ? false : 'this machine has no non-loopback IPv4 address' },
    async () => {
      const from = (host: string, path: string, method = 'GET') =>
        fetch(`http://${host}:${sc.admin.port}${path}`, { method });
      for (const [path, method] of [
        ['/debug/destinations', 'GET'],
        ['/debug/policy', 'GET'],
        ['/shutdown', 'POST'],
      ] as const) {
        const r = await from(external ?? '', path, method);
        assert.equal(r.status, 403, `${method} ${path} from ${external}`);
        assert.match(((await r.json()) as { error: string }).error, /loopback/);
      }
      // Probes and scrapes come from outside the pod and must work.
      assert.equal((await from(external ?? '', '/metrics')).status, 200);
      assert.equal((await from(external ?? '', '/readyz')).status, 200);
      assert.equal((await from('127.0.0.1', '/debug/destinations')).status, 200);
      // A forged header changes nothing: the check is on the socket's address.
      const forged = await fetch(`http://${external}:${sc.admin.port}/debug/policy`, {
        headers: { 'x-forwarded-for': '127.0.0.1', host: '127.0.0.1' },
      });
      assert.equal(forged.status, 403);
      assert.equal((await adminGet(sc, '/readyz')).status, 200, 'the refused POST /shutdown did not drain');
    },
  );
});
