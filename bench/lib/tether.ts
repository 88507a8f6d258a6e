// The Tether arms: the real tether-sidecar binary as its own pinned process, with the policy, flags and OTEL_* environment of one configuration.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, spawnPinned, tailOf, waitForPort, type Pinning, type Spawned } from './proc.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SETTINGS = join(ROOT, 'src/config/sidecar.ts');

/** What the sidecar in this checkout can switch, so the bench never passes a flag it lacks. */
export interface TetherCapabilities {
  accessLogFlag: boolean;
  tracing: boolean;
}

/**
 * Read from the settings table's source rather than from `--help`, which costs a full sidecar
 * start (seconds on a busy machine). A wrong answer cannot hide: the sidecar exits 64 on an unknown
 * flag, and the arm then fails to start.
 */
export function tetherCapabilities(): TetherCapabilities {
  const table = readFileSync(SETTINGS, 'utf8');
  return {
    accessLogFlag: /flag:\s*'access-log'/.test(table),
    tracing: /env:\s*'OTEL_EXPORTER_OTLP_ENDPOINT'/.test(table),
  };
}

/** One Tether configuration: the features it switches on, each independently. */
export interface TetherFeatures {
  breaker: boolean;
  timeouts: boolean;
  retryPlan: boolean;
  /** Sampling ratio 0..1 with spans exported to the bench's collector; undefined = tracing off (OTEL_SDK_DISABLED). */
  tracing: number | undefined;
  accessLog: boolean;
}

export const BARE: TetherFeatures = {
  breaker: false,
  timeouts: false,
  retryPlan: false,
  tracing: undefined,
  accessLog: false,
};

/** The production feature set: timeouts and a breaker, retries planned but not triggered, 10% tracing, access log on. */
export const PRODUCTION: TetherFeatures = {
  breaker: true,
  timeouts: true,
  retryPlan: true,
  tracing: 0.1,
  accessLog: true,
};

/**
 * Bare keeps what cannot be switched off: the connect timeout (always enforced) and opossum's
 * concurrency cap (the breaker with `enabled: false` still admits every call through opossum).
 */
export function policyFor(f: TetherFeatures, upstreamPort: number): string {
  const timeouts = f.timeouts
    ? '{ connect: 250ms, responseHeaders: 2s, idle: 30s, total: 5s }'
    : '{ connect: 1s, responseHeaders: 0s, idle: 0s }';
  const retries = f.retryPlan
    ? `{ attempts: 2, on: [connect-failure, connection-reset, "503"], backoff: { base: 25ms, max: 250ms }, budget: { ratio: 0.2, minPerSecond: 10 } }`
    : '{ attempts: 0 }';
  const breaker = f.breaker
    ? '{ enabled: true, failureRatio: 0.5, minimumRequests: 10, window: 10s, openFor: 15s, maxConcurrent: 1000 }'
    : '{ enabled: false, maxConcurrent: 1000 }';
  return `apiVersion: tether.io/v1alpha1
kind: TrafficPolicy
metadata: { name: bench }
spec:
  outbound: allowAny
  destinations:
    - name: upstream
      match: { host: 127.0.0.1, port: ${upstreamPort} }
      timeouts: ${timeouts}
      retries: ${retries}
      circuitBreaker: ${breaker}
`;
}

/** Why a configuration cannot run on this checkout, or undefined when it can. */
export function unsupported(f: TetherFeatures, caps: TetherCapabilities): string | undefined {
  if (f.tracing !== undefined && !caps.tracing) return 'this tether-sidecar has no OTLP tracing settings yet';
  if (f.accessLog && !caps.accessLogFlag) return 'this tether-sidecar has no --access-log flag yet';
  return undefined;
}

export interface RunningTether {
  proc: Spawned;
  port: number;
  /** From spawn to the egress port accepting connections. */
  startupMs: number;
  pids: () => number[];
}

export async function startTether(
  f: TetherFeatures,
  caps: TetherCapabilities,
  pin: Pinning,
  dir: string,
  upstreamPort: number,
  collectorUrl: string,
  extraNodeArgs: readonly string[] = [],
  /** Another checkout's root (a before/after comparison); default this one. */
  root: string = ROOT,
  /** Extra environment (NODE_OPTIONS, say) for this sidecar only. */
  extraEnv: Readonly<Record<string, string>> = {},
): Promise<RunningTether> {
  const policy = join(dir, 'policy.yaml');
  writeFileSync(policy, policyFor(f, upstreamPort));
  const port = await freePort();
  const admin = await freePort();
  const args = [
    ...extraNodeArgs,
    '--disable-warning=DEP0060',
    join(root, 'cmd/sidecar.ts'),
    '--policy-file',
    policy,
    '--listen',
    `127.0.0.1:${port}`,
    '--admin-listen',
    `127.0.0.1:${admin}`,
    ...(caps.accessLogFlag ? ['--access-log', f.accessLog ? 'on' : 'off'] : []),
  ];
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('OTEL_') || k.startsWith('TETHER_')) delete env[k];
  Object.assign(env, extraEnv);
  if (caps.tracing) {
    if (f.tracing === undefined) env.OTEL_SDK_DISABLED = 'true';
    else {
      env.OTEL_EXPORTER_OTLP_ENDPOINT = collectorUrl;
      env.OTEL_TRACES_SAMPLER = 'parentbased_traceidratio';
      env.OTEL_TRACES_SAMPLER_ARG = String(f.tracing);
    }
  }
  // stdout (the access log) goes to a file, as a container runtime would take it: never to a pipe the bench has to drain on the load core.
  const t0 = performance.now();
  const proc = spawnPinned(pin, pin.proxyCore, process.execPath, args, join(dir, 'sidecar.log'), env);
  try {
    await waitForPort(port, 30_000, 'tether-sidecar', proc.alive);
  } catch (err) {
    await proc.stop();
    throw new Error(`${(err as Error).message}; its log:\n${tailOf(join(dir, 'sidecar.log'))}`, {
      cause: err,
    });
  }
  return { proc, port, startupMs: performance.now() - t0, pids: () => [proc.pid] };
}
