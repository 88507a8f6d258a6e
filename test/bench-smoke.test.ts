// The bench harness cannot rot: `npm run bench -- --quick` measures every arm this machine can run and says plainly which it could not.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { BenchResult } from '../bench/lib/report.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = mkdtempSync(join(tmpdir(), 'tether-bench-smoke-'));

function bench(args: string[]): {
  status: number | null;
  stdout: string;
  stderr: string;
  result: BenchResult;
} {
  const r = spawnSync('npm', ['run', '--silent', 'bench', '--', '--quick', '--out', out, ...args], {
    cwd: root,
    encoding: 'utf8',
    timeout: 120_000,
  });
  const path = /^RESULT_JSON (.+)$/m.exec(r.stdout)?.[1];
  assert.ok(path, `no RESULT_JSON line; exit ${r.status}; stderr:\n${r.stderr}`);
  return { ...r, result: JSON.parse(readFileSync(path, 'utf8')) as BenchResult };
}

function nginxInstalled(): boolean {
  if (existsSync('/usr/sbin/nginx')) return true;
  return (process.env.PATH ?? '').split(':').some((d) => d && existsSync(join(d, 'nginx')));
}

describe('npm run bench -- --quick', () => {
  after(() => rmSync(out, { recursive: true, force: true }));

  test('measures direct and Tether (and nginx when installed) with no failed requests, and renders the tables', () => {
    const { status, stdout, stderr, result } = bench([]);
    assert.equal(status, 0, stderr);
    assert.equal(result.mode, 'quick');
    const arm = (id: string) => result.arms.find((a) => a.id === id);
    for (const id of ['direct', 'tether-bare']) {
      const a = arm(id);
      assert.ok(a && a.runs.length === 1, `${id} did not run: ${a?.missing}`);
      const run = a.runs[0]!;
      const open = run.open[0]!.result;
      assert.ok(
        open.ok > 0 && open.failed === 0,
        `${id}: ${open.ok} ok, ${open.failed} failed (${open.firstError})`,
      );
      assert.ok(open.latencyMs!.p50 > 0 && open.latencyMs!.p99 >= open.latencyMs!.p50);
      assert.ok(run.closed[0]!.rps > 0 && run.closed[0]!.failed === 0, `${id} closed loop failed`);
    }
    const bare = arm('tether-bare')!.runs[0]!;
    assert.ok(bare.idleRssMiB > 10, `idle RSS ${bare.idleRssMiB}`);
    // The closed loop is the longest window of a quick run: enough ticks of CPU time to be non-zero.
    assert.ok(bare.closed[0]!.cpuSeconds > 0, 'the proxy used no CPU: /proc was not read');

    const nginx = arm('nginx')!;
    if (nginxInstalled()) {
      assert.equal(nginx.missing, undefined);
      assert.equal(nginx.runs[0]!.open[0]!.result.failed, 0);
      assert.ok(nginx.runs[0]!.closed[0]!.cpuSeconds > 0, 'nginx used no CPU: its worker was not found');
    } else {
      assert.match(nginx.missing ?? '', /nginx not found/);
      assert.match(stdout, /nginx did not run/);
    }
    const prod = arm('tether-prod')!;
    if (result.settings.tetherCapabilities.tracing && result.settings.tetherCapabilities.accessLogFlag) {
      assert.equal(prod.runs[0]!.open[0]!.result.failed, 0);
    } else assert.ok(prod.missing);
    assert.match(stdout, /## Targets/);
    assert.match(stdout, /## Open-loop latency/);
    assert.match(stdout, /## Methodology/);
  });

  test('an nginx that is not there is reported as missing, and the rest still runs', () => {
    const { status, stdout, result } = bench(['--arms', 'direct,nginx', '--nginx', '/nonexistent/nginx']);
    assert.equal(status, 0);
    const nginx = result.arms.find((a) => a.id === 'nginx')!;
    assert.equal(nginx.runs.length, 0);
    assert.match(nginx.missing ?? '', /\/nonexistent\/nginx is not a runnable nginx/);
    assert.match(stdout, /\*\*nginx did not run\*\*/);
    assert.equal(result.arms.find((a) => a.id === 'direct')!.runs.length, 1);
  });
});
