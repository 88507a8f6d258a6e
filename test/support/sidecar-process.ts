// Runs the real tether-sidecar binary as a child process (signals, exit codes, stdout logs), on 127.0.0.1 port 0, and stops it at the end.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface SidecarProcess {
  child: ChildProcess;
  pid: number;
  egressPort: number;
  adminPort: number;
  /** Every JSON line printed on stdout so far. */
  lines: Record<string, unknown>[];
  /** Raw stdout and stderr so far, for failure messages. */
  output(): string;
  /** Resolves with the exit code (or the signal's name) once the process is gone. */
  exited: Promise<number | string>;
  /** Resident set size from /proc, in bytes. */
  rss(): number;
  /** SIGKILL if still running; removes the temp dir. */
  kill(): Promise<void>;
}

/**
 * Starts `node cmd/sidecar.ts` with `policyYaml` and waits for its "tether-sidecar ready" line,
 * which names the ports it bound. `env` is the whole environment the child sees besides PATH.
 */
export async function spawnSidecar(
  policyYaml: string,
  args: string[] = [],
  env: Record<string, string> = {},
  nodeArgs: string[] = [],
): Promise<SidecarProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'tether-proc-'));
  const policy = join(dir, 'policy.yaml');
  writeFileSync(policy, policyYaml);
  const child = spawn(
    process.execPath,
    [
      ...nodeArgs,
      '--disable-warning=DEP0060',
      join(ROOT, 'cmd/sidecar.ts'),
      '--policy-file',
      policy,
      '--listen',
      '127.0.0.1:0',
      '--admin-listen',
      '127.0.0.1:0',
      ...args,
    ],
    { cwd: ROOT, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let pending = '';
  const lines: Record<string, unknown>[] = [];
  child.stdout?.on('data', (c: Buffer) => {
    out += c.toString();
    pending += c.toString();
    let nl: number;
    while ((nl = pending.indexOf('\n')) !== -1) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        /* not a log line */
      }
    }
  });
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | string>((resolve) =>
    child.on('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')),
  );
  const kill = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 15_000;
  let ready: Record<string, unknown> | undefined;
  while (!ready) {
    ready = lines.find((l) => l.msg === 'tether-sidecar ready');
    if (ready) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      await kill();
      throw new Error(`tether-sidecar did not become ready:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  const port = (v: unknown): number => Number(String(v).split(':').pop());
  const pid = child.pid ?? 0;
  return {
    child,
    pid,
    egressPort: port(ready.egress),
    adminPort: port(ready.admin),
    lines,
    output: () => out,
    exited,
    rss: () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024,
    kill,
  };
}
