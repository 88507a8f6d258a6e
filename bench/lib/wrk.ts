// Closed-loop maximum throughput with wrk (C, one thread) when it is installed: it costs the load core far less per request than a Node client.

import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findExecutable, pinned, track, type Pinning } from './proc.ts';

export const findWrk = (): string | undefined => findExecutable('wrk', ['/usr/bin/wrk']);

export interface WrkResult {
  ok: number;
  failed: number;
  firstError?: string;
  rps: number;
  windowSeconds: number;
}

/** Runs `wrk -t1 -cN`; `path` may be absolute-form (for a forward proxy), which wrk sends as given via a Lua line. */
export async function runWrk(
  wrk: string,
  pin: Pinning,
  dir: string,
  port: number,
  path: string,
  concurrency: number,
  seconds: number,
): Promise<WrkResult> {
  const script = join(dir, 'wrk-path.lua');
  writeFileSync(script, `wrk.path = ${JSON.stringify(path)}\n`);
  const args = [
    '-t1',
    `-c${concurrency}`,
    `-d${Math.max(1, Math.round(seconds))}s`,
    '--timeout',
    '5s',
    '-s',
    script,
    `http://127.0.0.1:${port}/`,
  ];
  const [file, argv] = pinned(pin, pin.loadCore, wrk, args);
  const child = track(spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const code = await new Promise<number | null>((r) => child.once('close', r));
  if (code !== 0) throw new Error(`wrk exited ${code}: ${out}`);
  const total = Number(/(\d+) requests in ([\d.]+)(ms|s|m)/.exec(out)?.[1] ?? NaN);
  const m = /requests in ([\d.]+)(ms|s|m)/.exec(out);
  const windowSeconds = m ? Number(m[1]) * (m[2] === 'ms' ? 0.001 : m[2] === 'm' ? 60 : 1) : seconds;
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const sockErrors = sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
  const failed = non2xx + sockErrors;
  const ok = total - non2xx;
  return {
    ok,
    failed,
    ...(failed > 0
      ? { firstError: non2xx > 0 ? `${non2xx} non-2xx responses` : `socket errors: ${sock?.[0]}` }
      : {}),
    rps: ok / windowSeconds,
    windowSeconds,
  };
}
