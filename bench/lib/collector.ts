// A local OTLP/HTTP trace sink for the tracing arms: accepts POST /v1/traces, counts what arrived, answers 200 — so numbers never depend on a real collector's speed.

import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Collector {
  /** Base URL for OTEL_EXPORTER_OTLP_ENDPOINT. */
  url: string;
  /** Export requests received, spans counted (JSON payloads only) and bytes received. */
  stats(): { exports: number; spans: number; bytes: number };
  close(): Promise<void>;
}

function countSpans(json: unknown): number {
  let n = 0;
  const rs = (json as { resourceSpans?: { scopeSpans?: { spans?: unknown[] }[] }[] }).resourceSpans ?? [];
  for (const r of rs) for (const s of r.scopeSpans ?? []) n += s.spans?.length ?? 0;
  return n;
}

export async function startCollector(): Promise<Collector> {
  let exports = 0;
  let spans = 0;
  let bytes = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      bytes += body.length;
      if (req.method !== 'POST' || req.url !== '/v1/traces') {
        res.writeHead(404).end();
        return;
      }
      exports++;
      const json = (req.headers['content-type'] ?? '').includes('json');
      if (json) {
        try {
          spans += countSpans(JSON.parse(body.toString('utf8')));
        } catch {
          // counted as an export; its spans are unknown
        }
      }
      // An empty ExportTraceServiceResponse: "{}" in JSON, zero bytes in protobuf.
      res.writeHead(200, { 'content-type': json ? 'application/json' : 'application/x-protobuf' });
      res.end(json ? '{}' : undefined);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    stats: () => ({ exports, spans, bytes }),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
