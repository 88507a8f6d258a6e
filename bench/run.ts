// `npm run bench`: starts the upstream and every arm on loopback, measures them side by side in one run, and writes the dated results (Markdown + raw JSON).

import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startCollector, type Collector } from './lib/collector.ts';
import { findNginx, startNginx, type NginxLookup } from './lib/nginx.ts';
import { parseOptions, USAGE, type BenchOptions } from './lib/options.ts';
import {
  choosePinning,
  killAll,
  pinned,
  track,
  cpuSecondsAll,
  freePort,
  memory,
  rssAll,
  startUpstreamProcess,
  type Pinning,
} from './lib/proc.ts';
import {
  renderMarkdown,
  type ArmResult,
  type ArmRun,
  type BenchResult,
  type FeatureRun,
} from './lib/report.ts';
import {
  BARE,
  PRODUCTION,
  startTether,
  tetherCapabilities,
  unsupported,
  type TetherCapabilities,
  type TetherFeatures,
} from './lib/tether.ts';
import { findWrk, runWrk } from './lib/wrk.ts';
import type { LoadResult, LoadSpec } from './loadgen.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const WARM_SECONDS = 6;
const LOADGEN = join(ROOT, 'bench/loadgen.ts');
const UPSTREAM = join(ROOT, 'bench/upstream.ts');

const T0 = performance.now();
const log = (s: string): void =>
  void process.stderr.write(`bench [${((performance.now() - T0) / 1000).toFixed(1).padStart(5)}s] ${s}\n`);

/** A started arm: where to send requests and which processes to measure. */
interface Running {
  port: number;
  startupMs: number;
  /** Request-target for a body path ("/small"): origin-form, or absolute-form for Tether. */
  target: (path: string) => string;
  pids: () => number[];
  stop: () => Promise<void>;
}

interface ArmDef {
  id: string;
  label: string;
  start: () => Promise<Running>;
}

interface Ctx {
  opts: BenchOptions;
  pin: Pinning;
  dir: string;
  upstreamPort: number;
  collector: Collector;
  caps: TetherCapabilities;
  closedTool: 'wrk' | 'node';
  wrk: string | undefined;
}

/** Runs measurements back to back in one pinned generator process; `each` sees every result as it lands. */
async function runLoad(
  ctx: Ctx,
  specs: LoadSpec[],
  each: (r: LoadResult, spec: LoadSpec) => void = () => undefined,
): Promise<LoadResult[]> {
  const args = ['--disable-warning=DEP0060', LOADGEN, JSON.stringify(specs)];
  const { pin } = ctx;
  const [file, argv] = pinned(pin, pin.loadCore, process.execPath, args);
  const child = track(spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'] }));
  const results: LoadResult[] = [];
  let pending = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => {
    pending += c.toString();
    let nl: number;
    while ((nl = pending.indexOf('\n')) !== -1) {
      const r = JSON.parse(pending.slice(0, nl)) as LoadResult;
      pending = pending.slice(nl + 1);
      each(r, specs[results.length]!);
      results.push(r);
    }
  });
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const code = await new Promise<number | null>((r) => child.once('close', r));
  if (code !== 0 || results.length !== specs.length)
    throw new Error(
      `load generator exited ${code} after ${results.length}/${specs.length} results: ${err.trim()}`,
    );
  return results;
}

type Closed = ArmRun['closed'][number];

/** wrk for the closed loop: the driver reads the proxy's CPU and RSS around it. */
async function wrkClosed(ctx: Ctx, arm: Running, body: string, concurrency: number): Promise<Closed> {
  const pids = arm.pids();
  const cpu0 = cpuSecondsAll(pids);
  let rssMax = rssAll(pids);
  const t = setInterval(() => (rssMax = Math.max(rssMax, rssAll(pids))), 100);
  try {
    const r = await runWrk(
      ctx.wrk!,
      ctx.pin,
      ctx.dir,
      arm.port,
      arm.target(body),
      concurrency,
      ctx.opts.closedSeconds,
    );
    return {
      concurrency,
      body,
      tool: 'wrk',
      ...r,
      cpuSeconds: cpuSecondsAll(pids) - cpu0,
      rssMaxMiB: Math.max(rssMax, rssAll(pids)),
    };
  } finally {
    clearInterval(t);
  }
}

function tetherArm(ctx: Ctx, id: string, label: string, f: TetherFeatures): ArmDef {
  return {
    id,
    label,
    start: async () => {
      const dir = mkdtempSync(join(ctx.dir, `${id.replace(/\W+/g, '-')}-`));
      const t = await startTether(
        f,
        ctx.caps,
        ctx.pin,
        dir,
        ctx.upstreamPort,
        ctx.collector.url,
        [],
        ctx.opts.tetherRoot,
      );
      return {
        port: t.port,
        startupMs: t.startupMs,
        target: (p) => `http://127.0.0.1:${ctx.upstreamPort}${p}`,
        pids: t.pids,
        stop: () => t.proc.stop(),
      };
    },
  };
}

function armDefs(ctx: Ctx, nginx: NginxLookup): { defs: ArmDef[]; missing: Record<string, string> } {
  const defs: ArmDef[] = [];
  const missing: Record<string, string> = {};
  for (const id of ctx.opts.arms) {
    if (id === 'direct') {
      defs.push({
        id,
        label: 'direct (no proxy)',
        start: async () => ({
          port: ctx.upstreamPort,
          startupMs: NaN,
          target: (p) => p,
          pids: () => [],
          stop: async () => undefined,
        }),
      });
    } else if (id === 'nginx') {
      if ('missing' in nginx) {
        missing[id] = nginx.missing;
        continue;
      }
      const found = nginx.found;
      defs.push({
        id,
        label: `nginx ${found.version}`,
        start: async () => {
          const port = await freePort();
          const dir = mkdtempSync(join(ctx.dir, 'nginx-'));
          const n = await startNginx(found, ctx.pin, dir, port, ctx.upstreamPort);
          return { port, startupMs: n.startupMs, target: (p) => p, pids: n.pids, stop: () => n.proc.stop() };
        },
      });
    } else {
      const f = id === 'tether-bare' ? BARE : PRODUCTION;
      const why = unsupported(f, ctx.caps);
      if (why) missing[id] = why;
      else defs.push(tetherArm(ctx, id, id === 'tether-bare' ? 'Tether bare' : 'Tether production', f));
    }
  }
  return { defs, missing };
}

/** JSON turns NaN (no successful request) into null. */
const msOf = (x: number | null): string => (typeof x === 'number' ? x.toFixed(3) : '–');
const perReq = (r: LoadResult | Closed): string =>
  r.cpuSeconds > 0 ? `, ${((r.cpuSeconds / Math.max(1, r.ok)) * 1e6).toFixed(0)} µs CPU/req` : '';
const failedNote = (r: LoadResult | Closed): string =>
  r.failed ? `, ${r.failed} failed (${r.firstError})` : '';

async function measureArm(ctx: Ctx, def: ArmDef): Promise<ArmRun> {
  const { opts } = ctx;
  const arm = await def.start();
  try {
    const pids = arm.pids();
    // Settled, before any traffic.
    await new Promise((r) => setTimeout(r, opts.quick ? 200 : 1000));
    const idle = pids.length ? rssAll(pids) : NaN;
    const base = { port: arm.port, pids, warmupSeconds: opts.warmupSeconds };
    const openSpecs: { body: string; spec: LoadSpec }[] = [
      ...opts.rates.map((rate) => ({ body: '/small', rate })),
      ...(opts.rate1k !== undefined ? [{ body: '/1k', rate: opts.rate1k }] : []),
    ].map(({ body, rate }) => ({
      body,
      spec: { ...base, mode: 'open', path: arm.target(body), rate, seconds: opts.openSeconds },
    }));
    const closedLevels = [
      ...opts.concurrencies.map((c) => ({ body: '/small', c })),
      ...(opts.concurrency1k !== undefined ? [{ body: '/1k', c: opts.concurrency1k }] : []),
    ];
    const nodeClosed: { body: string; spec: LoadSpec }[] =
      ctx.closedTool === 'node'
        ? closedLevels.map(({ body, c }) => ({
            body,
            spec: {
              ...base,
              mode: 'closed',
              path: arm.target(body),
              concurrency: c,
              seconds: opts.closedSeconds,
            },
          }))
        : [];
    // JIT and connection pools warm first: a closed loop at moderate concurrency, not measured. 6s
    // (~20k requests through Tether) gets past V8's optimising of the hot path, which stalls a
    // fresh sidecar once for 100–200 ms after ~13k requests and would otherwise land in one rate.
    const warm: LoadSpec = {
      mode: 'closed',
      port: arm.port,
      path: arm.target('/small'),
      concurrency: 16,
      seconds: opts.quick ? 0.3 : WARM_SECONDS,
      warmupSeconds: 0,
      pids: [],
    };
    const all = [...openSpecs, ...nodeClosed];
    const results = await runLoad(ctx, [warm, ...all.map((s) => s.spec)], (r, spec) => {
      if (spec === warm) return;
      const what = r.mode === 'open' ? `open ${spec.rate} rps` : `closed c=${spec.concurrency}`;
      const lat = r.latencyMs
        ? `: p50 ${msOf(r.latencyMs.p50)} ms, p99 ${msOf(r.latencyMs.p99)} ms`
        : `: ${r.rps.toFixed(0)} rps`;
      log(
        `  ${def.id} ${what} ${spec.path.replace(/^http:\/\/[^/]+/, '')}${lat}${perReq(r)}${failedNote(r)}`,
      );
    });
    const measured = results.slice(1);
    const open: ArmRun['open'] = openSpecs.map((s, i) => ({
      rate: s.spec.rate!,
      body: s.body,
      result: measured[i]!,
    }));
    const closed: Closed[] = nodeClosed.map((s, i) => {
      const r = measured[openSpecs.length + i]!;
      return { concurrency: s.spec.concurrency!, body: s.body, tool: 'node', ...r };
    });
    if (ctx.closedTool === 'wrk') {
      for (const { body, c } of closedLevels) {
        const r = await wrkClosed(ctx, arm, body, c);
        log(`  ${def.id} closed c=${c} ${body}: ${r.rps.toFixed(0)} rps${perReq(r)}${failedNote(r)}`);
        closed.push(r);
      }
    }
    const samples = [...open.map((o) => o.result.rssMaxMiB), ...closed.map((c) => c.rssMaxMiB)];
    const peak = pids.length ? Math.max(...samples) : NaN;
    const hwm = pids.length ? pids.reduce((s, p) => s + (memory(p)?.hwmMiB ?? 0), 0) : NaN;
    return { startupMs: arm.startupMs, idleRssMiB: idle, peakRssMiB: peak, hwmMiB: hwm, open, closed };
  } finally {
    await arm.stop();
  }
}

/** Feature configurations, each bare with one thing switched on (and all of them at the end). */
function featureConfigs(): { name: string; features: TetherFeatures }[] {
  return [
    { name: 'bare', features: BARE },
    { name: 'breaker', features: { ...BARE, breaker: true } },
    { name: 'timeouts', features: { ...BARE, timeouts: true } },
    { name: 'retry plan', features: { ...BARE, retryPlan: true } },
    { name: 'tracing 0%', features: { ...BARE, tracing: 0 } },
    { name: 'tracing 10%', features: { ...BARE, tracing: 0.1 } },
    { name: 'tracing 100%', features: { ...BARE, tracing: 1 } },
    { name: 'access log', features: { ...BARE, accessLog: true } },
    { name: 'production (all)', features: PRODUCTION },
  ];
}

/**
 * One configuration at saturation (closed loop, c=16): CPU per request there is the cleanest
 * signal on a shared machine — every wake-up carries many requests, and the core is busy with
 * nothing but this proxy's work.
 */
async function measureFeature(ctx: Ctx, name: string, f: TetherFeatures, round: number): Promise<FeatureRun> {
  const arm = await tetherArm(ctx, `feature-${name}`, name, f).start();
  const c = ctx.opts.featureConcurrency;
  try {
    const warm: LoadSpec = {
      mode: 'closed',
      port: arm.port,
      path: arm.target('/small'),
      concurrency: c,
      seconds: ctx.opts.quick ? 0.3 : 1.5,
      warmupSeconds: 0,
      pids: [],
    };
    let r: Closed;
    if (ctx.closedTool === 'wrk') {
      await runLoad(ctx, [warm]);
      r = await wrkClosed(ctx, arm, '/small', c);
    } else {
      const [, m] = await runLoad(ctx, [
        warm,
        { ...warm, seconds: ctx.opts.closedSeconds, pids: arm.pids() },
      ]);
      r = { concurrency: c, body: '/small', tool: 'node', ...m! };
    }
    const us = (r.cpuSeconds / Math.max(1, r.ok)) * 1e6;
    log(`  feature ${name}: ${us.toFixed(1)} µs CPU/req at ${Math.round(r.rps)} rps${failedNote(r)}`);
    return {
      name,
      round,
      cpuUsPerRequest: us,
      baselineUs: NaN,
      ok: r.ok,
      failed: r.failed,
      rps: r.rps,
      rssMaxMiB: r.rssMaxMiB,
    };
  } finally {
    await arm.stop();
  }
}

/** This checkout's commit, marked when the tree has uncommitted changes under src/ or cmd/. */
function checkout(): string {
  const git = (args: string[]): string =>
    spawnSync('git', args, { cwd: ROOT, encoding: 'utf8' }).stdout?.trim() ?? '';
  const head = git(['rev-parse', '--short', 'HEAD']) || 'unknown commit';
  const dirty = git(['status', '--porcelain', '--', 'src', 'cmd']) !== '';
  return `commit ${head}${dirty ? ' with uncommitted changes in src/ or cmd/' : ''}`;
}

function machine(pin: Pinning, nginx: NginxLookup, wrk: string | undefined): BenchResult['machine'] {
  let cpuinfo = '';
  try {
    cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    // not Linux: the model comes from os.cpus()
  }
  return {
    nproc: cpus().length,
    cpuModel: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? cpus()[0]?.model ?? 'unknown',
    kernel: release(),
    node: process.version,
    nginx: 'found' in nginx ? `${nginx.found.version} (${nginx.found.path})` : `missing: ${nginx.missing}`,
    wrk: wrk ?? 'not installed',
    pinning: pin.note,
    loadAverageStart: loadavg(),
    loadAverageEnd: loadavg(),
  };
}

async function main(): Promise<void> {
  let opts: BenchOptions;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n\n${USAGE}`);
    process.exit(64);
  }
  if (opts.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (opts.render) {
    const res = JSON.parse(readFileSync(opts.render, 'utf8')) as BenchResult;
    const before = opts.compare ? (JSON.parse(readFileSync(opts.compare, 'utf8')) as BenchResult) : undefined;
    const md = renderMarkdown(res, before, opts.compare);
    writeFileSync(opts.render.replace(/\.json$/, '.md'), md);
    process.stdout.write(md);
    return;
  }
  const started = new Date();
  const nginx: NginxLookup = opts.arms.includes('nginx')
    ? findNginx(opts.nginx, opts.install, log)
    : { missing: 'not requested (--arms)' };
  if ('missing' in nginx && opts.arms.includes('nginx')) log(`nginx arm skipped: ${nginx.missing}`);
  const wrk = opts.closedTool === 'node' ? undefined : findWrk();
  if (opts.closedTool === 'wrk' && !wrk) {
    process.stderr.write('bench: --closed-tool wrk: wrk is not installed (apt-get install wrk)\n');
    process.exit(64);
  }
  const pin = choosePinning(cpus().length, !opts.pin, opts.nice);
  log(`${pin.note}; closed loop with ${wrk ? 'wrk' : 'the Node generator'}`);

  const dir = mkdtempSync(join(tmpdir(), 'tether-bench-'));
  const { proc: upstream, port: upstreamPort } = await startUpstreamProcess(
    pin,
    UPSTREAM,
    join(dir, 'upstream.log'),
  );
  const collector = await startCollector();
  const cleanup = async (): Promise<void> => {
    await upstream.stop();
    await collector.close();
    rmSync(dir, { recursive: true, force: true });
  };
  // Interrupted: every process the bench started goes at once, the arm under test included.
  const onSignal = (): void => {
    killAll();
    rmSync(dir, { recursive: true, force: true });
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const ctx: Ctx = {
      opts,
      pin,
      dir,
      upstreamPort,
      collector,
      caps: tetherCapabilities(),
      closedTool: wrk ? 'wrk' : 'node',
      wrk,
    };
    const m = machine(pin, nginx, wrk);
    const { defs, missing } = armDefs(ctx, nginx);
    for (const [id, why] of Object.entries(missing)) if (id !== 'nginx') log(`${id} skipped: ${why}`);
    const arms: ArmResult[] = defs.map((d) => ({ id: d.id, label: d.label, runs: [] }));
    for (const [id, why] of Object.entries(missing)) arms.push({ id, label: id, missing: why, runs: [] });
    for (let run = 0; run < opts.runs; run++) {
      // Rotate the order so no arm always runs first (or last) in a round.
      const order = defs.map((_, i) => defs[(i + run) % defs.length]!);
      log(
        `round ${run + 1}/${opts.runs} (load average ${loadavg()
          .map((l) => l.toFixed(2))
          .join(' ')})`,
      );
      for (const def of order) arms.find((a) => a.id === def.id)!.runs.push(await measureArm(ctx, def));
    }
    const features: BenchResult['features'] = { runs: [] };
    if (opts.features) {
      const configs = featureConfigs().filter((c) => {
        const why = unsupported(c.features, ctx.caps);
        if (why) (features.skipped ??= {})[c.name] = why;
        return !why;
      });
      // Bare runs bracket every two features, and each feature is charged against the mean of
      // the bare runs on either side: on a shared machine the baseline drifts within a round.
      const bare = configs.find((c) => c.name === 'bare')!;
      const others = configs.filter((c) => c !== bare);
      for (let run = 0; run < opts.runs; run++) {
        log(`feature costs, round ${run + 1}/${opts.runs}`);
        const order = others.map((_, i) => others[(i + run) % others.length]!);
        let before = await measureFeature(ctx, bare.name, bare.features, run);
        features.runs.push(before);
        for (let i = 0; i < order.length; i += 2) {
          const pair: FeatureRun[] = [];
          for (const c of order.slice(i, i + 2))
            pair.push(await measureFeature(ctx, c.name, c.features, run));
          const after = await measureFeature(ctx, bare.name, bare.features, run);
          for (const f of pair) f.baselineUs = (before.cpuUsPerRequest + after.cpuUsPerRequest) / 2;
          features.runs.push(...pair, after);
          before = after;
        }
      }
    }
    m.loadAverageEnd = loadavg();
    const result: BenchResult = {
      version: 1,
      label: opts.label,
      mode: opts.quick ? 'quick' : 'full',
      startedAt: started.toISOString(),
      finishedAt: new Date().toISOString(),
      machine: m,
      settings: {
        runs: opts.runs,
        rates: opts.rates,
        rate1k: opts.rate1k,
        openSeconds: opts.openSeconds,
        warmupSeconds: opts.warmupSeconds,
        concurrencies: opts.concurrencies,
        concurrency1k: opts.concurrency1k,
        closedSeconds: opts.closedSeconds,
        closedTool: ctx.closedTool,
        featureConcurrency: opts.featureConcurrency,
        tetherCapabilities: ctx.caps,
        tether: opts.tetherRoot ?? checkout(),
      },
      arms,
      features,
      collector: collector.stats(),
    };
    const before = opts.compare ? (JSON.parse(readFileSync(opts.compare, 'utf8')) as BenchResult) : undefined;
    const out = opts.out ?? (opts.quick ? join(tmpdir(), 'tether-bench-quick') : join(ROOT, 'bench/results'));
    mkdirSync(out, { recursive: true });
    const stamp = `${started.toISOString().slice(0, 10)}${opts.label ? `-${opts.label}` : ''}${opts.quick ? '-quick' : ''}`;
    const jsonPath = join(out, `${stamp}.json`);
    const mdPath = join(out, `${stamp}.md`);
    writeFileSync(jsonPath, JSON.stringify(result, null, 2) + '\n');
    const md = renderMarkdown(result, before, opts.compare);
    writeFileSync(mdPath, md);
    process.stdout.write(md);
    log(`results: ${mdPath} and ${jsonPath} (${((Date.now() - started.getTime()) / 1000).toFixed(0)}s)`);
    // The smoke test finds the raw results through this line.
    process.stdout.write(`\nRESULT_JSON ${jsonPath}\n`);
  } finally {
    await cleanup();
  }
}

await main();
