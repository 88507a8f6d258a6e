// The access log as an operator reads it on the real binary's stdout: one JSON line per request with named fields, never credentials, cookies or query strings.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { POLICY_HEAD, viaProxy } from './support/sidecar.ts';
import { spawnSidecar, type SidecarProcess } from './support/sidecar-process.ts';
import { closedPort, startUpstream, type Upstream } from './support/upstream.ts';

const SECRETS = ['s3cr3t-token', 'sessionid-42', 'hunter2', 'proxy-pass-9'];

async function accessLines(sc: SidecarProcess, n: number): Promise<Record<string, unknown>[]> {
  const end = Date.now() + 5000;
  for (;;) {
    const lines = sc.lines.filter((l) => l.msg === 'request');
    if (lines.length >= n || Date.now() > end) return lines;
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('access log', () => {
  let up: Upstream;
  let refused: number;
  let sc: SidecarProcess;

  before(async () => {
    up = await startUpstream();
    refused = await closedPort();
    sc = await spawnSidecar(
      POLICY_HEAD +
        `spec:
  destinations:
    - name: shop
      match: { host: 127.0.0.1, port: ${up.port} }
      retries: { attempts: 1, on: ["503"], backoff: { base: 5ms, max: 5ms } }
`,
    );
  });
  after(async () => {
    await sc.kill();
    await up.close();
  });

  test('one line per request with destination, method, path, status, error, attempts, duration, bytes and trace id', async () => {
    const traceId = '0af7651916cd43dd8448eb211c80319c';
    const ok = await viaProxy(sc.egressPort, `http://${up.authority}/echo?token=${SECRETS[0]}&page=2`, {
      method: 'POST',
      body: 'hello',
      headers: {
        authorization: `Bearer ${SECRETS[0]}`,
        cookie: `session=${SECRETS[1]}`,
        'proxy-authorization': `Basic ${SECRETS[3]}`,
        traceparent: `00-${traceId}-b7ad6b7169203331-01`,
      },
    });
    assert.equal(ok.status, 200);
    const retried = await viaProxy(
      sc.egressPort,
      `http://${up.authority}/seq/503,200?key=log&pw=${SECRETS[2]}`,
    );
    assert.equal(retried.status, 200);
    const failed = await viaProxy(sc.egressPort, `http://127.0.0.1:${refused}/x`);
    assert.equal(failed.status, 502);

    const lines = await accessLines(sc, 3);
    assert.equal(lines.length, 3, sc.output());
    const [first, second, third] = lines;
    assert.deepEqual(
      { ...first, time: undefined, durationMs: undefined },
      {
        level: 'info',
        time: undefined,
        component: 'access',
        name: 'access',
        msg: 'request',
        destination: 'shop',
        authority: up.authority,
        method: 'POST',
        path: '/echo',
        status: 200,
        error: null,
        attempts: 1,
        durationMs: undefined,
        bytesIn: ok.body.length,
        bytesOut: 5,
        // Tracing is off: the app's trace id still ties the line to its trace.
        traceId,
      },
    );
    assert.equal(typeof first?.durationMs, 'number');
    assert.match(String(first?.time), /^\d{4}-\d\d-\d\dT/);
    assert.equal(second?.path, '/seq/503,200');
    assert.equal(second?.attempts, 2);
    assert.equal(second?.status, 200);
    assert.equal(second?.traceId, null);
    assert.equal(third?.destination, 'default');
    assert.equal(third?.error, 'connection_refused');
    assert.equal(third?.status, 502);

    const out = sc.output();
    for (const s of SECRETS) assert.ok(!out.includes(s), `stdout must not contain ${s}`);
    assert.ok(!out.includes('page=2'), 'no query strings');
  });
});

describe('access log off', () => {
  test('--access-log off writes no request lines; other logs still flow', async () => {
    const up = await startUpstream();
    const sc = await spawnSidecar(POLICY_HEAD + 'spec: {}\n', [], { TETHER_ACCESS_LOG: 'off' });
    try {
      assert.equal((await viaProxy(sc.egressPort, `http://${up.authority}/ok`)).status, 200);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(sc.lines.filter((l) => l.msg === 'request').length, 0, sc.output());
      assert.ok(sc.lines.some((l) => l.msg === 'tether-sidecar ready'));
    } finally {
      await sc.kill();
      await up.close();
    }
  });
});
