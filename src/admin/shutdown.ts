// POST /shutdown: lets a Job's last container stop the sidecar on clusters without native sidecars (Linkerd's /shutdown, Dapr's /v1.0/shutdown).

import type { Route } from './server.ts';
import { sendJson } from './server.ts';

/** `shutdown` starts the same graceful drain as SIGTERM; the answer goes out before the listener closes. */
export function shutdownRoutes(shutdown: () => void): Route[] {
  return [
    {
      method: 'POST',
      path: '/shutdown',
      loopbackOnly: true,
      handler: (_req, res) => {
        sendJson(res, 202, { draining: true });
        res.on('finish', shutdown);
      },
    },
  ];
}
