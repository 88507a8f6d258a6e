// Reads what the kernel knows about a process (CPU ticks, RSS) and starts bench processes pinned to a core, with their output in a file.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, openSync, closeSync, readFileSync, readdirSync } from 'node:fs';
import { createServer, connect, type AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';

let clkTck: number | undefined;

/** Kernel clock ticks per second (USER_HZ): the unit of utime/stime in /proc/PID/stat. */
export function ticksPerSecond(): number {
  if (clkTck === undefined) {
    const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
    const n = Number(r.stdout?.trim());
    clkTck = Number.isFinite(n) && n > 0 ? n : 100;
  }
  return clkTck;
}

/** User + system CPU seconds a process has used so far (all its threads), or undefined if it is gone. */
export function cpuSeconds(pid: number): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  // The command name (field 2) may contain spaces and parentheses: count fields after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return (utime + stime) / ticksPerSecond();
}

/** Summed CPU seconds of several processes (nginx's master and worker). */
export function cpuSecondsAll(pids: readonly number[]): number {
  let sum = 0;
  for (const pid of pids) sum += cpuSeconds(pid) ?? 0;
  return sum;
}

/** Resident set size and its peak in MiB, from /proc/PID/status. */
export function memory(pid: number): { rssMiB: number; hwmMiB: number } | undefined {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'latin1');
  } catch {
    return undefined;
  }
  const kb = (key: string): number =>
    Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssMiB: kb('VmRSS') / 1024, hwmMiB: kb('VmHWM') / 1024 };
}

/** Summed RSS of several processes in MiB. */
export function rssAll(pids: readonly number[]): number {
  let sum = 0;
  for (const pid of pids) sum += memory(pid)?.rssMiB ?? 0;
  return sum;
}

/** Direct children of a process (nginx's workers under its master). */
export function childrenOf(pid: number): number[] {
  try {
    const out: number[] = [];
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const list = readFileSync(`/proc/${pid}/task/${tid}/children`, 'latin1').trim();
      if (list) out.push(...list.split(/\s+/).map(Number));
    }
    return out;
  } catch {
    return [];
  }
}

/** The end of a log file, for error messages; empty when there is none. */
export function tailOf(file: string, chars = 2000): string {
  try {
    return readFileSync(file, 'utf8').slice(-chars);
  } catch {
    return '';
  }
}

/** Finds an executable by name on PATH or at the given absolute paths. */
export function findExecutable(name: string, extra: readonly string[] = []): string | undefined {
  for (const p of extra) if (existsSync(p)) return p;
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(`${dir}/${name}`)) return `${dir}/${name}`;
  }
  return undefined;
}

/** Ports the kernel says are free right now; another process could take one before we bind it, which is rare enough on loopback. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export async function waitForPort(
  port: number,
  ms: number,
  what: string,
  alive?: () => boolean,
): Promise<void> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    if (alive && !alive()) throw new Error(`${what} exited before it listened on 127.0.0.1:${port}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await delay(25);
  }
  throw new Error(`${what} did not listen on 127.0.0.1:${port} within ${ms}ms`);
}

/** Which cores the bench processes run on; `undefined` cores mean "not pinned". */
export interface Pinning {
  taskset: string | undefined;
  proxyCore: string | undefined;
  loadCore: string | undefined;
  note: string;
}

export function choosePinning(cores: number, noPin: boolean): Pinning {
  const taskset = findExecutable('taskset', ['/usr/bin/taskset']);
  if (noPin)
    return {
      taskset: undefined,
      proxyCore: undefined,
      loadCore: undefined,
      note: 'pinning disabled (--no-pin)',
    };
  if (!taskset)
    return { taskset, proxyCore: undefined, loadCore: undefined, note: 'taskset not found: nothing pinned' };
  if (cores < 2)
    return { taskset, proxyCore: undefined, loadCore: undefined, note: `${cores} core: nothing pinned` };
  const last = String(cores - 1);
  return {
    taskset,
    proxyCore: '0',
    loadCore: cores > 2 ? `1-${last}` : last,
    note: `proxy under test on core 0 alone; load generator, upstream and bench driver on core${cores > 2 ? `s 1-${last}` : ` ${last}`}`,
  };
}

export interface Spawned {
  child: ChildProcess;
  pid: number;
  exited: Promise<number | null>;
  alive: () => boolean;
  stop: () => Promise<void>;
}

/** Starts a process pinned to `core` (when given), its stdout and stderr going to `logFile`. */
export function spawnPinned(
  pin: Pinning,
  core: string | undefined,
  cmd: string,
  args: readonly string[],
  logFile: string,
  env?: NodeJS.ProcessEnv,
): Spawned {
  const fd = openSync(logFile, 'a');
  const [file, argv] =
    pin.taskset && core !== undefined ? [pin.taskset, ['-c', core, cmd, ...args]] : [cmd, [...args]];
  // taskset execs the command, so the child's pid is the command's own pid.
  const child = spawn(file, argv, { stdio: ['ignore', fd, fd], env: env ?? process.env });
  closeSync(fd);
  let running = true;
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      running = false;
      resolve(code);
    });
    child.once('error', () => {
      running = false;
      resolve(null);
    });
  });
  if (child.pid === undefined) throw new Error(`cannot start ${cmd}`);
  const pid = child.pid;
  return {
    child,
    pid,
    exited,
    alive: () => running,
    stop: async () => {
      if (!running) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(t);
    },
  };
}
