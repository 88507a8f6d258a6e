// Turns raw bench runs into the published tables: medians with spread, deltas against direct, per-feature costs, and the issue's targets met or not.

import type { LoadResult } from '../loadgen.ts';
import { spread, median, type Spread } from './stats.ts';

export interface ArmRun {
  /** Spawn to listening (NaN for direct). */
  startupMs: number;
  idleRssMiB: number;
  /** Largest RSS sampled under load in this run. */
  peakRssMiB: number;
  /** The kernel's RSS high-water mark at the end of the run. */
  hwmMiB: number;
  open: { rate: number; body: string; result: LoadResult }[];
  closed: {
    concurrency: number;
    body: string;
    tool: 'wrk' | 'node';
    rps: number;
    ok: number;
    failed: number;
    firstError?: string;
    cpuSeconds: number;
    rssMaxMiB: number;
  }[];
}

export interface ArmResult {
  id: string;
  label: string;
  /** Why the arm did not run. */
  missing?: string;
  runs: ArmRun[];
}

export interface FeatureRun {
  name: string;
  /** Which round (0-based) it ran in. */
  round: number;
  /** Mean CPU µs/request of the bare runs just before and after it (NaN for bare itself). */
  baselineUs: number;
  /** Proxy CPU per request at saturation (closed loop). */
  cpuUsPerRequest: number;
  ok: number;
  failed: number;
  rps: number;
  rssMaxMiB: number;
}

export interface BenchResult {
  version: 1;
  label: string | undefined;
  mode: 'quick' | 'full';
  startedAt: string;
  finishedAt: string;
  machine: {
    nproc: number;
    cpuModel: string;
    kernel: string;
    node: string;
    nginx: string;
    wrk: string;
    pinning: string;
    loadAverageStart: number[];
    loadAverageEnd: number[];
  };
  settings: {
    runs: number;
    rates: number[];
    rate1k: number | undefined;
    openSeconds: number;
    warmupSeconds: number;
    concurrencies: number[];
    concurrency1k: number | undefined;
    closedSeconds: number;
    closedTool: 'wrk' | 'node';
    featureConcurrency: number;
    tetherCapabilities: { accessLogFlag: boolean; tracing: boolean };
    /** The checkout measured as Tether: this one at `commit`, or another tree (--tether-root). */
    tether: string;
  };
  arms: ArmResult[];
  features: { runs: FeatureRun[]; skipped?: Record<string, string> };
  collector: { exports: number; spans: number; bytes: number };
}

/** The issue's per-hop targets, with the production feature set on. */
export const TARGETS = {
  addedP50Ms: 0.3,
  addedP99Ms: 1,
  cpuSecondsPer1000: 0.2,
  idleRssMiB: 60,
  loadRssMiB: 80,
  throughputVsNginx: 0.25,
} as const;

type Pct = 'p50' | 'p90' | 'p99' | 'p999';

function openRun(run: ArmRun, rate: number, body: string): LoadResult | undefined {
  return run.open.find((o) => o.rate === rate && o.body === body)?.result;
}

export function latency(arm: ArmResult, rate: number, body: string, p: Pct): Spread {
  return spread(arm.runs.map((r) => openRun(r, rate, body)?.latencyMs?.[p] ?? NaN));
}

/** Added latency against direct, paired run by run (run i of the arm minus run i of direct), then the median. */
export function added(arm: ArmResult, direct: ArmResult, rate: number, body: string, p: Pct): Spread {
  return spread(
    arm.runs.map((r, i) => {
      const d = direct.runs[i];
      return (
        (openRun(r, rate, body)?.latencyMs?.[p] ?? NaN) -
        (d ? (openRun(d, rate, body)?.latencyMs?.[p] ?? NaN) : NaN)
      );
    }),
  );
}

/** CPU seconds the proxy spent per 1,000 requests at an open-loop rate: equal to vCPU used per 1,000 rps. */
export function cpuPer1000(arm: ArmResult, rate: number, body = '/small'): Spread {
  return spread(
    arm.runs.map((r) => {
      const o = openRun(r, rate, body);
      return o && o.ok > 0 ? (o.cpuSeconds / o.ok) * 1000 : NaN;
    }),
  );
}

export function closedRps(arm: ArmResult, concurrency: number, body: string): Spread {
  return spread(
    arm.runs.map((r) => r.closed.find((c) => c.concurrency === concurrency && c.body === body)?.rps ?? NaN),
  );
}

/** The best median throughput over the concurrency levels (small body). */
export function maxThroughput(
  arm: ArmResult,
  concurrencies: readonly number[],
): { rps: number; concurrency: number } {
  let best = { rps: NaN, concurrency: NaN };
  for (const c of concurrencies) {
    const m = closedRps(arm, c, '/small').median;
    if (!(m <= best.rps)) best = { rps: m, concurrency: c };
  }
  return best;
}

/**
 * What one core of this proxy can carry: 1 / (CPU seconds per request) at saturation, the best over
 * the concurrency levels (median over runs). Unlike measured throughput it does not stop at what
 * the load side (generator and upstream on the other core) can feed, which caps nginx here.
 */
export function capacity(arm: ArmResult, concurrencies: readonly number[]): number {
  let best = NaN;
  for (const c of concurrencies) {
    const m = spread(
      arm.runs.map((r) => {
        const x = r.closed.find((k) => k.concurrency === c && k.body === '/small');
        return x && x.ok > 0 && x.cpuSeconds > 0 ? x.ok / x.cpuSeconds : NaN;
      }),
    ).median;
    if (!(m <= best)) best = m;
  }
  return best;
}

export function failures(arm: ArmResult): number {
  return arm.runs.reduce(
    (s, r) =>
      s + r.open.reduce((a, o) => a + o.result.failed, 0) + r.closed.reduce((a, c) => a + c.failed, 0),
    0,
  );
}

const ms = (x: number): string => (Number.isFinite(x) ? x.toFixed(3) : '–');
const signedMs = (x: number): string => (Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${x.toFixed(3)}` : '–');
const int = (x: number): string => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '–');
const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : '–');
const f3 = (x: number): string => (Number.isFinite(x) ? x.toFixed(3) : '–');
const withSpread = (s: Spread, fmt: (x: number) => string): string =>
  s.runs > 1 ? `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})` : fmt(s.median);

function table(head: string[], rows: string[][]): string {
  return [
    `| ${head.join(' | ')} |`,
    `|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
    '',
  ].join('\n');
}

export interface TargetCheck {
  what: string;
  target: string;
  measured: string;
  met: boolean | undefined;
}

/** The arm the targets are judged on: the production feature set when it ran, otherwise bare (said so). */
export function targetArm(res: BenchResult): ArmResult | undefined {
  const prod = res.arms.find((a) => a.id === 'tether-prod' && a.runs.length > 0);
  return prod ?? res.arms.find((a) => a.id === 'tether-bare' && a.runs.length > 0);
}

export function checkTargets(res: BenchResult): TargetCheck[] {
  const arm = targetArm(res);
  const direct = res.arms.find((a) => a.id === 'direct');
  const nginx = res.arms.find((a) => a.id === 'nginx' && a.runs.length > 0);
  if (!arm || !direct) return [];
  const rate = res.settings.rates.includes(1000) ? 1000 : res.settings.rates[0]!;
  const p50 = added(arm, direct, rate, '/small', 'p50').median;
  const p99 = added(arm, direct, rate, '/small', 'p99').median;
  const cpu = cpuPer1000(arm, rate).median;
  const idle = spread(arm.runs.map((r) => r.idleRssMiB)).median;
  const load = spread(arm.runs.map((r) => Math.max(r.peakRssMiB, r.hwmMiB))).median;
  const mine = maxThroughput(arm, res.settings.concurrencies);
  const theirs = nginx ? maxThroughput(nginx, res.settings.concurrencies) : undefined;
  const ratio = theirs ? mine.rps / theirs.rps : NaN;
  const myCap = capacity(arm, res.settings.concurrencies);
  const theirCap = nginx ? capacity(nginx, res.settings.concurrencies) : NaN;
  const capRatio = myCap / theirCap;
  const le = (x: number, t: number): boolean | undefined => (Number.isFinite(x) ? x <= t : undefined);
  return [
    {
      what: `added latency p50 at ${rate} rps`,
      target: `≤ ${TARGETS.addedP50Ms} ms`,
      measured: `${ms(p50)} ms`,
      met: le(p50, TARGETS.addedP50Ms),
    },
    {
      what: `added latency p99 at ${rate} rps`,
      target: `≤ ${TARGETS.addedP99Ms} ms`,
      measured: `${ms(p99)} ms`,
      met: le(p99, TARGETS.addedP99Ms),
    },
    {
      what: 'CPU per 1,000 rps',
      target: `≤ ${TARGETS.cpuSecondsPer1000} vCPU`,
      measured: `${f3(cpu)} vCPU (${rate} rps)`,
      met: le(cpu, TARGETS.cpuSecondsPer1000),
    },
    {
      what: 'RSS idle',
      target: `≤ ${TARGETS.idleRssMiB} MiB`,
      measured: `${f1(idle)} MiB`,
      met: le(idle, TARGETS.idleRssMiB),
    },
    {
      what: 'RSS under load (peak)',
      target: `≤ ${TARGETS.loadRssMiB} MiB`,
      measured: `${f1(load)} MiB`,
      met: le(load, TARGETS.loadRssMiB),
    },
    {
      what: 'max throughput vs nginx (per core of CPU)',
      target: `≥ ${TARGETS.throughputVsNginx}×`,
      measured: theirs
        ? `${f3(capRatio)}× (${int(myCap)} vs ${int(theirCap)} requests per CPU-second); as measured ${f3(ratio)}× (${int(mine.rps)} vs ${int(theirs.rps)} rps, nginx held back by the load side)`
        : `nginx did not run: ${res.arms.find((a) => a.id === 'nginx')?.missing ?? 'not requested'}`,
      met: Number.isFinite(capRatio) ? capRatio >= TARGETS.throughputVsNginx : undefined,
    },
  ];
}

/** Median CPU µs per request of each feature configuration, and its cost over bare. */
export function featureCosts(
  res: BenchResult,
): { name: string; us: Spread; delta: Spread; rps: number; failed: number }[] {
  const names = [...new Set(res.features.runs.map((r) => r.name))];
  const byName = (n: string): FeatureRun[] => res.features.runs.filter((r) => r.name === n);
  return names.map((name) => {
    const runs = byName(name);
    return {
      name,
      us: spread(runs.map((r) => r.cpuUsPerRequest)),
      // Against the bare runs that bracketed it in the same round.
      delta: spread(runs.map((r) => r.cpuUsPerRequest - r.baselineUs)),
      rps: median(runs.map((r) => r.rps)),
      failed: runs.reduce((s, r) => s + r.failed, 0),
    };
  });
}

function summaryOf(
  res: BenchResult,
  id: string,
):
  | { p50: number; p99: number; cpu: number; sat: number; max: number; idle: number; load: number }
  | undefined {
  const arm = res.arms.find((a) => a.id === id && a.runs.length > 0);
  const direct = res.arms.find((a) => a.id === 'direct');
  if (!arm || !direct) return undefined;
  return {
    p50: added(arm, direct, 1000, '/small', 'p50').median,
    p99: added(arm, direct, 1000, '/small', 'p99').median,
    cpu: cpuPer1000(arm, 1000).median * 1000, // µs per request
    sat: 1e6 / capacity(arm, res.settings.concurrencies), // µs per request at saturation
    max: maxThroughput(arm, res.settings.concurrencies).rps,
    idle: spread(arm.runs.map((r) => r.idleRssMiB)).median,
    load: spread(arm.runs.map((r) => Math.max(r.peakRssMiB, r.hwmMiB))).median,
  };
}

function compareSection(res: BenchResult, before: BenchResult, path: string): string {
  const rows: string[][] = [];
  const pct = (b: number, a: number): string =>
    Number.isFinite(a / b) && b !== 0 ? `${a >= b ? '+' : ''}${(((a - b) / b) * 100).toFixed(0)}%` : '–';
  for (const id of ['tether-bare', 'tether-prod', 'nginx']) {
    const a = summaryOf(res, id);
    const b = summaryOf(before, id);
    if (!a || !b) continue;
    rows.push(
      [id, 'added p50 at 1,000 rps (ms)', ms(b.p50), ms(a.p50), pct(b.p50, a.p50)],
      [id, 'added p99 at 1,000 rps (ms)', ms(b.p99), ms(a.p99), pct(b.p99, a.p99)],
      [id, 'CPU µs per request at 1,000 rps', f1(b.cpu), f1(a.cpu), pct(b.cpu, a.cpu)],
      [id, 'CPU µs per request at saturation', f1(b.sat), f1(a.sat), pct(b.sat, a.sat)],
      [id, 'max throughput (rps)', int(b.max), int(a.max), pct(b.max, a.max)],
      [id, 'RSS idle / peak (MiB)', `${f1(b.idle)} / ${f1(b.load)}`, `${f1(a.idle)} / ${f1(a.load)}`, ''],
    );
  }
  return [
    `## Before and after (${before.label ?? before.startedAt} → ${res.label ?? res.startedAt})`,
    '',
    `Against \`${path}\` (${before.startedAt}, load average at start ${before.machine.loadAverageStart.map((l) => l.toFixed(2)).join(' ')}).`,
    '',
    table(['arm', 'measure', 'before', 'after', 'change'], rows),
  ].join('\n');
}

/** One row per proxy at 1,000 rps and at saturation: the table README carries. */
export function summaryTable(res: BenchResult, direct: ArmResult): string {
  const s = res.settings;
  const proxies = res.arms.filter((a) => a.id !== 'direct' && a.runs.length > 0);
  return [
    '## Summary (medians; latency added over direct at 1,000 rps, 16-byte body)',
    '',
    table(
      [
        'arm',
        'added p50',
        'added p99',
        'vCPU at 1,000 rps',
        'max rps',
        'requests per CPU-second',
        'RSS idle',
        'RSS peak',
      ],
      proxies.map((a) => [
        a.label,
        `${ms(added(a, direct, 1000, '/small', 'p50').median)} ms`,
        `${ms(added(a, direct, 1000, '/small', 'p99').median)} ms`,
        f3(cpuPer1000(a, 1000).median),
        int(maxThroughput(a, s.concurrencies).rps),
        int(capacity(a, s.concurrencies)),
        `${f1(spread(a.runs.map((r) => r.idleRssMiB)).median)} MiB`,
        `${f1(spread(a.runs.map((r) => Math.max(r.peakRssMiB, r.hwmMiB))).median)} MiB`,
      ]),
    ),
  ].join('\n');
}

export function renderMarkdown(res: BenchResult, before?: BenchResult, beforePath?: string): string {
  const s = res.settings;
  const direct = res.arms.find((a) => a.id === 'direct');
  const ran = res.arms.filter((a) => a.runs.length > 0);
  const out: string[] = [];
  const title = `# Tether bench ${res.startedAt.slice(0, 10)}${res.label ? ` (${res.label})` : ''}${res.mode === 'quick' ? ' — quick smoke run, not for publishing' : ''}`;
  out.push(title, '');
  const m = res.machine;
  out.push(
    `Machine: ${m.nproc} × ${m.cpuModel}, Linux ${m.kernel}, Node ${m.node}, nginx ${m.nginx}, wrk ${m.wrk}.`,
    `Pinning: ${m.pinning}. Load average (1/5/15 min) at start ${m.loadAverageStart.map((l) => l.toFixed(2)).join(' ')}, at end ${m.loadAverageEnd.map((l) => l.toFixed(2)).join(' ')}.`,
    `Tether measured: ${s.tether}. Runs per arm: ${s.runs}; each cell is the median over runs, with (min–max) where shown.`,
    '',
  );
  const missing = res.arms.filter((a) => a.missing);
  for (const a of missing) out.push(`- **${a.id} did not run**: ${a.missing}`);
  if (missing.length) out.push('');

  const checks = checkTargets(res);
  const tArm = targetArm(res);
  if (checks.length && tArm) {
    out.push(
      `## Targets (judged on ${tArm.label}${tArm.id === 'tether-bare' ? ' — the production arm did not run' : ''})`,
      '',
    );
    out.push(
      table(
        ['target', 'goal', 'measured', 'met?'],
        checks.map((c) => [
          c.what,
          c.target,
          c.measured,
          c.met === undefined ? 'not measured' : c.met ? 'yes' : '**no**',
        ]),
      ),
    );
  }

  if (direct && s.rates.includes(1000)) out.push(summaryTable(res, direct));

  if (direct) {
    const rows: string[][] = [];
    for (const rate of s.rates) {
      for (const a of ran) {
        const isDirect = a.id === 'direct';
        rows.push([
          `${a.label}`,
          int(rate),
          withSpread(latency(a, rate, '/small', 'p50'), ms),
          ms(latency(a, rate, '/small', 'p90').median),
          withSpread(latency(a, rate, '/small', 'p99'), ms),
          ms(latency(a, rate, '/small', 'p999').median),
          isDirect ? '(floor)' : signedMs(added(a, direct, rate, '/small', 'p50').median),
          isDirect ? '(floor)' : signedMs(added(a, direct, rate, '/small', 'p99').median),
        ]);
      }
    }
    out.push(
      '## Open-loop latency, 16-byte body (ms, from the intended send time)',
      '',
      table(['arm', 'rps', 'p50', 'p90', 'p99', 'p99.9', 'added p50', 'added p99'], rows),
    );
    if (s.rate1k !== undefined) {
      out.push(
        `## Open-loop latency, 1 KiB body at ${int(s.rate1k)} rps (ms)`,
        '',
        table(
          ['arm', 'p50', 'p99', 'p99.9', 'added p50', 'added p99'],
          ran.map((a) => [
            a.label,
            withSpread(latency(a, s.rate1k!, '/1k', 'p50'), ms),
            withSpread(latency(a, s.rate1k!, '/1k', 'p99'), ms),
            ms(latency(a, s.rate1k!, '/1k', 'p999').median),
            a.id === 'direct' ? '(floor)' : signedMs(added(a, direct, s.rate1k!, '/1k', 'p50').median),
            a.id === 'direct' ? '(floor)' : signedMs(added(a, direct, s.rate1k!, '/1k', 'p99').median),
          ]),
        ),
      );
    }
    const lag = spread(direct.runs.flatMap((r) => r.open.map((o) => o.result.sendLagMs?.p99 ?? NaN)));
    out.push(
      `Generator floor: on the direct arm, sends left a median p99 of ${ms(lag.median)} ms after their due time (worst run ${ms(lag.max)} ms); that lag is inside every arm's latency and cancels out of "added".`,
      '',
    );
  }

  const nginx = ran.find((a) => a.id === 'nginx');
  const closedHead = [
    'arm',
    ...s.concurrencies.map((c) => `c=${c}`),
    ...(s.concurrency1k !== undefined ? [`1 KiB, c=${s.concurrency1k}`] : []),
    'vs nginx',
    'requests per CPU-second',
    'vs nginx (per CPU)',
  ];
  out.push(
    `## Closed-loop throughput (requests/s, ${s.closedTool === 'wrk' ? 'wrk -t1' : 'the Node generator'}, ${s.closedSeconds}s per level)`,
    '',
    table(
      closedHead,
      ran.map((a) => {
        const best = maxThroughput(a, s.concurrencies);
        return [
          a.label,
          ...s.concurrencies.map((c) => withSpread(closedRps(a, c, '/small'), int)),
          ...(s.concurrency1k !== undefined ? [withSpread(closedRps(a, s.concurrency1k, '/1k'), int)] : []),
          nginx && a.id !== 'direct' ? `${f3(best.rps / maxThroughput(nginx, s.concurrencies).rps)}×` : '',
          a.id === 'direct' ? '' : int(capacity(a, s.concurrencies)),
          nginx && a.id !== 'direct'
            ? `${f3(capacity(a, s.concurrencies) / capacity(nginx, s.concurrencies))}×`
            : '',
        ];
      }),
    ),
  );

  const proxies = ran.filter((a) => a.id !== 'direct');
  if (proxies.length) {
    out.push(
      '## Proxy process resources',
      '',
      'CPU is user+system time of the proxy process(es) from /proc/PID/stat over the measured window, per 1,000 requests (= vCPU at 1,000 rps). RSS from /proc/PID/status (nginx: master + worker).',
      '',
      table(
        [
          'arm',
          ...s.rates.map((r) => `CPU s/1k req @${int(r)} rps`),
          'RSS idle (MiB)',
          'RSS peak under load (MiB)',
          'start to listening (ms)',
        ],
        proxies.map((a) => [
          a.label,
          ...s.rates.map((r) => withSpread(cpuPer1000(a, r), f3)),
          withSpread(spread(a.runs.map((r) => r.idleRssMiB)), f1),
          withSpread(spread(a.runs.map((r) => Math.max(r.peakRssMiB, r.hwmMiB))), f1),
          int(median(a.runs.map((r) => r.startupMs))),
        ]),
      ),
    );
  }

  if (res.features.runs.length || res.features.skipped) {
    const costs = featureCosts(res);
    out.push(
      `## Cost of each feature (Tether CPU µs per request at saturation, closed loop c=${s.featureConcurrency}, one feature on at a time)`,
      '',
      table(
        ['configuration', 'CPU µs/request', 'over bare (µs)', 'rps'],
        costs.map((c) => [
          c.name,
          withSpread(c.us, f1),
          c.name === 'bare' ? '–' : withSpread(c.delta, (x) => `${x >= 0 ? '+' : ''}${x.toFixed(1)}`),
          int(c.rps) + (c.failed ? ` (${c.failed} failed)` : ''),
        ]),
      ),
    );
    for (const [name, why] of Object.entries(res.features.skipped ?? {}))
      out.push(`- ${name}: not measured — ${why}`);
    if (res.features.skipped) out.push('');
    out.push(
      `Spans received by the bench collector over the whole run: ${int(res.collector.spans)} in ${int(res.collector.exports)} exports.`,
      '',
    );
  }

  const bad = ran.filter((a) => failures(a) > 0);
  for (const a of bad) out.push(`- **${a.id}: ${failures(a)} failed requests** — its numbers are suspect.`);
  if (bad.length) out.push('');

  if (before && beforePath) out.push(compareSection(res, before, beforePath));
  out.push(methodology(res));
  return out.join('\n');
}

export function methodology(res: BenchResult): string {
  const s = res.settings;
  return `## Methodology

- **Arms**, started one at a time on 127.0.0.1 and measured in the same run: direct to the upstream
  (the floor); nginx as a reverse proxy (1 worker, \`keepalive 256\` to the upstream, HTTP/1.1,
  access log off); Tether bare (the real \`tether-sidecar\` binary, one destination with
  responseHeaders/idle timeouts off, no retries, breaker disabled — opossum's concurrency cap still
  runs — no tracing (\`OTEL_SDK_DISABLED=true\`), access log off); Tether with the production
  feature set (timeouts 250ms/2s/30s/5s, a breaker, 2 retries planned on connect failure, reset and
  503 but never triggered, tracing at 10% (\`parentbased_traceidratio\`) exported over OTLP/HTTP to
  a sink in the bench that answers 200, access log on, written to a file as a container runtime
  would). Tether receives absolute-form requests (what \`HTTP_PROXY\` clients send); nginx and
  direct receive origin-form.
- **Upstream**: one process serving pre-encoded responses (16-byte and 1 KiB bodies) on keep-alive
  connections, the same for every arm.
- **Pinning**: ${res.machine.pinning}. Each proxy runs as its own process.
- **Open loop** (latency): a Node generator schedules request *i* at t₀ + i/rate whatever earlier
  responses do, on keep-alive connections (up to 1,000 in flight), and counts latency from the
  intended send time to the last response byte — no coordinated omission. ${s.warmupSeconds}s of
  unrecorded warm-up at the same rate, then ${s.openSeconds}s measured at each of ${s.rates.join(', ')} rps;
  every proxy is first warmed by 6s of closed-loop traffic (a fresh sidecar stalls once for
  100–200 ms while V8 optimises its hot path, after ~13k requests). Percentiles are exact over all
  measured requests of a run (sorted), then the median over runs; "added" pairs each arm's run
  with the direct run of the same round.
- **What the generator cannot measure**: it is a Node process sharing its core with the upstream,
  so its own scheduling lag and client cost are in every number; the direct arm shows that floor,
  and "added" subtracts it. It cannot see below ~10 µs, and sub-millisecond tails are sensitive to
  anything else running on the machine (see load average above).
- **Closed loop** (throughput): ${s.closedTool === 'wrk' ? '`wrk -t1`' : 'the Node generator'} at concurrency ${s.concurrencies.join(', ')}
  for ${s.closedSeconds}s each; the best level is the arm's maximum throughput. With two cores the load
  generator and upstream share one core, so the direct arm's number is the ceiling any proxy can
  show here, and a fast proxy (nginx) is held back by that side, not by its own core. "Requests
  per CPU-second" (1 / the proxy's CPU time per request at saturation) is what one core of the
  proxy can carry; the throughput target is judged on it, the stricter of the two.
- **CPU and memory**: user+system ticks of the proxy process(es) from \`/proc/PID/stat\` over each
  measured window, divided by completed requests; RSS idle is read 1s after start with no
  traffic, RSS under load is the largest of the 100 ms samples and the kernel's high-water mark.
- **Feature costs**: Tether restarted with one feature switched on at a time, CPU per request at
  saturation (closed loop, c=${s.featureConcurrency}, ${s.closedSeconds}s), minus the mean of the bare runs just before and
  after it (bare runs bracket every two features, so a drifting machine moves both). Saturation is
  the cleanest signal on a shared machine — each wake-up carries many requests — but it batches
  what a lower rate would not (access-log writes, span exports): the bare and production arms'
  CPU at 1,000 rps above is the cost at a realistic rate.
- Runs: ${s.runs}, arm order rotated each round so none always goes first.
`;
}
