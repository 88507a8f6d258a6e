// Owns what the injection e2e tests share: tether-injector running on the host over HTTPS, and kubectl/helm/tetherctl runners bound to a cluster.

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { httpsRequest, makeCerts, type TestCerts } from '../test/inject-helpers.ts';
import { freePort, spawnManaged, tail, waitUntil, type ManagedProcess } from './lib/proc.ts';
import { helmBin, kubectlBin } from './lib/testbin.ts';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const CHART = join(ROOT, 'charts/tether');

export interface CommandResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command bounded in time; never throws, so tests can assert on failures too. */
export function exec(
  bin: string,
  args: string[],
  opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): CommandResult {
  const r = spawnSync(bin, args, {
    encoding: 'utf8',
    input: opts.input,
    timeout: opts.timeoutMs ?? 60_000,
    maxBuffer: 64 * 1024 * 1024,
    env: opts.env ?? process.env,
    cwd: opts.cwd ?? ROOT,
  });
  if (r.error)
    return { status: null, stdout: r.stdout ?? '', stderr: `${r.error.message}\n${r.stderr ?? ''}` };
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** exec without blocking the event loop (for commands that call back into the test process). */
export function execAsync(
  bin: string,
  args: string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = spawn(bin, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd ?? ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      stderr += `\n(killed after ${opts.timeoutMs ?? 60_000}ms)`;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 60_000);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

/** Like exec, but a non-zero exit is an error carrying the command's output. */
export function must(bin: string, args: string[], opts: Parameters<typeof exec>[2] = {}): string {
  const r = exec(bin, args, opts);
  if (r.status !== 0)
    throw new Error(`${bin.split('/').pop()} ${args.join(' ')} exited ${r.status}:\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

export const kubectl = (kubeconfig: string, args: string[], opts: Parameters<typeof exec>[2] = {}): string =>
  must(kubectlBin(), ['--kubeconfig', kubeconfig, ...args], opts);
export const helm = (kubeconfig: string, args: string[], opts: Parameters<typeof exec>[2] = {}): string =>
  must(helmBin(), ['--kubeconfig', kubeconfig, ...args], opts);
export const tetherctl = (args: string[], opts: Parameters<typeof exec>[2] = {}): string =>
  must(process.execPath, ['--disable-warning=DEP0060', join(ROOT, 'cmd/tetherctl.ts'), ...args], opts);

export function kubectlJson<T>(kubeconfig: string, args: string[], opts: Parameters<typeof exec>[2] = {}): T {
  return JSON.parse(kubectl(kubeconfig, [...args, '-o', 'json'], opts)) as T;
}

/** tether-injector on 127.0.0.1 with a throwaway CA: what the chart's webhook.url and webhook.caBundle point at. */
export interface HostInjector {
  readonly url: string;
  readonly certs: TestCerts;
  readonly logFile: string;
  /** Lines of the injector's JSON log mentioning `text`. */
  logLines(text: string): string[];
  isRunning(): boolean;
  stop(): Promise<void>;
  /** Starts it again on the same port with the same certificate. */
  start(): Promise<void>;
  /**
   * Restarts it with the environment the chart gives the in-cluster injector (what a rollout of the
   * Deployment would do); address, certificate and log level stay the host's.
   */
  restartWithEnv(env: Record<string, string>): Promise<void>;
  /** Stops it and removes its certificates and logs. */
  close(): Promise<void>;
}

export async function startHostInjector(extraArgs: string[] = []): Promise<HostInjector> {
  const certs = makeCerts();
  const dir = mkdtempSync(join(tmpdir(), 'tether-e2e-injector-'));
  const logFile = join(dir, 'injector.log');
  const port = await freePort();
  const url = `https://127.0.0.1:${port}`;
  let proc: ManagedProcess | undefined;
  // Flags win over env, so the chart's TETHER_INJECTOR_LISTEN and TLS paths never apply here.
  let chartEnv: Record<string, string> = {};
  const start = async (): Promise<void> => {
    proc = spawnManaged(
      'tether-injector',
      process.execPath,
      [
        '--disable-warning=DEP0060',
        join(ROOT, 'cmd/injector.ts'),
        '--listen', `127.0.0.1:${port}`, '--tls-cert-file', certs.certFile, '--tls-key-file', certs.keyFile,
        '--log-level', 'debug', ...extraArgs,
      ], // prettier-ignore
      { logFile, cwd: ROOT, env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...chartEnv } },
    );
    const ca = Buffer.from(certs.caBundle, 'base64');
    await waitUntil(
      'tether-injector /readyz',
      async () => (await httpsRequest(`${url}/readyz`, ca)).status === 200,
      {
        timeoutMs: 30_000,
        intervalMs: 100,
        proc,
      },
    );
  };
  await start();
  return {
    url,
    certs,
    logFile,
    logLines: (text) =>
      tail(logFile, 100_000)
        .split('\n')
        .filter((l) => l.includes(text)),
    isRunning: () => proc?.isRunning() === true,
    stop: async () => {
      await proc?.stop(10_000);
    },
    start,
    restartWithEnv: async (env) => {
      await proc?.stop(10_000);
      chartEnv = env;
      await start();
    },
    close: async () => {
      await proc?.stop(10_000);
      rmSync(certs.dir, { recursive: true, force: true });
      if (process.env['TETHER_E2E_KEEP'] === undefined) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The env of the chart's tether-injector container, as the API server has it after install or upgrade. */
export function injectorEnvFromCluster(
  kubeconfig: string,
  namespace = 'tether-system',
): Record<string, string> {
  const d = kubectlJson<{
    spec: { template: { spec: { containers: { env?: { name: string; value?: string }[] }[] } } };
  }>(kubeconfig, ['get', 'deployment', 'tether-injector', '-n', namespace]);
  const env = d.spec.template.spec.containers[0]?.env ?? [];
  return Object.fromEntries(env.map((e) => [e.name, e.value ?? '']));
}

/** The chart values that point the webhook at a host injector (what the tests add to every helm install). */
export const hostWebhookValues = (inj: HostInjector): string[] => [
  '--set',
  `webhook.url=${inj.url}`,
  '--set',
  `webhook.caBundle=${inj.certs.caBundle}`,
];

/** Polls a synchronous check (kubectl) until it returns a value, bounded. */
export async function eventually<T>(
  what: string,
  check: () => T | undefined,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: Error | undefined;
  for (;;) {
    try {
      const v = check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err instanceof Error ? err : new Error(JSON.stringify(err));
    }
    if (Date.now() > deadline)
      throw new Error(
        `${what}: not true after ${timeoutMs}ms${last ? ` (last error: ${last.message})` : ''}`,
      );
    await delay(250);
  }
}

// Minimal shapes of what the tests read back from the API server.
export interface KContainer {
  name: string;
  restartPolicy?: string;
  env?: { name: string; value?: string; valueFrom?: unknown }[];
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: Record<string, unknown>;
  startupProbe?: { httpGet?: { path: string; port: string | number } };
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  ports?: { name?: string; containerPort: number }[];
  volumeMounts?: { name: string; mountPath: string }[];
}
export interface KPod {
  metadata: {
    name: string;
    namespace: string;
    annotations?: Record<string, string>;
    labels?: Record<string, string>;
    ownerReferences?: { kind: string; name: string }[];
  };
  spec: { initContainers?: KContainer[]; containers: KContainer[] };
  status?: { phase?: string };
}

export const sidecarOf = (p: KPod): KContainer | undefined =>
  [...(p.spec.initContainers ?? []), ...p.spec.containers].find((c) => c.name === 'tether-proxy');
export const isInjectedPod = (p: KPod): boolean => sidecarOf(p) !== undefined;
