// Owns child-process lifecycle for e2e: spawn with logs, bounded stop, free ports, readiness polls, no orphans.
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo, Server } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';

export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  readonly bin: string;
  readonly logFile: string;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<void>;
  /** False once the process has exited. */
  isRunning(): boolean;
  /** SIGTERM, then SIGKILL after graceMs; resolves when the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

export interface SpawnOptions {
  logFile: string;
  /**
   * Survive this Node process (own session, unref'd, not killed on exit). For `e2e/cluster up`.
   * Non-detached processes are killed when this process exits, is signalled, or (via a reaper)
   * is SIGKILLed.
   */
  detached?: boolean;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

// Every live non-detached child, so exit/signal handlers can kill them synchronously.
const live = new Set<ManagedProcess>();
const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
let handlersInstalled = false;
const exitHooks = new Set<() => void>();

function killAllSync(): void {
  for (const p of live) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
  for (const fn of exitHooks) {
    try {
      fn();
    } catch {
      // best effort: we are dying
    }
  }
}

/** Registers a synchronous cleanup to run if this process exits while children are alive. */
export function onAbnormalExit(fn: () => void): () => void {
  exitHooks.add(fn);
  return () => exitHooks.delete(fn);
}

function onSignal(sig: NodeJS.Signals): void {
  killAllSync();
  uninstallHandlers();
  // Re-raise so the exit status still says "killed by signal" to whoever ran us.
  process.kill(process.pid, sig);
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', killAllSync);
  for (const s of signals) process.on(s, onSignal);
}

function uninstallHandlers(): void {
  if (!handlersInstalled) return;
  handlersInstalled = false;
  process.off('exit', killAllSync);
  for (const s of signals) process.off(s, onSignal);
}

/** Is a pid alive (and not a zombie)? Used for processes that are not our children. */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // State is the field after the parenthesised comm, which may itself contain spaces.
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** The executable path a pid runs, or undefined: guards against killing a reused pid. */
export function pidExe(pid: number): string | undefined {
  try {
    const argv0 = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0];
    return argv0 === undefined || argv0 === '' ? undefined : argv0;
  } catch {
    return undefined;
  }
}

export function spawnManaged(name: string, bin: string, args: string[], opts: SpawnOptions): ManagedProcess {
  const fd = openSync(opts.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(bin, args, {
      stdio: ['ignore', fd, fd],
      // Own process group: a terminal Ctrl-C goes to us, and we decide the stop order.
      detached: true,
      env: opts.env ?? process.env,
      cwd: opts.cwd,
    });
  } finally {
    closeSync(fd);
  }
  if (child.pid === undefined) {
    throw new Error(`${name}: failed to spawn ${bin} (see ${opts.logFile})`);
  }
  const pid = child.pid;
  let running = true;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      running = false;
      live.delete(handle);
      resolve();
    });
    child.once('error', () => {
      running = false;
      live.delete(handle);
      resolve();
    });
  });
  const handle: ManagedProcess = {
    name,
    pid,
    bin,
    logFile: opts.logFile,
    exited,
    isRunning: () => running,
    stop: async (graceMs = 10_000) => {
      if (!running) return;
      try {
        child.kill('SIGTERM');
      } catch {
        // raced with exit
      }
      // Cancelled once the process exits, so a pending grace timer never holds the event loop open.
      const cancel = new AbortController();
      const timer = delay(graceMs, 'timeout' as const, { signal: cancel.signal }).catch(
        () => 'cancelled' as const,
      );
      const outcome = await Promise.race([exited.then(() => 'exited' as const), timer]);
      cancel.abort();
      if (outcome === 'timeout' && running) {
        try {
          child.kill('SIGKILL');
        } catch {
          // raced with exit
        }
        await exited;
      }
    },
  };
  if (opts.detached === true) {
    child.unref();
  } else {
    live.add(handle);
    installHandlers();
  }
  return handle;
}

/** Stop a process we did not spawn in this Node process (e.g. `e2e/cluster down`). */
export async function stopPid(pid: number, expectedExe: string, graceMs = 10_000): Promise<void> {
  if (!pidAlive(pid) || pidExe(pid) !== expectedExe) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const termDeadline = Date.now() + graceMs;
  while (pidAlive(pid) && Date.now() < termDeadline) await delay(50);
  if (pidAlive(pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      return;
    }
    const killDeadline = Date.now() + 5_000;
    while (pidAlive(pid) && Date.now() < killDeadline) await delay(50);
  }
}

/**
 * A detached watchdog that kills `pids` (lines "pid exe" in pidFile) if the owner dies without
 * cleaning up (SIGKILL, OOM), then removes `removeDir` if given. It exits on its own once pidFile
 * is removed.
 */
export function spawnReaper(pidFile: string, logFile: string, removeDir?: string): number {
  const script = `
owner=$1; pidfile=$2; removedir=$3
while [ -f "$pidfile" ] && kill -0 "$owner" 2>/dev/null; do sleep 1; done
[ -f "$pidfile" ] || exit 0
targets=""
while read -r pid exe; do
  [ -n "$pid" ] || continue
  cmd=$(tr '\\0' '\\n' < /proc/$pid/cmdline 2>/dev/null | head -n1)
  [ "$cmd" = "$exe" ] && targets="$targets $pid"
done < "$pidfile"
[ -n "$targets" ] && kill -TERM $targets 2>/dev/null
for _ in 1 2 3 4 5; do
  alive=""; for p in $targets; do kill -0 $p 2>/dev/null && alive="$alive $p"; done
  [ -z "$alive" ] && break; sleep 1
done
[ -n "$alive" ] && kill -KILL $alive 2>/dev/null
rm -f "$pidfile"
echo "reaped:$targets"
[ -n "$removedir" ] && rm -rf -- "$removedir"
exit 0
`;
  const fd = openSync(logFile, 'a');
  try {
    const child = spawn(
      'bash',
      ['-c', script, 'tether-e2e-reaper', String(process.pid), pidFile, removeDir ?? ''],
      {
        stdio: ['ignore', fd, fd],
        detached: true,
      },
    );
    child.unref();
    if (child.pid === undefined) throw new Error('failed to spawn reaper');
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

export function writePidFile(pidFile: string, procs: Iterable<ManagedProcess>): void {
  const lines = [...procs].filter((p) => p.isRunning()).map((p) => `${p.pid} ${p.bin}\n`);
  writeFileSync(pidFile, lines.join(''));
}

/** Kills a reaper we spawned (by pid) and removes its pid file. */
export function retireReaper(reaperPid: number | undefined, pidFile: string): void {
  rmSync(pidFile, { force: true });
  if (reaperPid === undefined) return;
  try {
    process.kill(reaperPid, 'SIGTERM');
  } catch {
    // it already noticed the pid file was gone
  }
}

/**
 * Free loopback ports, all held open together until the last one is found so the same call
 * never returns a duplicate. Another process may still grab one before it is used; callers
 * start right away.
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const srv = createServer();
      servers.push(srv);
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(0, '127.0.0.1', () => resolve());
      });
    }
    return servers.map((s) => (s.address() as AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

export async function freePort(): Promise<number> {
  const [p] = await freePorts(1);
  if (p === undefined) throw new Error('no free port');
  return p;
}

/** Last lines of a log file, for error messages. */
export function tail(file: string, lines = 30): string {
  if (!existsSync(file)) return '(no log)';
  const all = readFileSync(file, 'utf8').trimEnd().split('\n');
  return all.slice(-lines).join('\n');
}

/**
 * Polls `check` until it returns true, the deadline passes, or `proc` exits (then fails fast
 * with its log tail instead of waiting out the deadline).
 */
export async function waitUntil(
  what: string,
  check: () => Promise<boolean>,
  opts: { timeoutMs: number; intervalMs?: number; proc?: ManagedProcess },
): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs;
  let lastError: unknown;
  for (;;) {
    if (opts.proc !== undefined && !opts.proc.isRunning()) {
      throw new Error(
        `${what}: ${opts.proc.name} exited early. Log ${opts.proc.logFile}:\n${tail(opts.proc.logFile)}`,
      );
    }
    try {
      if (await check()) return;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const log = opts.proc === undefined ? '' : `\nLog ${opts.proc.logFile}:\n${tail(opts.proc.logFile)}`;
      throw new Error(
        `${what}: not ready after ${opts.timeoutMs}ms (last error: ${String(lastError)})${log}`,
      );
    }
    await delay(opts.intervalMs ?? 100);
  }
}

/** Runs a command to completion with a bounded time; throws with its output on failure. */
export function run(bin: string, args: string[], opts: { timeoutMs?: number; input?: string } = {}): string {
  const r = spawnSync(bin, args, {
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 60_000,
    input: opts.input,
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.error !== undefined) throw new Error(`${bin} ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) {
    throw new Error(
      `${bin} ${args.join(' ')} exited ${String(r.status ?? r.signal)}:\n${r.stderr}${r.stdout}`,
    );
  }
  return r.stdout;
}
