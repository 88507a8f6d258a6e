// `node bench/ab.ts --a DIR --b DIR`: before/after for one data-path change — two checkouts of Tether measured alternately (A B A B …) under the same load, so drift in the machine's load hits both.
//
// Each checkout is a directory with cmd/ and src/ (a copy of the tree before and after the change,
// with node_modules linked in). Per round and side: a fresh sidecar, 2s warm-up, then proxy CPU
// per request at a fixed open-loop rate and the closed-loop maximum. The summary pairs round i of
// A with round i of B and reports the median difference, which is what a commit message quotes.

import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startCollector } from './lib/collector.ts';
import {
  choosePinning,
  rssAll,
  pinned,
  track,
  cpuSecondsAll,
  startUpstreamProcess,
  type Pinning,
} from './lib/proc.ts';
import { median, spread } from './lib/stats.ts';
import { BARE, PRODUCTION, startTether, tetherCapabilities } from './lib/tether.ts';
import { findWrk, runWrk } from './lib/wrk.ts';
import type { LoadResult, LoadSpec } from './loadgen.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

async function load(pin: Pinning, specs: LoadSpec[]): Promise<LoadResult[]> {
  const args = ['--disable-warning=DEP0060', join(ROOT, 'bench/loadgen.ts'), JSON.stringify(specs)];
  const [file, argv] = pinned(pin, pin.loadCore, process.execPath, args);
  const child = track(spawn(file, argv, { stdio: ['ignore', 'pipe', 'inherit'] }));
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  await new Promise((r) => child.once('close', r));
  return out
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as LoadResult);
}

interface Sample {
  /** RSS right after the closed-loop run. */
  rssMiB: number;
  openUs: number;
  closedUs: number;
  closedRps: number;
  p50: number;
  failed: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      a: { type: 'string' },
      b: { type: 'string' },
      rounds: { type: 'string', default: '5' },
      rate: { type: 'string', default: '1000' },
      seconds: { type: 'string', default: '5' },
      config: { type: 'string', default: 'bare' },
      'env-a': { type: 'string', multiple: true, default: [] },
      'env-b': { type: 'string', multiple: true, default: [] },
    },
  });
  if (!values.a || !values.b)
    throw new Error(
      'usage: node bench/ab.ts --a DIR --b DIR [--rounds 5] [--rate 1000] [--seconds 5] [--config bare|production] [--env-a K=V]… [--env-b K=V]…',
    );
  const sides = { A: resolve(values.a), B: resolve(values.b) };
  const envOf = (list: string[]): Record<string, string> =>
    Object.fromEntries(list.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  const envs = { A: envOf(values['env-a']), B: envOf(values['env-b']) };
  const wrk = findWrk();
  if (!wrk) throw new Error('bench/ab.ts needs wrk for the closed loop (apt-get install wrk)');
  const f = values.config === 'production' ? PRODUCTION : BARE;
  const caps = tetherCapabilities();
  const pin = choosePinning(cpus().length, false, -10);
  const dir = mkdtempSync(join(tmpdir(), 'tether-ab-'));
  const { proc: upstream, port: upstreamPort } = await startUpstreamProcess(
    pin,
    join(ROOT, 'bench/upstream.ts'),
    join(dir, 'up.log'),
  );
  const collector = await startCollector();
  const seconds = Number(values.seconds);
  const results: Record<'A' | 'B', Sample[]> = { A: [], B: [] };
  try {
    for (let round = 0; round < Number(values.rounds); round++) {
      const order: ('A' | 'B')[] = round % 2 === 0 ? ['A', 'B'] : ['B', 'A'];
      for (const side of order) {
        const t = await startTether(
          f,
          caps,
          pin,
          mkdtempSync(join(dir, side)),
          upstreamPort,
          collector.url,
          [],
          sides[side],
          envs[side],
        );
        try {
          const path = `http://127.0.0.1:${upstreamPort}/small`;
          const [, open] = await load(pin, [
            { mode: 'closed', port: t.port, path, concurrency: 16, seconds: 2, warmupSeconds: 0, pids: [] },
            {
              mode: 'open',
              port: t.port,
              path,
              rate: Number(values.rate),
              seconds,
              warmupSeconds: 0.5,
              pids: t.pids(),
            },
          ]);
          const cpu0 = cpuSecondsAll(t.pids());
          const closed = await runWrk(wrk, pin, dir, t.port, path, 16, seconds);
          const closedCpu = cpuSecondsAll(t.pids()) - cpu0;
          const rss = rssAll(t.pids());
          const s: Sample = {
            openUs: (open!.cpuSeconds / open!.ok) * 1e6,
            closedUs: (closedCpu / closed.ok) * 1e6,
            closedRps: closed.rps,
            p50: open!.latencyMs!.p50,
            failed: open!.failed + closed.failed,
            rssMiB: rss,
          };
          results[side].push(s);
          process.stderr.write(
            `round ${round + 1} ${side}: open ${s.openUs.toFixed(1)} µs/req (p50 ${s.p50.toFixed(3)} ms), closed ${s.closedUs.toFixed(1)} µs/req ${Math.round(s.closedRps)} rps${s.failed ? `, ${s.failed} failed` : ''} [load ${loadavg()[0]!.toFixed(2)}]\n`,
          );
        } finally {
          await t.proc.stop();
        }
      }
    }
  } finally {
    await upstream.stop();
    await collector.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const line = (name: string, key: keyof Sample, digits: number): string => {
    const a = spread(results.A.map((s) => s[key]));
    const b = spread(results.B.map((s) => s[key]));
    const d = median(results.B.map((s, i) => s[key] - (results.A[i]?.[key] ?? NaN)));
    const pct = (d / a.median) * 100;
    return `${name}: A ${a.median.toFixed(digits)} (${a.min.toFixed(digits)}–${a.max.toFixed(digits)}), B ${b.median.toFixed(digits)} (${b.min.toFixed(digits)}–${b.max.toFixed(digits)}), paired B−A median ${d >= 0 ? '+' : ''}${d.toFixed(digits)} (${pct >= 0 ? '+' : ''}${pct.toFixed(1)}%)`;
  };
  process.stdout.write(
    [
      `${values.config}, ${values.rounds} rounds, load average now ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
      line(`CPU µs/request, open loop ${values.rate} rps`, 'openUs', 1),
      line('CPU µs/request, closed loop c=16', 'closedUs', 1),
      line('closed-loop rps c=16', 'closedRps', 0),
      line(`p50 ms at ${values.rate} rps`, 'p50', 3),
      line('RSS after load, MiB', 'rssMiB', 1),
      '',
    ].join('\n'),
  );
}

await main();
