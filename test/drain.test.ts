// Graceful drain on the real binary: SIGTERM or POST /shutdown → readiness 503, no new connections, idle keep-alives closed, streams finish within the grace, exit 0.

import assert from 'node:assert/strict';
import { Agent, request, type IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { POLICY_HEAD, viaProxy } from './support/sidecar.ts';
import { spawnSidecar, type SidecarProcess } from './support/sidecar-process.ts';
import { startUpstream, type Upstream } from './support/upstream.ts';

const POLICY = POLICY_HEAD + 'spec: {}\n';

interface Stream {
  response: Promise<IncomingMessage>;
  /** Resolves with the events received and whether the body ended cleanly. */
  done: Promise<{ events: number; complete: boolean }>;
  firstEvent: Promise<void>;
}

function openStream(proxyPort: number, url: string): Stream {
  let first: () => void = () => undefined;
  const firstEvent = new Promise<void>((r) => (first = r));
  let onResponse: (r: IncomingMessage) => void = () => undefined;
  const response = new Promise<IncomingMessage>((r) => (onResponse = r));
  const done = new Promise<{ events: number; complete: boolean }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: proxyPort, path: url, agent: false });
    let responded = false;
    // After the response started, a reset is the stream being cut: reported as incomplete, not thrown.
    req.on('error', (err) => (responded ? resolve({ events: 0, complete: false }) : reject(err)));
    req.on('response', (res) => {
      responded = true;
      onResponse(res);
      let text = '';
      const count = (): number => (text.match(/^data: /gm) ?? []).length;
      res.on('data', (c: Buffer) => {
        text += c.toString();
        if (count() > 0) first();
      });
      res.on('end', () => resolve({ events: count(), complete: true }));
      res.on('error', () => resolve({ events: count(), complete: false }));
      res.on('close', () => resolve({ events: count(), complete: res.complete }));
    });
    req.end();
  });
  return { response, done, firstEvent };
}

function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.on('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

async function readyz(sc: SidecarProcess): Promise<number> {
  return (await fetch(`http://127.0.0.1:${sc.adminPort}/readyz`)).status;
}

describe('graceful drain', () => {
  let up: Upstream;
  before(async () => {
    up = await startUpstream();
  });
  after(() => up.close());

  test('SIGTERM: readiness 503 at once, new connections refused, idle keep-alives closed, the stream completes, exit 0', async () => {
    const sc = await spawnSidecar(POLICY, ['--drain-grace', '10s']);
    try {
      // An idle keep-alive connection, as an app's client pool keeps one.
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      let idleSocket: Socket | undefined;
      const idle = await new Promise<IncomingMessage>((resolve, reject) => {
        const req = request({
          host: '127.0.0.1',
          port: sc.egressPort,
          path: `http://${up.authority}/ok`,
          agent,
        });
        req.on('socket', (s) => (idleSocket = s));
        req.on('response', (res) => {
          res.resume();
          res.on('end', () => resolve(res));
        });
        req.on('error', reject);
        req.end();
      });
      assert.equal(idle.statusCode, 200);
      assert.ok(idleSocket && !idleSocket.destroyed, 'the keep-alive socket stays open in the pool');
      const idleClosed = new Promise<number>((r) => idleSocket?.once('close', () => r(performance.now())));

      const stream = openStream(sc.egressPort, `http://${up.authority}/sse/12/150`);
      await stream.firstEvent;
      const sentAt = performance.now();
      sc.child.kill('SIGTERM');

      // Readiness flips while the process keeps running for the stream.
      let status = 0;
      for (let i = 0; i < 40 && status !== 503; i++) {
        status = await readyz(sc);
        if (status !== 503) await new Promise((r) => setTimeout(r, 25));
      }
      assert.equal(status, 503);
      assert.equal(await tryConnect(sc.egressPort), 'ECONNREFUSED', 'the egress listener stopped accepting');
      const closedAt = await idleClosed;
      assert.ok(
        closedAt - sentAt < 1000,
        `idle keep-alive closed ${Math.round(closedAt - sentAt)}ms after SIGTERM`,
      );

      const result = await stream.done;
      assert.deepEqual(result, { events: 12, complete: true }, 'the stream finished untouched');
      const code = await sc.exited;
      const exitedAfter = performance.now() - sentAt;
      assert.equal(code, 0, sc.output());
      assert.ok(
        exitedAfter < 5000,
        `exited ${Math.round(exitedAfter)}ms after SIGTERM, well within the 10s grace`,
      );
      assert.ok(
        sc.lines.some((l) => l.msg === 'drained: every in-flight request finished'),
        sc.output(),
      );
      agent.destroy();
    } finally {
      await sc.kill();
    }
  });

  test('a stream longer than the grace period is cut when it runs out, and the exit is still 0', async () => {
    const sc = await spawnSidecar(POLICY, ['--drain-grace', '600ms']);
    try {
      const stream = openStream(sc.egressPort, `http://${up.authority}/sse/50/100`);
      await stream.firstEvent;
      const sentAt = performance.now();
      sc.child.kill('SIGTERM');
      assert.equal(await sc.exited, 0, sc.output());
      const took = performance.now() - sentAt;
      assert.ok(took >= 550 && took < 3000, `exit ${Math.round(took)}ms after SIGTERM with a 600ms grace`);
      const result = await stream.done;
      assert.equal(result.complete, false);
      assert.ok(result.events < 50);
      const over = sc.lines.find(
        (l) => l.msg === 'drain grace period over: closing the remaining connections',
      );
      assert.equal(over?.cut, 1, sc.output());
    } finally {
      await sc.kill();
    }
  });

  test('POST /shutdown from loopback drains and exits 0, as a Job needs on clusters without native sidecars', async () => {
    const sc = await spawnSidecar(POLICY);
    try {
      assert.equal((await viaProxy(sc.egressPort, `http://${up.authority}/ok`)).status, 200);
      const r = await fetch(`http://127.0.0.1:${sc.adminPort}/shutdown`, { method: 'POST' });
      assert.equal(r.status, 202);
      assert.deepEqual(await r.json(), { draining: true });
      assert.equal(await sc.exited, 0, sc.output());
      assert.ok(sc.lines.some((l) => l.msg === 'shutdown requested (POST /shutdown)'));
    } finally {
      await sc.kill();
    }
  });

  test('GET /shutdown is refused with 405: a stray probe or crawler cannot stop the sidecar', async () => {
    const sc = await spawnSidecar(POLICY);
    try {
      const r = await fetch(`http://127.0.0.1:${sc.adminPort}/shutdown`);
      assert.equal(r.status, 405);
      assert.equal(await readyz(sc), 200);
    } finally {
      await sc.kill();
    }
  });

  test('a request arriving on a kept-alive connection during the drain is served with Connection: close', async () => {
    // The idle sweep may win the race for the connection between the two requests (then the client
    // would simply reconnect); try a few times until the second request is served.
    let second = '';
    for (let attempt = 0; attempt < 5 && !second; attempt++) {
      const sc = await spawnSidecar(POLICY);
      try {
        const socket = connect({ host: '127.0.0.1', port: sc.egressPort });
        let out = '';
        let sent = false;
        socket.on('data', (c: Buffer) => {
          out += c.toString();
          if (!sent && out.includes('late')) {
            sent = true;
            socket.write(`GET http://${up.authority}/ok HTTP/1.1\r\nHost: ${up.authority}\r\n\r\n`);
          }
        });
        socket.write(`GET http://${up.authority}/slow-headers/400 HTTP/1.1\r\nHost: ${up.authority}\r\n\r\n`);
        await new Promise((r) => setTimeout(r, 100));
        sc.child.kill('SIGTERM');
        // A reset here is the sweep having closed the idle connection first: try again.
        socket.on('error', () => undefined);
        await new Promise((r) => socket.on('close', r));
        const at = out.indexOf('late');
        second = at === -1 ? '' : out.slice(at + 'late'.length);
        assert.equal(await sc.exited, 0);
      } finally {
        await sc.kill();
      }
    }
    assert.match(second, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(second, /\r\nconnection: close\r\n/i);
    assert.match(second, /\r\n\r\nok$/);
  });
});
