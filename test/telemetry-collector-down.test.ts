// Tracing with the collector down: every request still succeeds at full speed, spans beyond the bounded queue are dropped and counted, memory stays flat.

import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { SPAN_QUEUE } from '../src/telemetry/tracing.ts';
import { metricValue, scrape } from './support/metrics.ts';
import { POLICY_HEAD } from './support/sidecar.ts';
import { spawnSidecar, type SidecarProcess } from './support/sidecar-process.ts';
import { closedPort, startUpstream, type Upstream } from './support/upstream.ts';

const CONCURRENCY = 16;

describe('collector down', () => {
  let up: Upstream;
  let sc: SidecarProcess;
  let agent: Agent;

  before(async () => {
    up = await startUpstream();
    const collector = await closedPort();
    sc = await spawnSidecar(
      POLICY_HEAD + 'spec: {}\n',
      [],
      {
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${collector}`,
        OTEL_TRACES_SAMPLER: 'always_on',
        TETHER_ACCESS_LOG: 'off',
      },
      // V8 otherwise grows its heap lazily by hundreds of MB under load whatever the sidecar keeps;
      // bounding its slack makes RSS show what is actually retained.
      ['--max-old-space-size=64', '--max-semi-space-size=1'],
    );
    agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  });
  after(async () => {
    agent.destroy();
    await sc.kill();
    await up.close();
  });

  /** Sends `n` requests, CONCURRENCY at a time; returns the statuses and the slowest request's time. */
  async function load(n: number): Promise<{ statuses: Map<number, number>; slowestMs: number }> {
    const statuses = new Map<number, number>();
    let slowestMs = 0;
    let next = 0;
    const one = (): Promise<void> =>
      new Promise((resolve, reject) => {
        const t0 = performance.now();
        const req = request(
          { host: '127.0.0.1', port: sc.egressPort, path: `http://${up.authority}/ok`, agent },
          (res) => {
            res.resume();
            res.on('end', () => {
              slowestMs = Math.max(slowestMs, performance.now() - t0);
              statuses.set(res.statusCode ?? 0, (statuses.get(res.statusCode ?? 0) ?? 0) + 1);
              resolve();
            });
          },
        );
        req.on('error', reject);
        req.end();
      });
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next++ < n) await one();
      }),
    );
    return { statuses, slowestMs };
  }

  test('thousands of requests all succeed, none waits for the exporter, drops are counted, RSS stays flat', async () => {
    const warm = await load(1000);
    assert.deepEqual([...warm.statuses], [[200, 1000]]);
    const rssBefore = sc.rss();
    const run = await load(3000);
    const rssAfter = sc.rss();
    assert.deepEqual([...run.statuses], [[200, 3000]], 'every request succeeds with the collector down');
    // An export fails only after 10s of retries starting at 1s: a request that waited on it would take that long.
    assert.ok(run.slowestMs < 3000, `slowest request took ${Math.round(run.slowestMs)}ms`);

    const m = await scrape(sc.adminPort);
    const queueFull = metricValue(m, 'tether_spans_dropped_total', { reason: 'queue_full' });
    const exportFailed = metricValue(m, 'tether_spans_dropped_total', { reason: 'export_failed' });
    // Each request made two spans (request and try); at most the queue and one batch in export are held.
    const made = 2 * 4000;
    const held = SPAN_QUEUE.maxQueueSize + SPAN_QUEUE.maxExportBatchSize;
    assert.ok(queueFull > 0, 'the span queue is bounded: it filled and dropped');
    assert.ok(
      queueFull + exportFailed >= made - held,
      `dropped ${queueFull}+${exportFailed} of ${made} spans, at most ${held} may be held`,
    );

    const growthMb = (rssAfter - rssBefore) / 1e6;
    assert.ok(
      growthMb < 30,
      `RSS grew ${growthMb.toFixed(1)}MB over 3000 requests (${(rssAfter / 1e6).toFixed(0)}MB)`,
    );

    const warned = sc.lines.find(
      (l) => l.msg === 'spans dropped: the trace collector is unreachable or too slow',
    );
    assert.ok(warned, 'the drop is reported in the log as well');
  });
});
