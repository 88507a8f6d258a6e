// The admin listener: a small route table for health, and later metrics and debug pages.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export type Handler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

export interface Route {
  method: 'GET' | 'POST';
  path: string;
  /** Debug pages and /shutdown answer only clients on the pod's own loopback. */
  loopbackOnly?: boolean;
  handler: Handler;
}

export function isLoopbackPeer(req: IncomingMessage): boolean {
  const a = req.socket.remoteAddress ?? '';
  return a === '::1' || a.startsWith('127.') || a.startsWith('::ffff:127.');
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const payload = JSON.stringify(body, null, 2) + '\n';
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(payload),
    'cache-control': 'no-store',
  });
  res.end(payload);
}

export function createAdminServer(routes: Route[], onError: (err: unknown) => void): Server {
  return createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const matches = routes.filter((r) => r.path === path);
    const route = matches.find((r) => r.method === req.method);
    if (!route) {
      if (matches.length > 0)
        sendJson(res, 405, { error: `use ${matches.map((r) => r.method).join(' or ')} for ${path}` });
      else
        sendJson(res, 404, {
          error: `no admin endpoint ${path}`,
          endpoints: routes.map((r) => `${r.method} ${r.path}`),
        });
      return;
    }
    if (route.loopbackOnly && !isLoopbackPeer(req)) {
      sendJson(res, 403, { error: `${path} answers only clients on the pod's loopback interface` });
      return;
    }
    Promise.resolve(route.handler(req, res)).catch((err: unknown) => {
      onError(err);
      if (!res.headersSent) sendJson(res, 500, { error: String(err) });
      else res.destroy();
    });
  });
}
