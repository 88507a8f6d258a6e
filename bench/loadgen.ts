// The bench's load generator, a list of measurements per process: open-loop at a fixed rate (latency from the intended send time) or closed-loop at a fixed concurrency.
//
// Open loop: request i is due at t0 + i/rate whatever earlier responses do, and its latency is
// counted from that due time, so a stalled proxy shows up as latency instead of as fewer
// requests (no coordinated omission). Node timers are 1 ms coarse, so the scheduler sleeps only
// when the next send is over 2 ms away and otherwise spins on setImmediate (still polling I/O);
// how late sends actually left is reported as `sendLag`, and the direct arm shows the whole
// floor this generator adds. Closed loop: `concurrency` callers each send the next request as
// soon as the previous one completes; it measures maximum throughput, not latency.
//
// It reads the proxy's CPU time and RSS from /proc itself, at the edges of the measured window.

import { Agent, request } from 'node:http';
import { cpuSecondsAll, rssAll } from './lib/proc.ts';
import { percentiles, type Percentiles } from './lib/stats.ts';

export interface LoadSpec {
  mode: 'open' | 'closed';
  port: number;
  /** Request-target: origin-form "/small" or absolute-form "http://host:port/small" for a forward proxy. */
  path: string;
  /** Open loop: requests per second. */
  rate?: number;
  /** Closed loop: requests in flight. */
  concurrency?: number;
  seconds: number;
  warmupSeconds: number;
  /** Processes whose CPU and RSS are measured over the window (the proxy under test). */
  pids: number[];
  /** Open loop: requests allowed in flight before further sends count as failures (bounds sockets). */
  maxInFlight?: number;
}

export interface LoadResult {
  mode: 'open' | 'closed';
  /** Measured requests that completed with 200. */
  ok: number;
  /** Measured requests that failed: socket errors, non-200 statuses, over the in-flight cap, or unanswered at the end. */
  failed: number;
  firstError?: string;
  windowSeconds: number;
  /** Completed requests per second over the window. */
  rps: number;
  /** Open loop only: ms from the intended send time to the last byte of the response. */
  latencyMs?: Percentiles;
  /** Open loop only: ms between a request's due time and when it was handed to the socket layer. */
  sendLagMs?: Percentiles;
  cpuSeconds: number;
  /** Largest summed RSS of `pids` seen during the window (sampled every 100 ms), MiB. */
  rssMaxMiB: number;
}

function send(agent: Agent, port: number, path: string, done: (err: string | undefined) => void): void {
  const req = request({ host: '127.0.0.1', port, path, method: 'GET', agent }, (res) => {
    const status = res.statusCode;
    res.on('end', () => done(status === 200 ? undefined : `status ${status}`));
    res.on('error', (e) => done(e.message));
    res.resume();
  });
  req.on('error', (e) => done((e as NodeJS.ErrnoException).code ?? e.message));
  req.end();
}

function sampler(pids: readonly number[]): { stop(): number } {
  let max = rssAll(pids);
  const t = setInterval(() => (max = Math.max(max, rssAll(pids))), 100);
  return {
    stop: () => {
      clearInterval(t);
      return Math.max(max, rssAll(pids));
    },
  };
}

async function openLoop(s: LoadSpec): Promise<LoadResult> {
  const rate = s.rate ?? 0;
  const maxInFlight = s.maxInFlight ?? 1000;
  const agent = new Agent({ keepAlive: true, maxSockets: maxInFlight, scheduling: 'lifo' });
  const interval = 1000 / rate;
  const warmN = Math.round(rate * s.warmupSeconds);
  const n = Math.round(rate * s.seconds);
  const total = warmN + n;
  const latency = new Float64Array(n);
  const lag = new Float64Array(n);
  let recorded = 0;
  let lagged = 0;
  let ok = 0;
  let failed = 0;
  let firstError: string | undefined;
  let inFlight = 0;
  let cpu0 = 0;
  let tWindow0 = 0;
  let rss: { stop(): number } | undefined;
  const t0 = performance.now() + 10;
  let next = 0;
  let finish: () => void = () => undefined;
  const finished = new Promise<void>((r) => (finish = r));
  let settled = 0; // measured requests that completed or failed

  const fail = (why: string): void => {
    failed++;
    firstError ??= why;
  };
  const fire = (due: number, measured: boolean): void => {
    if (measured && next === warmN) {
      cpu0 = cpuSecondsAll(s.pids);
      tWindow0 = performance.now();
      rss = sampler(s.pids);
    }
    if (inFlight >= maxInFlight) {
      if (measured) {
        fail(`over ${maxInFlight} requests in flight`);
        if (++settled === n) finish();
      }
      return;
    }
    inFlight++;
    if (measured) lag[lagged++] = performance.now() - due;
    send(agent, s.port, s.path, (err) => {
      inFlight--;
      if (!measured) return;
      if (err) fail(err);
      else {
        ok++;
        latency[recorded++] = performance.now() - due;
      }
      if (++settled === n) finish();
    });
  };
  const pump = (): void => {
    const now = performance.now();
    while (next < total && t0 + next * interval <= now) {
      fire(t0 + next * interval, next >= warmN);
      next++;
    }
    if (next >= total) return;
    const wait = t0 + next * interval - performance.now();
    if (wait > 2) setTimeout(pump, wait - 1.5);
    else setImmediate(pump);
  };
  pump();
  const grace = setTimeout(
    () => {
      if (settled < n) {
        fail(`${n - settled} requests unanswered 10s after the last send`);
        failed += n - settled - 1;
      }
      finish();
    },
    (total / rate) * 1000 + 10_000,
  );
  await finished;
  clearTimeout(grace);
  const windowSeconds = (performance.now() - tWindow0) / 1000;
  const cpuSeconds = cpuSecondsAll(s.pids) - cpu0;
  const rssMaxMiB = rss?.stop() ?? NaN;
  agent.destroy();
  return {
    mode: 'open',
    ok,
    failed,
    ...(firstError ? { firstError } : {}),
    windowSeconds,
    rps: ok / windowSeconds,
    latencyMs: percentiles(latency, recorded),
    sendLagMs: percentiles(lag, lagged),
    cpuSeconds,
    rssMaxMiB,
  };
}

async function closedLoop(s: LoadSpec): Promise<LoadResult> {
  const c = s.concurrency ?? 1;
  const agent = new Agent({ keepAlive: true, maxSockets: c, scheduling: 'lifo' });
  let ok = 0;
  let failed = 0;
  let firstError: string | undefined;
  let measuring = false;
  let stopAt = Infinity;
  const worker = async (): Promise<void> => {
    while (performance.now() < stopAt) {
      const err = await new Promise<string | undefined>((r) => send(agent, s.port, s.path, r));
      if (!measuring) continue;
      if (err) {
        failed++;
        firstError ??= err;
      } else ok++;
    }
  };
  const start = performance.now();
  stopAt = start + (s.warmupSeconds + s.seconds) * 1000;
  const workers = Array.from({ length: c }, () => worker());
  await new Promise((r) => setTimeout(r, s.warmupSeconds * 1000));
  measuring = true;
  const cpu0 = cpuSecondsAll(s.pids);
  const t0 = performance.now();
  const rss = sampler(s.pids);
  await new Promise((r) => setTimeout(r, s.seconds * 1000));
  measuring = false;
  const windowSeconds = (performance.now() - t0) / 1000;
  const cpuSeconds = cpuSecondsAll(s.pids) - cpu0;
  const rssMaxMiB = rss.stop();
  await Promise.all(workers);
  agent.destroy();
  return {
    mode: 'closed',
    ok,
    failed,
    ...(firstError ? { firstError } : {}),
    windowSeconds,
    rps: ok / windowSeconds,
    cpuSeconds,
    rssMaxMiB,
  };
}

if (import.meta.main) {
  // A list of measurements run back to back in this one process (each on fresh connections);
  // one JSON line per result as it completes, so the driver can report progress.
  const specs = JSON.parse(process.argv[2] ?? '[]') as LoadSpec[];
  for (const spec of specs) {
    const result = spec.mode === 'open' ? await openLoop(spec) : await closedLoop(spec);
    process.stdout.write(JSON.stringify(result) + '\n');
  }
}
