// What reaches the upstream and what comes back: forward-proxy, Host-routed and CONNECT requests; hop-by-hop headers; registryOnly; no leaked sockets.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { request } from 'node:http';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import type { RequestRecord } from '../src/proxy/observer.ts';
import {
  closedPort,
  startBlackHole,
  startUpstream,
  type BlackHole,
  type Upstream,
} from './support/upstream.ts';
import { eventually, POLICY_HEAD, startTestSidecar, viaProxy, type TestSidecar } from './support/sidecar.ts';

const run = promisify(execFile);

/** Opens a CONNECT tunnel through the proxy and returns the socket once Tether answered 200. */
async function tunnel(proxyPort: number, authority: string): Promise<Socket> {
  const s = connect({ host: '127.0.0.1', port: proxyPort });
  await once(s, 'connect');
  s.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
  const [first] = (await once(s, 'data')) as [Buffer];
  assert.match(first.toString(), /^HTTP\/1\.1 200/);
  return s;
}

function readAll(s: Socket): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('close', () => resolve(Buffer.concat(chunks).toString()));
  });
}

describe('forwarding', () => {
  let up: Upstream;
  let strict: Upstream;
  let hole: BlackHole;
  let echo: ReturnType<typeof createServer>;
  let echoPort: number;
  let sc: TestSidecar;
  let registrySc: TestSidecar;
  const records: RequestRecord[] = [];

  before(async () => {
    up = await startUpstream();
    strict = await startUpstream();
    hole = await startBlackHole();
    echo = createServer((s) => s.pipe(s)).listen(0, '127.0.0.1');
    await once(echo, 'listening');
    echoPort = (echo.address() as AddressInfo).port;
    sc = await startTestSidecar(
      POLICY_HEAD +
        `spec:
  defaults:
    timeouts: { connect: 300ms, responseHeaders: 500ms, idle: 1s }
    retries: { attempts: 1, on: ["503"], backoff: { base: 5ms, max: 10ms } }
`,
      [],
      { observers: [{ requestEnded: (r) => records.push(r) }] },
    );
    registrySc = await startTestSidecar(
      POLICY_HEAD +
        `spec:
  outbound: registryOnly
  destinations:
    - name: allowed
      match: { host: 127.0.0.1, port: ${strict.port} }
`,
    );
  });
  after(async () => {
    await sc.close();
    await registrySc.close();
    await up.close();
    await strict.close();
    await hole.close();
    echo.close();
  });

  test('absolute-form requests reach the upstream with Host set from the URI', async () => {
    const r = await viaProxy(sc.egress.port, `http://127.0.0.1:${up.port}/echo?q=1`);
    const seen = JSON.parse(r.body) as { url: string; headers: Record<string, string> };
    assert.equal(seen.url, '/echo?q=1');
    assert.equal(seen.headers.host, `127.0.0.1:${up.port}`);
  });

  test('origin-form requests are routed by the Host header', async () => {
    const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(
        { host: '127.0.0.1', port: sc.egress.port, path: '/echo', headers: { host: `127.0.0.1:${up.port}` } },
        (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      req.end();
    });
    assert.equal(r.status, 200);
    assert.equal((JSON.parse(r.body) as { url: string }).url, '/echo');
  });

  test('the path is forwarded byte for byte, empty segments and encodings included', async () => {
    const r = await viaProxy(sc.egress.port, `http://127.0.0.1:${up.port}/echo//a/%2F/b?x=1//2`);
    assert.equal((JSON.parse(r.body) as { url: string }).url, '/echo//a/%2F/b?x=1//2');
  });

  test('hop-by-hop and x-tether-* request headers are not forwarded; end-to-end ones are', async () => {
    const r = await viaProxy(sc.egress.port, `http://127.0.0.1:${up.port}/echo`, {
      headers: {
        connection: 'keep-alive, x-private-hop',
        'x-private-hop': 'secret',
        'keep-alive': 'timeout=5',
        'proxy-authorization': 'Basic Zm9vOmJhcg==',
        te: 'trailers',
        'x-tether-debug': '1',
        authorization: 'Bearer app-token',
        'x-request-id': 'abc',
      },
    });
    const h = (JSON.parse(r.body) as { headers: Record<string, string> }).headers;
    for (const name of ['x-private-hop', 'keep-alive', 'proxy-authorization', 'te', 'x-tether-debug']) {
      assert.equal(h[name], undefined, `${name} must not be forwarded`);
    }
    assert.equal(h.authorization, 'Bearer app-token');
    assert.equal(h['x-request-id'], 'abc');
  });

  test('https:// in absolute form is refused with advice to use CONNECT', async () => {
    const r = await viaProxy(sc.egress.port, `https://127.0.0.1:${up.port}/`);
    assert.equal(r.status, 400);
    assert.equal(r.headers['x-tether-error'], 'bad_request');
    assert.match(r.body, /CONNECT/);
  });

  test('a request addressed to Tether itself is refused instead of looping', async () => {
    const r = await viaProxy(sc.egress.port, `http://127.0.0.1:${sc.egress.port}/`);
    assert.equal(r.status, 400);
    assert.equal(r.headers['x-tether-error'], 'bad_request');
  });

  test('registryOnly refuses unnamed destinations with 403 destination_not_allowed', async () => {
    const denied = await viaProxy(registrySc.egress.port, `http://127.0.0.1:${up.port}/ok`);
    assert.equal(denied.status, 403);
    assert.equal(denied.headers['x-tether-error'], 'destination_not_allowed');
    assert.equal(up.hit('/ok'), 0);
    const allowed = await viaProxy(registrySc.egress.port, `http://127.0.0.1:${strict.port}/ok`);
    assert.equal(allowed.status, 200);
  });

  test('plaintext HTTP inside CONNECT is served like a proxied request (retries, error words)', async () => {
    const s = await tunnel(sc.egress.port, `127.0.0.1:${up.port}`);
    const body = readAll(s);
    s.write(
      `GET /seq/503,200?key=tunnel HTTP/1.1\r\nHost: 127.0.0.1:${up.port}\r\nConnection: close\r\n\r\n`,
    );
    const text = await body;
    assert.match(text, /^HTTP\/1\.1 200/);
    assert.match(text, /x-tether-attempts: 2/i);
  });

  test("Node's fetch with NODE_USE_ENV_PROXY gets the same timeouts and words as curl", async () => {
    const script = `
      const r = await fetch(process.argv[1]);
      console.log(JSON.stringify({ status: r.status, error: r.headers.get('x-tether-error') }));`;
    const { stdout } = await run(
      process.execPath,
      ['--input-type=module', '-e', script, `http://127.0.0.1:${up.port}/slow-headers/3000`],
      {
        env: {
          ...process.env,
          NODE_USE_ENV_PROXY: '1',
          HTTP_PROXY: sc.proxy,
          http_proxy: sc.proxy,
          NO_PROXY: '',
        },
        timeout: 10_000,
      },
    );
    assert.deepEqual(JSON.parse(stdout), { status: 504, error: 'response_timeout' });
    await eventually(
      () =>
        records.some(
          (r) =>
            r.plan?.destination.path === '/slow-headers/3000' && r.plan.destination.via === 'connect-tunnel',
        ),
      2000,
      'the tunnelled request to be recorded',
    );
  });

  test('a TLS (non-HTTP) tunnel is spliced opaquely, one request in telemetry', async () => {
    const s = await tunnel(sc.egress.port, `127.0.0.1:${echoPort}`);
    const hello = Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]);
    s.write(hello);
    const [back] = (await once(s, 'data')) as [Buffer];
    assert.deepEqual(back, hello);
    s.end();
    await once(s, 'close');
    await eventually(
      () => records.some((r) => r.tunnel && r.status === 200 && r.bytesOut === hello.length),
      2000,
      'the tunnel to be recorded',
    );
  });

  test('an opaque tunnel to a black hole is closed after timeouts.connect and recorded as connect_timeout', async () => {
    const s = await tunnel(sc.egress.port, `127.0.0.1:${hole.port}`);
    const started = performance.now();
    s.write(Buffer.from([0x16, 0x03, 0x01]));
    await once(s, 'close');
    const ms = performance.now() - started;
    assert.ok(ms >= 250 && ms < 2000, `closed after ${ms}ms`);
    await eventually(
      () => records.some((r) => r.tunnel && r.error === 'connect_timeout'),
      2000,
      'the tunnel failure to be recorded',
    );
  });

  test('an opaque tunnel to a closed port is recorded as connection_refused', async () => {
    const port = await closedPort();
    const s = await tunnel(sc.egress.port, `127.0.0.1:${port}`);
    s.write(Buffer.from([0x16, 0x03, 0x01]));
    await once(s, 'close');
    await eventually(
      () => records.some((r) => r.tunnel && r.error === 'connection_refused'),
      2000,
      'the tunnel failure to be recorded',
    );
  });

  test('http-party/node-http-proxy#1559: an app that goes away mid-response leaves no upstream socket open', async () => {
    const leak = await startUpstream();
    try {
      for (let i = 0; i < 5; i++) {
        await new Promise<void>((resolve, reject) => {
          const req = request({
            host: '127.0.0.1',
            port: sc.egress.port,
            path: `http://127.0.0.1:${leak.port}/sse/100/50`,
            agent: false,
          });
          req.on('response', (res) => {
            res.once('data', () => {
              req.destroy();
              resolve();
            });
          });
          req.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? resolve() : reject(e)));
          req.end();
        });
      }
      await eventually(
        () => leak.openSockets() === 0,
        3000,
        `upstream sockets to close (open: ${leak.openSockets()})`,
      );
      await eventually(
        () => records.filter((r) => r.error === 'client_closed').length >= 5,
        2000,
        'client_closed to be recorded',
      );
    } finally {
      await leak.close();
    }
  });
});
