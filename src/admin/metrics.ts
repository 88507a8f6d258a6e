// GET /metrics: the Prometheus exposition of this sidecar's metrics and the process's, for any scraper that can reach the admin port.

import type { Metrics } from '../telemetry/metrics.ts';
import type { Route } from './server.ts';

export function metricsRoutes(metrics: Metrics): Route[] {
  return [
    {
      method: 'GET',
      path: '/metrics',
      handler: async (_req, res) => {
        const body = await metrics.text();
        res.writeHead(200, {
          'content-type': metrics.contentType,
          'content-length': Buffer.byteLength(body),
          'cache-control': 'no-store',
        });
        res.end(body);
      },
    },
  ];
}
