// The sidecar's composition root: builds policy source, data path, listeners and admin from a SidecarConfig, and shuts them down.

import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { healthRoutes } from './admin/health.ts';
import { createAdminServer } from './admin/server.ts';
import type { SidecarConfig } from './config/sidecar.ts';
import { EMBEDDED_DEFAULT_PATH } from './policy/load.ts';
import { FilePolicySource } from './policy/sources/file.ts';
import { PolicyStore } from './policy/store.ts';
import { Destinations } from './proxy/destinations.ts';
import { createEgressServer } from './proxy/listener.ts';
import { combineObservers, type Observer } from './proxy/observer.ts';
import { Forwarder } from './proxy/upstream/forward.ts';
import { realClock, type Clock } from './resilience/clock.ts';
import { createLogger, type Logger } from './telemetry/log.ts';

export interface Sidecar {
  egress: AddressInfo;
  admin: AddressInfo;
  store: PolicyStore;
  destinations: Destinations;
  log: Logger;
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
}

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
  const log = opts.log ?? createLogger(config.logLevel, 'tether-sidecar');
  const store = new PolicyStore();
  const policyPath = config.policyFile ?? EMBEDDED_DEFAULT_PATH;
  const source = new FilePolicySource(
    {
      path: policyPath,
      pollMs: config.policyPollMs,
      label: config.policyFile ? `file:${policyPath}` : 'embedded-default',
    },
    store,
    log.child({ component: 'policy' }),
  );
  const loaded = await source.start();
  if (!loaded.ok)
    throw new StartupError([
      `policy ${policyPath} is invalid; the sidecar will not start on it:`,
      ...loaded.messages,
    ]);

  const destinations = new Destinations(clock, { agentIdleMs: 4000, evictAfterMs: 10 * 60_000 });
  const observer = combineObservers(opts.observers ?? [], (err) => log.error({ err }, 'observer failed'));
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
  const admin = createAdminServer(
    healthRoutes({
      policyLoaded: () => store.loaded,
      listenerBound: () => egress.listening,
      draining: () => draining,
      openCriticalBreakers: () =>
        [...destinations.all()].filter((d) => d.critical && d.breaker.state !== 'closed').map((d) => d.name),
    }),
    (err) => log.error({ err }, 'admin handler failed'),
  );
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
      close: async () => {
        draining = true;
        source.stop();
        egress.close();
        admin.close();
        egress.closeAllConnections();
        admin.closeAllConnections();
        destinations.close();
      },
    };
  } catch (err) {
    source.stop();
    egress.close();
    admin.close();
    destinations.close();
    throw err;
  }
}
