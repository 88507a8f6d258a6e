// tetherctl inject / uninject on multi-document YAML: which templates change, what is kept, and the exit codes.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { runInject, type CliIo } from '../src/cli/inject.ts';
import type { Direction } from '../src/inject/documents.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

const MIXED = `# the web tier
apiVersion: apps/v1
kind: Deployment
metadata: { name: web, namespace: shop }
spec:
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      containers: [{ name: web, image: "web:1" }]
status: { replicas: 1 }
---
apiVersion: batch/v1
kind: CronJob
metadata: { name: report }
spec:
  schedule: "0 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{ name: report, image: "report:1" }]
---
apiVersion: batch/v1
kind: Job
metadata: { name: once }
spec:
  template:
    metadata: { annotations: { tether.io/inject: "false" } }
    spec:
      restartPolicy: Never
      containers: [{ name: once, image: "once:1" }]
---
apiVersion: v1
kind: List
items:
  - apiVersion: apps/v1
    kind: StatefulSet
    metadata: { name: db }
    spec:
      serviceName: db
      selector: { matchLabels: { app: db } }
      template:
        metadata: { labels: { app: db } }
        spec: { containers: [{ name: db, image: "db:1" }] }
---
apiVersion: v1
kind: Service # services pass through
metadata: { name: web }
spec: { ports: [{ port: 80 }] }
`;

async function run(
  direction: Direction,
  args: string[],
  stdin = '',
): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: CliIo = { stdout: (s) => (out += s), stderr: (s) => (err += s), readStdin: async () => stdin };
  const code = await runInject(direction, args, io);
  return { code, out, err };
}

type Doc = { kind: string; spec: Record<string, unknown>; items?: Doc[] };
const docs = (text: string): Doc[] =>
  parseAllDocuments(text).map((d) => (Array.isArray(d) ? undefined : d.toJS()) as Doc);
const names = (template: unknown): string[] => {
  const spec = (template as { spec: { initContainers?: { name: string }[]; containers: { name: string }[] } })
    .spec;
  return [...(spec.initContainers ?? []), ...spec.containers].map((c) => c.name);
};

describe('tetherctl inject', () => {
  test('injects Deployments, CronJobs and StatefulSets inside Lists; leaves opted-out Jobs and Services alone', async () => {
    const r = await run('inject', ['-f', '-'], MIXED);
    assert.equal(r.code, 0, r.err);
    const [web, report, once, list, svc] = docs(r.out);
    assert.deepEqual(names(web?.spec.template), ['tether-proxy', 'web']);
    const cron = (report?.spec.jobTemplate as { spec: { template: unknown } }).spec.template;
    assert.deepEqual(names(cron), ['tether-proxy', 'report']);
    assert.deepEqual(names(once?.spec.template), ['once']);
    assert.deepEqual(names(list?.items?.[0]?.spec.template), ['tether-proxy', 'db']);
    assert.equal(svc?.kind, 'Service');
    assert.match(r.out, /# services pass through/, 'unchanged documents keep their comments');
    assert.deepEqual(
      (web as unknown as { status: unknown }).status,
      { replicas: 1 },
      'kubectl get -o yaml fields pass through',
    );
    assert.match(r.err, /Job once: skipped: opted out/);
    assert.match(r.err, /Deployment web: injected/);
  });

  test('the workload name is the service name when the template has no app label', async () => {
    const r = await run('inject', ['-f', '-'], MIXED);
    const report = docs(r.out)[1];
    const init =
      (
        report?.spec.jobTemplate as {
          spec: { template: { spec: { initContainers: { env: { name: string; value?: string }[] }[] } } };
        }
      ).spec.template.spec.initContainers[0]?.env ?? [];
    assert.equal(init.find((e) => e.name === 'OTEL_SERVICE_NAME')?.value, 'report');
  });

  test('injecting twice equals injecting once', async () => {
    const once = await run('inject', ['-f', '-'], MIXED);
    const twice = await run('inject', ['-f', '-'], once.out);
    assert.equal(twice.code, 0);
    assert.deepEqual(docs(twice.out), docs(once.out));
    assert.match(twice.err, /already injected/);
  });

  test('injection flags change what is injected', async () => {
    const r = await run(
      'inject',
      ['-f', '-', '--image', 'registry.local/tether:dev', '--sidecar-mode', 'legacy'],
      MIXED,
    );
    const web = docs(r.out)[0];
    const c = (web?.spec.template as { spec: { containers: { name: string; image: string }[] } }).spec
      .containers[0];
    assert.deepEqual([c?.name, c?.image], ['tether-proxy', 'registry.local/tether:dev']);
  });

  test('uninject restores the input', async () => {
    const injected = await run('inject', ['-f', '-'], MIXED);
    const back = await run('uninject', ['-f', '-'], injected.out);
    assert.equal(back.code, 0, back.err);
    assert.deepEqual(docs(back.out), docs(MIXED));
  });

  test('bad annotations fail with exit 1, every problem listed, nothing printed', async () => {
    const bad = MIXED.replace(
      'metadata: { labels: { app: web } }',
      'metadata: { labels: { app: web }, annotations: { tether.io/proxy-memory-limit: lots, tether.io/log-level: loud } }',
    );
    const r = await run('inject', ['-f', '-'], bad);
    assert.equal(r.code, 1);
    assert.equal(r.out, '');
    assert.match(r.err, /Deployment web: tether\.io\/proxy-memory-limit: "lots"/);
    assert.match(r.err, /Deployment web: tether\.io\/log-level: "loud"/);
  });

  test('usage errors exit 64: no -f, an unknown flag, an injection flag given to uninject', async () => {
    assert.equal((await run('inject', [])).code, 64);
    assert.equal((await run('inject', ['-f', '-', '--colour', 'blue'])).code, 64);
    const u = await run('uninject', ['-f', '-', '--image', 'x']);
    assert.equal(u.code, 64);
    assert.match(u.err, /image/);
  });

  test('a file that cannot be read exits 1 naming it', async () => {
    const r = await run('inject', ['-f', '/nonexistent/web.yaml']);
    assert.equal(r.code, 1);
    assert.match(r.err, /cannot read \/nonexistent\/web\.yaml: ENOENT/);
  });

  test('the tetherctl binary reads a file and writes YAML kubectl can apply', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tetherctl-inject-'));
    try {
      const file = join(dir, 'web.yaml');
      writeFileSync(file, MIXED);
      const r = spawnSync(
        process.execPath,
        ['--disable-warning=DEP0060', 'cmd/tetherctl.ts', 'inject', '-f', file],
        { cwd: ROOT, encoding: 'utf8', timeout: 30_000 },
      );
      assert.equal(r.status, 0, r.stderr);
      assert.equal(docs(r.stdout).length, 5);
      const help = spawnSync(process.execPath, ['--disable-warning=DEP0060', 'cmd/tetherctl.ts', '--help'], {
        cwd: ROOT,
        encoding: 'utf8',
        timeout: 30_000,
      });
      assert.match(help.stdout, /tetherctl inject -f FILE\|-/);
      assert.match(help.stdout, /tetherctl uninject -f FILE\|-/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
