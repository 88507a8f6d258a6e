// Owns a throwaway Kubernetes control plane for e2e: certs, etcd, kube-apiserver, kube-controller-manager, kubeconfigs.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CoreV1Api, KubeConfig, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import type { V1PolicyRule } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import {
  freePorts,
  onAbnormalExit,
  pidAlive,
  retireReaper,
  run,
  spawnManaged,
  spawnReaper,
  stopPid,
  waitUntil,
  writePidFile,
} from './proc.ts';
import type { ManagedProcess } from './proc.ts';
import { assertBinaries, binaryPath } from './testbin.ts';

export interface ClusterOptions {
  /** State directory (certs, etcd data, logs, kubeconfigs). Default: a fresh temp dir. */
  dir?: string;
  /** Run kube-controller-manager (Deployments → ReplicaSets → Pods, default ServiceAccounts). Default true. */
  controllerManager?: boolean;
  /** Processes outlive this Node process (for `e2e/cluster up`); stop via stopClusterDir(). */
  detached?: boolean;
  /** Keep `dir` after stop() (logs for debugging). Default: env TETHER_E2E_KEEP is set. */
  keepDir?: boolean;
  /** Bound for each readiness wait. Default 90s (kube-apiserver takes ~5–15s on 2 cores). */
  startTimeoutMs?: number;
  /** Extra kube-apiserver flags, e.g. ['--feature-gates=...']. */
  apiServerArgs?: string[];
}

export interface Cluster {
  readonly dir: string;
  readonly kubeconfigPath: string;
  /** https://127.0.0.1:<port>; stable across stopApiServer()/startApiServer(). */
  readonly apiServerUrl: string;
  readonly apiServerPort: number;
  readonly etcdUrl: string;
  /** PEM of the cluster CA (for webhook caBundle checks, TLS clients). */
  readonly caCertPath: string;
  readonly caKeyPath: string;
  /** A client-node KubeConfig loaded from the admin kubeconfig. */
  kubeConfig(): KubeConfig;
  /** Live component pids, by name. */
  pids(): Record<string, number>;
  /** Kill kube-apiserver (etcd and controller-manager keep running). SIGKILL by default: a crash. */
  stopApiServer(signal?: 'SIGKILL' | 'SIGTERM'): Promise<void>;
  /** Start kube-apiserver again on the same port and wait for /readyz. */
  startApiServer(): Promise<void>;
  /** Stop everything (controller-manager, apiserver, etcd), then remove dir unless kept. Idempotent. */
  stop(): Promise<void>;
}

interface Paths {
  dir: string;
  certs: string;
  logs: string;
  caCrt: string;
  caKey: string;
  servingCrt: string;
  servingKey: string;
  adminCrt: string;
  adminKey: string;
  saKey: string;
  saPub: string;
  kubeconfig: string;
  state: string;
  pidFile: string;
}

interface StateFile {
  apiServerUrl: string;
  kubeconfigPath: string;
  processes: { name: string; pid: number; bin: string }[];
}

function pathsFor(dir: string): Paths {
  const certs = join(dir, 'certs');
  return {
    dir,
    certs,
    logs: join(dir, 'logs'),
    caCrt: join(certs, 'ca.crt'),
    caKey: join(certs, 'ca.key'),
    servingCrt: join(certs, 'apiserver.crt'),
    servingKey: join(certs, 'apiserver.key'),
    adminCrt: join(certs, 'admin.crt'),
    adminKey: join(certs, 'admin.key'),
    saKey: join(certs, 'sa.key'),
    saPub: join(certs, 'sa.pub'),
    kubeconfig: join(dir, 'admin.kubeconfig'),
    state: join(dir, 'state.json'),
    pidFile: join(dir, 'pids'),
  };
}

type ControlPlaneBinary = 'etcd' | 'kube-apiserver' | 'kube-controller-manager';
// Reverse dependency order, so nothing spends its grace period retrying a dead dependency.
const STOP_ORDER: readonly ControlPlaneBinary[] = ['kube-controller-manager', 'kube-apiserver', 'etcd'];

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** CA, apiserver serving cert, admin client cert (system:masters) and the service-account key pair. */
function generateCerts(p: Paths): void {
  mkdirSync(p.certs, { recursive: true });
  const openssl = (args: string[]): void => {
    run('openssl', args, { timeoutMs: 30_000 });
  };
  // EC keys: RSA generation costs seconds on a busy 2-core box, EC is instant and kube accepts it.
  openssl([
    'req',
    '-x509',
    '-new',
    ...EC,
    '-keyout',
    p.caKey,
    '-out',
    p.caCrt,
    '-days',
    '7',
    '-subj',
    '/CN=tether-e2e-ca',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
  ]);
  const leaf = (key: string, crt: string, subj: string, ext: string[]): void => {
    openssl([
      'req',
      '-x509',
      '-new',
      ...EC,
      '-keyout',
      key,
      '-out',
      crt,
      '-days',
      '7',
      '-CA',
      p.caCrt,
      '-CAkey',
      p.caKey,
      '-subj',
      subj,
      '-addext',
      'basicConstraints=critical,CA:FALSE',
      '-addext',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      ...ext.flatMap((e) => ['-addext', e]),
    ]);
  };
  leaf(p.servingKey, p.servingCrt, '/CN=kube-apiserver', [
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
    'extendedKeyUsage=serverAuth',
  ]);
  leaf(p.adminKey, p.adminCrt, '/O=system:masters/CN=tether-e2e-admin', ['extendedKeyUsage=clientAuth']);
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', p.saKey]);
  openssl(['pkey', '-in', p.saKey, '-pubout', '-out', p.saPub]);
}

function b64(file: string): string {
  return readFileSync(file).toString('base64');
}

/** Writes a kubeconfig for `server` with either a client cert or a bearer token. */
export function writeKubeconfig(
  path: string,
  opts: {
    server: string;
    caCertPath: string;
    user: { certPath: string; keyPath: string } | { token: string };
    name?: string;
    namespace?: string;
  },
): void {
  const name = opts.name ?? 'tether-e2e';
  const user =
    'token' in opts.user
      ? { token: opts.user.token }
      : { 'client-certificate-data': b64(opts.user.certPath), 'client-key-data': b64(opts.user.keyPath) };
  const doc = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: 'tether-e2e',
        cluster: { server: opts.server, 'certificate-authority-data': b64(opts.caCertPath) },
      },
    ],
    users: [{ name, user }],
    contexts: [
      { name, context: { cluster: 'tether-e2e', user: name, namespace: opts.namespace ?? 'default' } },
    ],
    'current-context': name,
  };
  writeFileSync(path, stringify(doc), { mode: 0o600 });
}

function httpsGet(
  url: string,
  tls: { ca: Buffer; cert?: Buffer; key?: Buffer },
  timeoutMs: number,
): Promise<{ status: number; body: string }> {
  return new Promise((resolvePromise, reject) => {
    const req = request(url, { ...tls, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

async function httpGetOk(url: string, timeoutMs: number): Promise<boolean> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  await res.text();
  return res.ok;
}

// client-node's ApiException carries the HTTP status as `code`.
function hasCode(err: unknown, code: number): boolean {
  return typeof err === 'object' && err !== null && 'code' in err && err.code === code;
}

const isConflict = (err: unknown): boolean => hasCode(err, 409);
const isNotFound = (err: unknown): boolean => hasCode(err, 404);

export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  assertBinaries([
    'etcd',
    'kube-apiserver',
    ...(opts.controllerManager === false ? [] : (['kube-controller-manager'] as const)),
  ]);
  const detached = opts.detached === true;
  const keepDir = opts.keepDir ?? (process.env['TETHER_E2E_KEEP'] ?? '') !== '';
  const timeoutMs = opts.startTimeoutMs ?? 90_000;
  const dir = resolve(opts.dir ?? mkdtempSync(join(tmpdir(), 'tether-e2e-cluster-')));
  const p = pathsFor(dir);
  mkdirSync(p.logs, { recursive: true });
  generateCerts(p);

  const [etcdPort, peerPort, apiPort] = await freePorts(3);
  if (etcdPort === undefined || peerPort === undefined || apiPort === undefined)
    throw new Error('no free ports');
  const etcdUrl = `http://127.0.0.1:${etcdPort}`;
  const apiServerUrl = `https://127.0.0.1:${apiPort}`;
  const tls = { ca: readFileSync(p.caCrt), cert: readFileSync(p.adminCrt), key: readFileSync(p.adminKey) };

  const procs = new Map<string, ManagedProcess>();
  let reaperPid: number | undefined;
  let stopped = false;
  let stopping: Promise<void> | undefined;

  const saveState = (): void => {
    const state: StateFile = {
      apiServerUrl,
      kubeconfigPath: p.kubeconfig,
      processes: [...procs.values()]
        .filter((x) => x.isRunning())
        .map((x) => ({ name: x.name, pid: x.pid, bin: x.bin })),
    };
    writeFileSync(p.state, JSON.stringify(state, null, 2));
    if (!detached) writePidFile(p.pidFile, procs.values());
  };

  const launch = (name: ControlPlaneBinary, args: string[]): ManagedProcess => {
    const proc = spawnManaged(name, binaryPath(name), args, {
      logFile: join(p.logs, `${name}.log`),
      detached,
    });
    procs.set(name, proc);
    saveState();
    if (!detached && reaperPid === undefined)
      reaperPid = spawnReaper(p.pidFile, join(p.logs, 'reaper.log'), keepDir ? undefined : dir);
    return proc;
  };

  const apiServerArgs = [
    `--etcd-servers=${etcdUrl}`,
    '--bind-address=127.0.0.1',
    '--advertise-address=127.0.0.1',
    `--secure-port=${apiPort}`,
    `--cert-dir=${join(dir, 'apiserver-certs')}`,
    `--tls-cert-file=${p.servingCrt}`,
    `--tls-private-key-file=${p.servingKey}`,
    `--client-ca-file=${p.caCrt}`,
    `--service-account-issuer=${apiServerUrl}`,
    `--service-account-key-file=${p.saPub}`,
    `--service-account-signing-key-file=${p.saKey}`,
    '--service-cluster-ip-range=10.0.0.0/24',
    '--authorization-mode=RBAC',
    '--allow-privileged=true',
    // No kubelets or real nodes: nothing would keep the `kubernetes` Endpoints true anyway.
    '--endpoint-reconciler-type=none',
    '--profiling=false',
    ...(opts.apiServerArgs ?? []),
  ];

  const waitApiReady = async (proc: ManagedProcess): Promise<void> => {
    await waitUntil(
      `kube-apiserver ${apiServerUrl}/readyz`,
      async () => (await httpsGet(`${apiServerUrl}/readyz`, tls, 2_000)).status === 200,
      { timeoutMs, intervalMs: 200, proc },
    );
  };

  const stopAll = async (): Promise<void> => {
    for (const name of STOP_ORDER) {
      await procs.get(name)?.stop(10_000);
    }
    saveState();
    retireReaper(reaperPid, p.pidFile);
    reaperPid = undefined;
    if (!keepDir) rmSync(dir, { recursive: true, force: true });
  };

  // Detached clusters must survive this process, so they get no exit cleanup.
  const removeExitHook = detached
    ? () => undefined
    : onAbnormalExit(() => {
        rmSync(p.pidFile, { force: true });
        if (!keepDir) rmSync(dir, { recursive: true, force: true });
      });

  const cluster: Cluster = {
    dir,
    kubeconfigPath: p.kubeconfig,
    apiServerUrl,
    apiServerPort: apiPort,
    etcdUrl,
    caCertPath: p.caCrt,
    caKeyPath: p.caKey,
    kubeConfig: () => {
      const kc = new KubeConfig();
      kc.loadFromFile(p.kubeconfig);
      return kc;
    },
    pids: () => Object.fromEntries([...procs].filter(([, x]) => x.isRunning()).map(([n, x]) => [n, x.pid])),
    stopApiServer: async (signal = 'SIGKILL') => {
      const proc = procs.get('kube-apiserver');
      if (proc === undefined || !proc.isRunning()) return;
      if (signal === 'SIGKILL') {
        process.kill(proc.pid, 'SIGKILL');
        await proc.exited;
      } else {
        await proc.stop(10_000);
      }
      saveState();
    },
    startApiServer: async () => {
      if (stopped) throw new Error('cluster is stopped');
      if (procs.get('kube-apiserver')?.isRunning() === true) return;
      await waitApiReady(launch('kube-apiserver', apiServerArgs));
    },
    stop: () => {
      stopped = true;
      stopping ??= stopAll().finally(removeExitHook);
      return stopping;
    },
  };

  try {
    const etcd = launch('etcd', [
      '--name=n0',
      `--data-dir=${join(dir, 'etcd')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-cluster=n0=http://127.0.0.1:${peerPort}`,
      '--unsafe-no-fsync',
      '--log-level=warn',
    ]);
    await waitUntil('etcd /health', () => httpGetOk(`${etcdUrl}/health`, 2_000), { timeoutMs, proc: etcd });

    await waitApiReady(launch('kube-apiserver', apiServerArgs));
    writeKubeconfig(p.kubeconfig, {
      server: apiServerUrl,
      caCertPath: p.caCrt,
      user: { certPath: p.adminCrt, keyPath: p.adminKey },
    });

    if (opts.controllerManager !== false) {
      const kcm = launch('kube-controller-manager', [
        `--kubeconfig=${p.kubeconfig}`,
        '--leader-elect=false',
        '--bind-address=127.0.0.1',
        // No HTTPS endpoint: nothing scrapes it, and it would need another free port.
        '--secure-port=0',
        `--service-account-private-key-file=${p.saKey}`,
        `--root-ca-file=${p.caCrt}`,
        `--cluster-signing-cert-file=${p.caCrt}`,
        `--cluster-signing-key-file=${p.caKey}`,
        '--controllers=*',
      ]);
      // The `default` ServiceAccount is the controller-manager's first visible effect, and pods
      // (admission plugin ServiceAccount) cannot be created in a namespace until it exists.
      const core = cluster.kubeConfig().makeApiClient(CoreV1Api);
      await waitUntil(
        'kube-controller-manager (ServiceAccount default/default)',
        async () => {
          try {
            await core.readNamespacedServiceAccount({ name: 'default', namespace: 'default' });
            return true;
          } catch (err) {
            if (isNotFound(err)) return false;
            throw err;
          }
        },
        { timeoutMs, intervalMs: 200, proc: kcm },
      );
    }
  } catch (err) {
    await cluster.stop().catch(() => undefined);
    throw err;
  }
  return cluster;
}

/** Reads a cluster started with { detached: true } from its dir (the `e2e/cluster` CLI's state). */
export function readClusterState(dir: string): (StateFile & { alive: boolean }) | undefined {
  const p = pathsFor(resolve(dir));
  if (!existsSync(p.state)) return undefined;
  const state = JSON.parse(readFileSync(p.state, 'utf8')) as StateFile;
  const alive = state.processes.length > 0 && state.processes.every((x) => pidAlive(x.pid));
  return { ...state, alive };
}

/** Stops the processes recorded in dir/state.json (only if each pid still runs the recorded binary), then removes dir. */
export async function stopClusterDir(dir: string, opts: { keepDir?: boolean } = {}): Promise<void> {
  const state = readClusterState(dir);
  if (state !== undefined) {
    const rank = (n: string): number => STOP_ORDER.indexOf(n as ControlPlaneBinary);
    const sorted = [...state.processes].sort((a, b) => rank(a.name) - rank(b.name));
    for (const x of sorted) await stopPid(x.pid, x.bin, 10_000);
  }
  if (opts.keepDir !== true) rmSync(resolve(dir), { recursive: true, force: true });
}

export interface ServiceAccountKubeconfigOptions {
  namespace: string;
  name: string;
  /** Where to write it. Default: <cluster.dir>/sa-<namespace>-<name>.kubeconfig. */
  path?: string;
  /** Token lifetime; the API's minimum is 600. Default 3600. */
  expirationSeconds?: number;
  /** If given, a Role `<name>` with these rules and a RoleBinding to the ServiceAccount are applied in `namespace`. */
  rules?: V1PolicyRule[];
}

/**
 * Creates (if missing) the namespace and ServiceAccount, optionally a Role+RoleBinding, mints a
 * token through the TokenRequest API and writes a kubeconfig that authenticates as that account.
 */
export async function createServiceAccountKubeconfig(
  cluster: Pick<Cluster, 'kubeConfig' | 'apiServerUrl' | 'caCertPath' | 'dir'>,
  opts: ServiceAccountKubeconfigOptions,
): Promise<{ kubeconfigPath: string; token: string }> {
  const kc = cluster.kubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const { namespace, name } = opts;
  const ignoreConflict = (err: unknown): void => {
    if (!isConflict(err)) throw err;
  };
  await core.createNamespace({ body: { metadata: { name: namespace } } }).catch(ignoreConflict);
  await core
    .createNamespacedServiceAccount({ namespace, body: { metadata: { name } } })
    .catch(ignoreConflict);
  if (opts.rules !== undefined) {
    const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
    const role = { metadata: { name, namespace }, rules: opts.rules };
    await rbac.createNamespacedRole({ namespace, body: role }).catch(async (err: unknown) => {
      ignoreConflict(err);
      await rbac.replaceNamespacedRole({ name, namespace, body: role });
    });
    await rbac
      .createNamespacedRoleBinding({
        namespace,
        body: {
          metadata: { name, namespace },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
          subjects: [{ kind: 'ServiceAccount', name, namespace }],
        },
      })
      .catch(ignoreConflict);
  }
  const tr = await core.createNamespacedServiceAccountToken({
    name,
    namespace,
    body: { spec: { audiences: [], expirationSeconds: opts.expirationSeconds ?? 3600 } },
  });
  const token = tr.status?.token;
  if (token === undefined || token === '')
    throw new Error(`TokenRequest for ${namespace}/${name} returned no token`);
  const kubeconfigPath = opts.path ?? join(cluster.dir, `sa-${namespace}-${name}.kubeconfig`);
  writeKubeconfig(kubeconfigPath, {
    server: cluster.apiServerUrl,
    caCertPath: cluster.caCertPath,
    user: { token },
    name: `system:serviceaccount:${namespace}:${name}`,
    namespace,
  });
  return { kubeconfigPath, token };
}
