// Live policy edits: a valid edit applies within 2s without dropping in-flight requests; a broken edit leaves the last good policy in force.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startUpstream, type Upstream } from './support/upstream.ts';
import { eventually, POLICY_HEAD, startTestSidecar, viaProxy, type TestSidecar } from './support/sidecar.ts';

describe('policy file reload', () => {
  let up: Upstream;
  let sc: TestSidecar;
  const policy = (responseHeaders: string): string =>
    POLICY_HEAD +
    `spec:
  destinations:
    - name: svc
      match: { host: 127.0.0.1, port: ${up.port} }
      timeouts: { responseHeaders: ${responseHeaders} }
`;

  before(async () => {
    up = await startUpstream();
    sc = await startTestSidecar(policy('3s'));
  });
  after(async () => {
    await sc.close();
    await up.close();
  });

  test('a valid edit applies within 2s and an in-flight request finishes under the policy it started with', async () => {
    const inFlight = viaProxy(sc.egress.port, `http://${up.authority}/slow-headers/1000`);
    await new Promise((r) => setTimeout(r, 100));
    const before = sc.store.status().version;
    const edited = Date.now();
    sc.writePolicy(policy('300ms'));
    await eventually(() => sc.store.status().version !== before, 2000, 'the edit to apply');
    assert.ok(Date.now() - edited < 2000);
    const r = await viaProxy(sc.egress.port, `http://${up.authority}/slow-headers/1000`);
    assert.equal(r.status, 504);
    assert.equal(r.headers['x-tether-error'], 'response_timeout');
    const old = await inFlight;
    assert.equal(old.status, 200, 'the request that started under 3s is not cut by the new 300ms');
  });

  test('a broken edit is rejected and the last good policy stays in force', async () => {
    const good = sc.store.status().version;
    sc.writePolicy(
      POLICY_HEAD +
        'spec:\n  destinations:\n    - name: svc\n      match: { host: 127.0.0.1 }\n      timeouts: { responseHeaders: soon }\n',
    );
    await eventually(() => sc.store.status().lastError !== null, 2000, 'the broken edit to be rejected');
    const err = sc.store.status().lastError;
    assert.match(err?.problems[0]?.message ?? '', /"soon" is not a duration/);
    assert.equal(sc.store.status().version, good);
    const r = await viaProxy(sc.egress.port, `http://${up.authority}/slow-headers/1000`);
    assert.equal(
      r.headers['x-tether-error'],
      'response_timeout',
      'the 300ms timeout from the last good policy still holds',
    );
    sc.writePolicy(policy('5s'));
    await eventually(
      () => sc.store.status().lastError === null && sc.store.status().version !== good,
      2000,
      'the fix to apply',
    );
    assert.equal((await viaProxy(sc.egress.port, `http://${up.authority}/slow-headers/1000`)).status, 200);
  });
});
