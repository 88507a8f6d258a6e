// Owns where the e2e binaries live: asks e2e/testbin.sh (the single source of versions and paths) and checks they exist.
import { execFileSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const E2E_DIR = dirname(dirname(fileURLToPath(import.meta.url)));
export const REPO_ROOT = dirname(E2E_DIR);
export const TESTBIN_SCRIPT = join(E2E_DIR, 'testbin.sh');

export type BinaryName =
  'etcd' | 'kube-apiserver' | 'kube-controller-manager' | 'jaeger' | 'helm' | 'kubectl';

export interface TestBinaries {
  /** envtest-style directory holding etcd, kube-apiserver, kube-controller-manager. */
  readonly assetsDir: string;
  readonly paths: Readonly<Record<BinaryName, string>>;
}

let cached: TestBinaries | undefined;

/**
 * Paths of all e2e binaries. Env vars (as printed by `e2e/testbin.sh --print-env`) win;
 * otherwise the script is asked, which builds nothing. Paths may not exist yet: see missingBinaries().
 */
export function testBinaries(): TestBinaries {
  if (cached !== undefined) return cached;
  const out = execFileSync('bash', [TESTBIN_SCRIPT, '--print-env'], {
    encoding: 'utf8',
    timeout: 30_000,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const fromScript = new Map<string, string>();
  for (const line of out.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) fromScript.set(line.slice(0, eq), line.slice(eq + 1));
  }
  const pick = (key: string): string => {
    const v = process.env[key];
    if (v !== undefined && v !== '') return v;
    const s = fromScript.get(key);
    if (s === undefined) throw new Error(`${TESTBIN_SCRIPT} --print-env did not print ${key}`);
    return s;
  };
  const assetsDir = pick('KUBEBUILDER_ASSETS');
  cached = {
    assetsDir,
    paths: {
      etcd: join(assetsDir, 'etcd'),
      'kube-apiserver': join(assetsDir, 'kube-apiserver'),
      'kube-controller-manager': join(assetsDir, 'kube-controller-manager'),
      jaeger: pick('TETHER_JAEGER_BIN'),
      helm: pick('TETHER_HELM_BIN'),
      kubectl: pick('TETHER_KUBECTL_BIN'),
    },
  };
  return cached;
}

export function binaryPath(name: BinaryName): string {
  return testBinaries().paths[name];
}

export function helmBin(): string {
  return binaryPath('helm');
}

export function kubectlBin(): string {
  return binaryPath('kubectl');
}

export function jaegerBin(): string {
  return binaryPath('jaeger');
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The subset of `names` whose binary is absent or not executable, as "name (path)". */
export function missingBinaries(names: readonly BinaryName[]): string[] {
  const { paths } = testBinaries();
  return names.filter((n) => !executable(paths[n])).map((n) => `${n} (${paths[n]})`);
}

/** True when CI demands the real binaries: a missing one is then a failure, never a skip. */
export function e2eRequired(): boolean {
  const v = process.env['TETHER_E2E_REQUIRED'];
  return v !== undefined && v !== '' && v !== '0' && v !== 'false';
}

/**
 * For node:test's `skip` option: a reason string when binaries are missing and not required,
 * otherwise false (then call assertBinaries() in the test so a missing binary fails clearly).
 */
export function skipUnlessBinaries(names: readonly BinaryName[]): string | false {
  const missing = missingBinaries(names);
  if (missing.length === 0 || e2eRequired()) return false;
  return `missing ${missing.join(', ')}: run e2e/testbin.sh (or set KUBEBUILDER_ASSETS / TETHER_JAEGER_BIN); set TETHER_E2E_REQUIRED=1 to make this a failure`;
}

export function assertBinaries(names: readonly BinaryName[]): void {
  const missing = missingBinaries(names);
  if (missing.length > 0) {
    throw new Error(`e2e binaries missing: ${missing.join(', ')}. Run e2e/testbin.sh first.`);
  }
}
