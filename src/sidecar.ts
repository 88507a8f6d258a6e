// The sidecar's composition root: builds policy source, data path, listeners and admin from a SidecarConfig, and shuts them down.

import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { debugRoutes } from './admin/debug.ts';
import { healthRoutes } from './admin/health.ts';
import { metricsRoutes } from './admin/metrics.ts';
import { createAdminServer } from './admin/server.ts';
import { shutdownRoutes } from './admin/shutdown.ts';
import type { SidecarConfig } from './config/sidecar.ts';
import { openPolicySource } from './policy/sources/open.ts';
import { PolicyStore } from './policy/store.ts';
import { Destinations, type DestinationRuntime } from './proxy/destinations.ts';
import { createEgressServer } from './proxy/listener.ts';
import { combineObservers, type Observer } from './proxy/observer.ts';
import { Forwarder } from './proxy/upstream/forward.ts';
import { realClock, type Clock } from './resilience/clock.ts';
import { createLogger, stdoutDestination, type Logger } from './telemetry/log.ts';
import { LoopMonitor, type LoopMonitorOptions } from './telemetry/loop.ts';
import type { Metrics } from './telemetry/metrics.ts';
import { startTelemetry, type Telemetry } from './telemetry/telemetry.ts';
import type { Tracing } from './telemetry/tracing.ts';

export interface Sidecar {
  egress: AddressInfo;
  admin: AddressInfo;
  store: PolicyStore;
  destinations: Destinations;
  log: Logger;
  metrics: Metrics;
  /** Present when tracing is on; tests flush it instead of waiting for the batch delay. */
  tracing: Tracing | undefined;
  /**
   * Graceful stop (SIGTERM, POST /shutdown): readiness turns 503, the egress listener stops
   * accepting, idle keep-alive connections close, in-flight requests and streams get `graceMs` to
   * finish; then everything closes. Resolves with how many requests were still in flight when
   * the grace ran out (0 for a clean drain).
   */
  drain(graceMs: number): Promise<{ cut: number }>;
  /** Immediate stop: open connections are closed. */
  close(): Promise<void>;
}

export class StartupError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(problems.join('\n'));
    this.problems = problems;
  }
}

export interface SidecarOptions {
  clock?: Clock;
  observers?: Observer[];
  log?: Logger;
  /** Access log lines go here instead of stdout (tests); when `log` is given and this is not, to a child of `log`. */
  accessLog?: Logger;
  /** What POST /shutdown does; without it the sidecar drains itself (with --drain-grace) and stays stopped. */
  onShutdownRequest?: () => void;
  /** Event-loop stall detection for /livez (tests shorten it). */
  loop?: LoopMonitorOptions;
}

/** How often idle keep-alive connections are closed while draining: promptly, as each one finishes its response. */
const DRAIN_SWEEP_MS = 100;

async function listen(server: Server, host: string, port: number, what: string): Promise<AddressInfo> {
  server.listen(port, host);
  try {
    await once(server, 'listening');
  } catch (err) {
    throw new StartupError([
      `cannot listen on ${host}:${port} for ${what}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
    ]);
  }
  return server.address() as AddressInfo;
}

export async function startSidecar(config: SidecarConfig, opts: SidecarOptions = {}): Promise<Sidecar> {
  const clock = opts.clock ?? realClock;
  // Logs go through one asynchronous, bounded stdout buffer: a slow log reader must not stall the proxy.
  const log = opts.log ?? createLogger(config.logLevel, 'tether-sidecar', stdoutDestination());
  const store = new PolicyStore();
  // A policy file is applied before this returns; the Kubernetes source serves the embedded default, not ready, until its first sync.
  const opened = await openPolicySource(config, store, log.child({ component: 'policy' }), clock);
  if (!opened.ok) throw new StartupError(opened.problems);
  const source = opened.source;

  // Read at scrape and probe time only, after `destinations` below exists.
  const all = (): Iterable<DestinationRuntime> => destinations.all();
  let telemetry: Telemetry;
  try {
    telemetry = await startTelemetry({
      config,
      clock,
      store,
      destinations: all,
      log,
      accessLog: opts.accessLog ?? opts.log?.child({ component: 'access' }),
      stdoutLogs: opts.log === undefined,
    });
  } catch (err) {
    source.stop();
    throw err;
  }
  const destinations = new Destinations(
    clock,
    { agentIdleMs: 4000, evictAfterMs: 10 * 60_000 },
    telemetry.destinationHooks,
  );
  const observer = combineObservers([...telemetry.observers, ...(opts.observers ?? [])], (err) =>
    log.error({ err }, 'observer failed'),
  );
  let egressAddress: AddressInfo | undefined;
  let draining = false;
  const egress = createEgressServer(
    {
      clock,
      policy: store,
      destinations,
      forwarder: new Forwarder(clock),
      observer,
      self: () => (egressAddress ? { host: egressAddress.address, port: egressAddress.port } : undefined),
    },
    clock,
  );
  // Runs before the data path's handler: responses started while draining close their connection.
  egress.prependListener('request', (_req, res) => {
    if (draining && !res.headersSent) res.setHeader('connection', 'close');
  });
  const loop = new LoopMonitor(opts.loop);
  let drainOnce: Promise<{ cut: number }> | undefined;
  const admin = createAdminServer(
    [
      ...healthRoutes({
        policyLoaded: () => store.loaded,
        policyPending: () => store.pending,
        listenerBound: () => egress.listening,
        draining: () => draining,
        openCriticalBreakers: () => [
          ...new Set([...all()].filter((d) => d.critical && d.breaker.state !== 'closed').map((d) => d.name)),
        ],
        loop,
      }),
      ...metricsRoutes(telemetry.metrics),
      ...debugRoutes({ destinations: all, recent: telemetry.recent, store }),
      ...shutdownRoutes(() => {
        log.info('shutdown requested (POST /shutdown)');
        if (opts.onShutdownRequest) opts.onShutdownRequest();
        else void drain(config.drainGraceMs);
      }),
    ],
    (err) => log.error({ err }, 'admin handler failed'),
  );
  const inFlight = (): number => {
    let n = 0;
    for (const rt of all()) n += rt.inFlight;
    return n;
  };
  const close = async (): Promise<void> => {
    draining = true;
    source.stop();
    loop.stop();
    egress.close();
    admin.close();
    egress.closeAllConnections();
    admin.closeAllConnections();
    destinations.close();
    await telemetry.shutdown();
  };
  const drain = (graceMs: number): Promise<{ cut: number }> => {
    drainOnce ??= (async () => {
      draining = true;
      log.info(
        { inFlight: inFlight(), graceMs },
        'draining: readiness is 503, no new connections, waiting for in-flight requests',
      );
      const closed = new Promise<void>((resolve) => egress.close(() => resolve()));
      egress.closeIdleConnections();
      const sweep = setInterval(() => egress.closeIdleConnections(), DRAIN_SWEEP_MS);
      let timer: NodeJS.Timeout | undefined;
      const graceOver = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), graceMs)));
      const timedOut = await Promise.race([closed.then(() => false), graceOver]);
      clearInterval(sweep);
      clearTimeout(timer);
      const cut = timedOut ? inFlight() : 0;
      if (timedOut) log.warn({ cut, graceMs }, 'drain grace period over: closing the remaining connections');
      else log.info('drained: every in-flight request finished');
      await close();
      return { cut };
    })();
    return drainOnce;
  };
  try {
    egressAddress = await listen(
      egress,
      config.listen.host,
      config.listen.port,
      'the egress proxy (--listen)',
    );
    const adminAddress = await listen(
      admin,
      config.adminListen.host,
      config.adminListen.port,
      'the admin server (--admin-listen)',
    );
    log.info(
      {
        egress: `${egressAddress.address}:${egressAddress.port}`,
        admin: `${adminAddress.address}:${adminAddress.port}`,
        policy: store.status().source,
        version: store.status().version,
      },
      'tether-sidecar ready',
    );
    return {
      egress: egressAddress,
      admin: adminAddress,
      store,
      destinations,
      log,
      metrics: telemetry.metrics,
      tracing: telemetry.tracing,
      drain,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
