// Owns the `e2e/cluster up|down|status|kubeconfig` command: a detached control plane for poking at by hand.
import { homedir } from 'node:os';
import { join } from 'node:path';
import { readClusterState, startCluster, stopClusterDir } from './cluster.ts';

const USAGE = `usage: e2e/cluster <command>
  up [--no-controller-manager]   start etcd + kube-apiserver (+ controller-manager) in the background;
                                 the last line printed is the admin kubeconfig path
  down                           stop it and remove its state
  status                         say whether it runs (exit 1 if not)
  kubeconfig                     print the admin kubeconfig path
State dir: $TETHER_CLUSTER_DIR, else \${TETHER_CACHE_DIR:-~/.cache/tether}/cluster`;

function stateDir(): string {
  const explicit = process.env['TETHER_CLUSTER_DIR'];
  if (explicit !== undefined && explicit !== '') return explicit;
  const cache = process.env['TETHER_CACHE_DIR'];
  return join(cache !== undefined && cache !== '' ? cache : join(homedir(), '.cache', 'tether'), 'cluster');
}

const log = (msg: string): void => {
  process.stderr.write(`[cluster] ${msg}\n`);
};

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  const dir = stateDir();
  switch (cmd) {
    case 'up': {
      const existing = readClusterState(dir);
      if (existing?.alive === true) {
        log(`already running at ${existing.apiServerUrl} (state ${dir})`);
        process.stdout.write(`${existing.kubeconfigPath}\n`);
        return 0;
      }
      if (existing !== undefined) {
        log(`found a dead cluster in ${dir}; cleaning it up first`);
        await stopClusterDir(dir);
      }
      const started = Date.now();
      const cluster = await startCluster({
        dir,
        detached: true,
        keepDir: true,
        controllerManager: !rest.includes('--no-controller-manager'),
      });
      log(`up in ${((Date.now() - started) / 1000).toFixed(1)}s: ${cluster.apiServerUrl}`);
      log(`pids ${JSON.stringify(cluster.pids())}, logs in ${join(dir, 'logs')}`);
      log(`export KUBECONFIG=${cluster.kubeconfigPath}; stop with: e2e/cluster down`);
      process.stdout.write(`${cluster.kubeconfigPath}\n`);
      return 0;
    }
    case 'down': {
      const existing = readClusterState(dir);
      await stopClusterDir(dir);
      log(existing === undefined ? `nothing to stop (no state in ${dir})` : `stopped; removed ${dir}`);
      return 0;
    }
    case 'status': {
      const existing = readClusterState(dir);
      if (existing?.alive === true) {
        log(
          `running at ${existing.apiServerUrl}: ${existing.processes.map((x) => `${x.name}=${x.pid}`).join(' ')}`,
        );
        process.stdout.write(`${existing.kubeconfigPath}\n`);
        return 0;
      }
      log(
        existing === undefined ? 'not running' : `not running (stale state in ${dir}; run e2e/cluster down)`,
      );
      return 1;
    }
    case 'kubeconfig': {
      const existing = readClusterState(dir);
      if (existing === undefined) {
        log('not running: e2e/cluster up');
        return 1;
      }
      process.stdout.write(`${existing.kubeconfigPath}\n`);
      return 0;
    }
    default:
      process.stderr.write(`${USAGE}\n`);
      return cmd === undefined || cmd === '-h' || cmd === '--help' ? 0 : 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    log(err instanceof Error ? err.message : String(err));
    process.exit(1);
  },
);
