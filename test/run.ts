// `npm test`: prepares the real test infrastructure (cached), then runs every unit, integration and end-to-end test with node:test.

import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const only = args.filter((a) => !a.startsWith('--'));
const skipInfra = args.includes('--no-infra') || process.env.TETHER_TEST_NO_INFRA === '1';

function findTests(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (name !== 'node_modules' && name !== 'support' && name !== 'fixtures') out.push(...findTests(p));
    } else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

if (!skipInfra) {
  // Builds etcd, kube-apiserver, kube-controller-manager and Jaeger from Go modules once, into a cache outside the repo.
  const r = spawnSync('bash', [join(root, 'e2e/testbin.sh')], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) {
    process.stderr.write('npm test: building the test infrastructure failed (see above)\n');
    process.exit(r.status ?? 1);
  }
}

const files = (
  only.length > 0 ? only : [...findTests(join(root, 'test')), ...findTests(join(root, 'e2e'))]
).map((f) => relative(root, f));
const r = spawnSync(
  process.execPath,
  ['--disable-warning=DEP0060', '--test', '--test-concurrency=2', '--test-timeout=300000', ...files],
  {
    cwd: root,
    stdio: 'inherit',
    // Infrastructure was just built: an end-to-end test that cannot find it must fail, not skip.
    env: { ...process.env, ...(skipInfra ? {} : { TETHER_E2E_REQUIRED: '1' }) },
  },
);
process.exit(r.status ?? 1);
