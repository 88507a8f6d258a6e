// `npm run bench:profile`: runs one Tether configuration under load with node's --cpu-prof and prints the functions with the most self time.
//
//   node bench/profile.ts [--config bare|production] [--seconds 10] [--concurrency 16] [--top 40] [--keep DIR]
//                         [--callers FUNCTION] [--root OTHER-CHECKOUT]
//
// The .cpuprofile it writes opens in Chrome DevTools (Performance → Load profile) or speedscope
// for a flame graph; the text summary is enough to see where a request's CPU goes.

import { mkdtempSync, readdirSync, readFileSync, rmSync, mkdirSync, copyFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startCollector } from './lib/collector.ts';
import { choosePinning, cpuSecondsAll, startUpstreamProcess } from './lib/proc.ts';
import { BARE, PRODUCTION, startTether, tetherCapabilities, unsupported } from './lib/tether.ts';
import { findWrk, runWrk } from './lib/wrk.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Self time per function (summed over every call path) and per package or source folder; `callersOf` adds the call paths into one function. */
export function summarise(profile: CpuProfile, top: number, callersOf?: string): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0);
  const where = (n: ProfileNode): string => {
    const url = n.callFrame.url.replace(/^file:\/\//, '');
    const short = url.startsWith(ROOT) ? relative(ROOT, url) : url || '(native)';
    return `${short}:${n.callFrame.lineNumber + 1}`;
  };
  const fn = new Map<string, number>();
  const pkg = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const n = byId.get(id);
    if (!n) continue;
    const key = `${n.callFrame.functionName || '(anonymous)'}  ${where(n)}`;
    fn.set(key, (fn.get(key) ?? 0) + us);
    const url = n.callFrame.url;
    const area =
      /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1] ??
      (url.startsWith('node:')
        ? `node:${url.slice(5).split('/')[0]}`
        : url.includes(ROOT)
          ? relative(ROOT, url.replace(/^file:\/\//, ''))
              .split('/')
              .slice(0, 2)
              .join('/')
          : n.callFrame.functionName.startsWith('(')
            ? n.callFrame.functionName
            : '(native/V8)');
    pkg.set(area, (pkg.get(area) ?? 0) + us);
  }
  const pct = (us: number): string => `${((us / total) * 100).toFixed(1).padStart(5)}%`;
  const lines = [`sampled ${(total / 1e6).toFixed(2)}s of CPU`, '', 'self time by area:'];
  for (const [k, us] of [...pkg].sort((a, b) => b[1] - a[1]).slice(0, 20)) lines.push(`  ${pct(us)}  ${k}`);
  lines.push('', `top ${top} functions by self time:`);
  for (const [k, us] of [...fn].sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`  ${pct(us)}  ${k}`);
  // Inclusive time: a function's own samples plus everything it called, counted once per stack even when recursive.
  const parentOf = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id);
  const incl = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const seen = new Set<string>();
    for (let p: number | undefined = id; p !== undefined; p = parentOf.get(p)) {
      const n = byId.get(p)!;
      if (!n.callFrame.url || n.callFrame.url.startsWith('node:internal')) continue;
      const key = `${n.callFrame.functionName || '(anonymous)'}  ${where(n)}`;
      if (seen.has(key)) continue;
      seen.add(key);
      incl.set(key, (incl.get(key) ?? 0) + us);
    }
  }
  lines.push('', `top ${top} functions by inclusive time (node:internal frames left out):`);
  for (const [k, us] of [...incl].sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`  ${pct(us)}  ${k}`);
  if (callersOf) {
    const parent = new Map<number, number>();
    for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    const paths = new Map<string, number>();
    for (const [id, us] of selfUs) {
      const n = byId.get(id);
      if (!n || n.callFrame.functionName !== callersOf) continue;
      const chain: string[] = [];
      for (let p = parent.get(id); p !== undefined && chain.length < 8; p = parent.get(p)) {
        const pn = byId.get(p)!;
        chain.push(`${pn.callFrame.functionName || '(anonymous)'} ${where(pn)}`);
      }
      const key = chain.join(' ← ');
      paths.set(key, (paths.get(key) ?? 0) + us);
    }
    lines.push('', `call paths into ${callersOf}:`);
    for (const [k, us] of [...paths].sort((a, b) => b[1] - a[1]).slice(0, 8))
      lines.push(`  ${pct(us)}  ${k}`);
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      config: { type: 'string', default: 'bare' },
      seconds: { type: 'string', default: '10' },
      concurrency: { type: 'string', default: '16' },
      top: { type: 'string', default: '40' },
      keep: { type: 'string' },
      callers: { type: 'string' },
      root: { type: 'string' },
    },
  });
  const f = values.config === 'production' ? PRODUCTION : BARE;
  const caps = tetherCapabilities();
  const why = unsupported(f, caps);
  if (why) throw new Error(`--config ${values.config}: ${why}`);
  const wrk = findWrk();
  if (!wrk) throw new Error('profiling needs wrk (apt-get install wrk)');
  const pin = choosePinning(cpus().length, false, -10);
  const dir = mkdtempSync(join(tmpdir(), 'tether-profile-'));
  const profDir = join(dir, 'prof');
  const { proc: upstream, port: upstreamPort } = await startUpstreamProcess(
    pin,
    join(ROOT, 'bench/upstream.ts'),
    join(dir, 'upstream.log'),
  );
  const collector = await startCollector();
  try {
    const t = await startTether(
      f,
      caps,
      pin,
      dir,
      upstreamPort,
      collector.url,
      ['--cpu-prof', `--cpu-prof-dir=${profDir}`],
      values.root ? resolve(values.root) : undefined,
    );
    const target = `http://127.0.0.1:${upstreamPort}/small`;
    await runWrk(wrk, pin, dir, t.port, target, 16, 2); // warm the JIT before the part that counts
    const cpu0 = cpuSecondsAll(t.pids());
    const r = await runWrk(wrk, pin, dir, t.port, target, Number(values.concurrency), Number(values.seconds));
    const cpu = cpuSecondsAll(t.pids()) - cpu0;
    await t.proc.stop();
    const file = readdirSync(profDir).find((n) => n.endsWith('.cpuprofile'));
    if (!file) throw new Error('the sidecar wrote no .cpuprofile');
    process.stdout.write(
      `${values.config}: ${Math.round(r.rps)} rps at c=${values.concurrency}, ${((cpu / r.ok) * 1e6).toFixed(1)} µs CPU per request (profile includes the 2s warm-up)\n\n`,
    );
    process.stdout.write(
      summarise(
        JSON.parse(readFileSync(join(profDir, file), 'utf8')) as CpuProfile,
        Number(values.top),
        values.callers,
      ) + '\n',
    );
    if (values.keep) {
      mkdirSync(values.keep, { recursive: true });
      copyFileSync(join(profDir, file), join(values.keep, `${values.config}.cpuprofile`));
      process.stdout.write(`\nprofile kept: ${join(values.keep, `${values.config}.cpuprofile`)}\n`);
    }
  } finally {
    await upstream.stop();
    await collector.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) await main();
