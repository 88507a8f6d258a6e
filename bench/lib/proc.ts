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

/** Which cores the bench processes run on, and at what priority; `undefined` cores mean "not pinned". */
export interface Pinning {
  taskset: string | undefined;
  proxyCore: string | undefined;
  loadCore: string | undefined;
  /** nice value for every bench process (negative needs root), or undefined to leave it alone. */
  nice: number | undefined;
  note: string;
}

/**
 * On a machine shared with other work, the proxy's core is not its own: builds scheduled there
 * take most of it and the numbers measure the neighbours. As root the bench raises its processes'
 * priority (nice -10: about nine times a normal process's share) — the neighbours still run, and
 * the proxy gets the core a sidecar would have.
 */
export function choosePinning(cores: number, noPin: boolean, nice: number | undefined): Pinning {
  const taskset = findExecutable('taskset', ['/usr/bin/taskset']);
  const canNice =
    nice !== undefined &&
    (nice >= 0 || process.getuid?.() === 0) &&
    findExecutable('nice', ['/usr/bin/nice']);
  const niceValue = canNice ? nice : undefined;
  const prio =
    niceValue !== undefined
      ? `; bench processes at nice ${niceValue}`
      : nice !== undefined && nice < 0
        ? '; not root, so priorities left alone'
        : '';
  if (noPin)
    return {
      taskset: undefined,
      proxyCore: undefined,
      loadCore: undefined,
      nice: niceValue,
      note: `pinning disabled (--no-pin)${prio}`,
    };
  if (!taskset)
    return {
      taskset,
      proxyCore: undefined,
      loadCore: undefined,
      nice: niceValue,
      note: `taskset not found: nothing pinned${prio}`,
    };
  if (cores < 2)
    return {
      taskset,
      proxyCore: undefined,
      loadCore: undefined,
      nice: niceValue,
      note: `${cores} core: nothing pinned${prio}`,
    };
  const last = String(cores - 1);
  return {
    taskset,
    proxyCore: '0',
    loadCore: cores > 2 ? `1-${last}` : last,
    nice: niceValue,
    note: `proxy under test on core 0 alone; load generator, upstream and bench driver on core${cores > 2 ? `s 1-${last}` : ` ${last}`}${prio}`,
  };
}

/** The argv that runs `cmd` on `core` at the bench's priority; nice and taskset both exec, so the pid is the command's. */
export function pinned(
  pin: Pinning,
  core: string | undefined,
  cmd: string,
  args: readonly string[],
): [string, string[]] {
  let argv = [cmd, ...args];
  if (pin.taskset && core !== undefined) argv = [pin.taskset, '-c', core, ...argv];
  if (pin.nice !== undefined) argv = ['nice', '-n', String(pin.nice), ...argv];
  return [argv[0]!, argv.slice(1)];
}

/** Every child the bench started and that is still running: an interrupted bench kills them all. */
const live = new Set<ChildProcess>();

export function track<T extends ChildProcess>(child: T): T {
  live.add(child);
  child.once('exit', () => live.delete(child));
  child.once('error', () => live.delete(child));
  return child;
}

export function killAll(): void {
  for (const c of live) c.kill('SIGKILL');
  live.clear();
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
  const [file, argv] = pinned(pin, core, cmd, args);
  const child = track(spawn(file, argv, { stdio: ['ignore', fd, fd], env: env ?? process.env }));
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

/** Starts bench/upstream.ts on the load core and waits for the port it names. */
export async function startUpstreamProcess(
  pin: Pinning,
  script: string,
  logFile: string,
): Promise<{ proc: Spawned; port: number }> {
  const proc = spawnPinned(pin, pin.loadCore, process.execPath, [script, '0'], logFile);
  const end = performance.now() + 10_000;
  while (performance.now() < end) {
    const m = /^listening (\d+)$/m.exec(tailOf(logFile));
    if (m) return { proc, port: Number(m[1]) };
    if (!proc.alive()) break;
    await delay(25);
  }
  await proc.stop();
  throw new Error(`the bench upstream did not start: ${tailOf(logFile)}`);
}
