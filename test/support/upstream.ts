// Fault-injecting upstreams on 127.0.0.1:0 for tests: behaviours chosen by path, hit counts and open sockets observable.

import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { spawn } from 'node:child_process';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';

export interface Upstream {
  port: number;
  authority: string;
  /** Requests received, by path (without query). */
  hits: Map<string, number>;
  hit(path: string): number;
  /** Bodies received, by path, in order. */
  bodies: Map<string, string[]>;
  /** Headers of the last request, by path. */
  lastHeaders: Map<string, IncomingMessage['headers']>;
  /** Sockets currently open to this upstream. */
  openSockets(): number;
  close(): Promise<void>;
}

/**
 * Behaviour by path:
 *   /ok                     200 "ok"
 *   /status/N               responds N
 *   /seq/A,B,C?key=k        per key: first hit A, second B, then C for the rest
 *   /slow-headers/MS        waits MS before headers
 *   /stall-after/BYTES      sends headers and BYTES bytes, then nothing
 *   /reset-mid              sends headers and a chunk, then resets the socket
 *   /reset-before           destroys the socket without a response
 *   /sse/N/MS               N events, one every MS
 *   /big/BYTES              a body of BYTES bytes
 *   /echo                   echoes method, path, headers and body as JSON
 *   /hold                   never answers (until the socket closes)
 */
export async function startUpstream(): Promise<Upstream> {
  const hits = new Map<string, number>();
  const bodies = new Map<string, string[]>();
  const lastHeaders = new Map<string, IncomingMessage['headers']>();
  const seqCount = new Map<string, number>();
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const later = (fn: () => void, ms: number): void => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = url.pathname;
    const key = path.split('/').slice(0, 2).join('/');
    hits.set(path, (hits.get(path) ?? 0) + 1);
    if (key !== path) hits.set(key, (hits.get(key) ?? 0) + 1);
    lastHeaders.set(path, req.headers);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const list = bodies.get(path) ?? [];
      list.push(Buffer.concat(chunks).toString());
      bodies.set(path, list);
    });
    const parts = path.split('/').filter(Boolean);
    const [what, a, b] = parts;
    switch (what) {
      case 'ok':
        res.end('ok');
        return;
      case 'status':
        req.resume();
        req.on('end', () => {
          res.writeHead(Number(a));
          res.end(`status ${a}`);
        });
        return;
      case 'seq': {
        const seq = (a ?? '200').split(',').map(Number);
        const k = url.searchParams.get('key') ?? 'default';
        const n = seqCount.get(k) ?? 0;
        seqCount.set(k, n + 1);
        const status = seq[Math.min(n, seq.length - 1)] ?? 200;
        req.resume();
        req.on('end', () => {
          res.writeHead(status);
          res.end(`try ${n + 1}: ${status}`);
        });
        return;
      }
      case 'slow-headers':
        later(() => res.end('late'), Number(a));
        return;
      case 'stall-after':
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('x'.repeat(Number(a)));
        return;
      case 'reset-mid':
        res.writeHead(200, { 'content-length': '1000' });
        res.write('partial');
        later(() => req.socket.resetAndDestroy(), 50);
        return;
      case 'reset-before':
        req.socket.resetAndDestroy();
        return;
      case 'sse': {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        const n = Number(a);
        const every = Number(b);
        let i = 0;
        const tick = (): void => {
          i++;
          res.write(`data: event ${i}\n\n`);
          if (i >= n) res.end();
          else later(tick, every);
        };
        later(tick, every);
        return;
      }
      case 'big':
        res.end(Buffer.alloc(Number(a), 'b'));
        return;
      case 'echo':
        req.on('end', () => {
          res.setHeader('content-type', 'application/json');
          res.end(
            JSON.stringify({
              method: req.method,
              url: req.url,
              headers: req.headers,
              body: Buffer.concat(chunks).toString(),
            }),
          );
        });
        return;
      case 'hold':
        return;
      default:
        res.writeHead(404);
        res.end('no such fault');
    }
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.keepAliveTimeout = 5000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    authority: `127.0.0.1:${port}`,
    hits,
    hit: (p) => hits.get(p) ?? 0,
    bodies,
    lastHeaders,
    openSockets: () => sockets.size,
    close: async () => {
      for (const t of timers) clearTimeout(t);
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

export interface BlackHole {
  port: number;
  close(): Promise<void>;
}

const BLACK_HOLE_PY = `
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(0)
fill = []
for _ in range(4):
    c = socket.socket()
    c.setblocking(False)
    try:
        c.connect(s.getsockname())
    except BlockingIOError:
        pass
    fill.append(c)
print(s.getsockname()[1], flush=True)
sys.stdin.read()
`;

/**
 * A port that never completes a TCP handshake: a socket that listens with backlog 0 and never
 * calls accept(), its queue filled first, so further SYNs are dropped and connects hang. Node's
 * net.Server always accepts, so a tiny python3 process holds the socket.
 */
export async function startBlackHole(): Promise<BlackHole> {
  const child = spawn('python3', ['-c', BLACK_HOLE_PY], { stdio: ['pipe', 'pipe', 'inherit'] });
  const [line] = (await once(child.stdout, 'data')) as [Buffer];
  const port = Number(line.toString().trim());
  if (!Number.isInteger(port) || port <= 0) throw new Error(`black hole helper printed ${line.toString()}`);
  return {
    port,
    close: async () => {
      child.stdin.end();
      child.kill();
      if (child.exitCode === null) await once(child, 'exit');
    },
  };
}

/** A port with nothing listening: bind port 0, note it, close it. */
export async function closedPort(): Promise<number> {
  const s = createNetServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as AddressInfo).port;
  s.close();
  await once(s, 'close');
  return port;
}
