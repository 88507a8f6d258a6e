// The bench's command line: what `npm run bench -- [options]` accepts, with the quick and full presets.

import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

export const ARM_IDS = ['direct', 'nginx', 'tether-bare', 'tether-prod'] as const;
export type ArmId = (typeof ARM_IDS)[number];

export interface BenchOptions {
  quick: boolean;
  runs: number;
  arms: ArmId[];
  /** Open-loop rates for the small body. */
  rates: number[];
  /** Open-loop rate for the 1 KiB body, or none. */
  rate1k: number | undefined;
  openSeconds: number;
  warmupSeconds: number;
  concurrencies: number[];
  /** Closed-loop concurrency for the 1 KiB body, or none. */
  concurrency1k: number | undefined;
  closedSeconds: number;
  closedTool: 'auto' | 'wrk' | 'node';
  features: boolean;
  /** Closed-loop concurrency for the per-feature CPU cost. */
  featureConcurrency: number;
  nginx: string | undefined;
  install: boolean;
  pin: boolean;
  /** nice value for the bench's processes; undefined leaves priorities alone. */
  nice: number | undefined;
  out: string | undefined;
  label: string | undefined;
  compare: string | undefined;
  /** Another checkout (cmd/ and src/) to run as Tether, for a before/after of the whole bench. */
  tetherRoot: string | undefined;
  /** Re-render the Markdown of an earlier raw JSON result, measuring nothing. */
  render: string | undefined;
  help: boolean;
}

export const USAGE = `npm run bench -- [options]

Starts a fast upstream and each arm (direct, nginx, Tether bare, Tether with the production
feature set) on loopback, measures them side by side, and writes a dated Markdown table and the
raw JSON to bench/results/ (quick runs: to a temp dir unless --out).

  --quick              a few seconds: one run, one rate, short windows, no feature costs (the smoke test)
  --runs N             runs per arm; medians and spread are reported (default 3)
  --arms LIST          comma-separated subset of ${ARM_IDS.join(',')}
  --rates LIST         open-loop rates in requests/s (default 500,1000,2000)
  --seconds S          open-loop measured window per rate (default 5)
  --closed-tool T      auto (wrk if installed, else node; quick: node), wrk or node
  --no-features        skip the per-feature cost runs
  --features           run them even with --quick
  --nginx PATH         use this nginx binary instead of looking on PATH and in /usr/sbin
  --install            install Debian nginx-light if nginx is missing (root only)
  --no-pin             do not pin processes to cores with taskset
  --nice N|off         priority of the bench's processes (default -10 when root, so other work on a
                       shared machine cannot take the proxy's core; off leaves priorities alone)
  --out DIR            where results go (default bench/results, quick: a temp dir)
  --label NAME         added to the result file names and title (e.g. before-optimisation)
  --compare FILE.json  add a before/after section against an earlier result
  --tether-root DIR    run the Tether arms from another checkout (its cmd/ and src/; a "before")
  --render FILE.json   write FILE.md again from its raw results (with --compare), measuring nothing
`;

function numbers(raw: string, what: string): number[] {
  const v = raw.split(',').map((s) => Number(s.trim()));
  if (v.some((n) => !Number.isFinite(n) || n <= 0))
    throw new Error(`${what}: "${raw}" is not a list of positive numbers`);
  return v;
}

function niceValue(raw: string): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < -20 || n > 19)
    throw new Error(`--nice: "${raw}" is not a nice value (-20..19) or off`);
  return n;
}

export function parseOptions(argv: readonly string[]): BenchOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      quick: { type: 'boolean', default: false },
      runs: { type: 'string' },
      arms: { type: 'string' },
      rates: { type: 'string' },
      seconds: { type: 'string' },
      'closed-tool': { type: 'string' },
      'no-features': { type: 'boolean', default: false },
      features: { type: 'boolean', default: false },
      nginx: { type: 'string' },
      install: { type: 'boolean', default: false },
      'no-pin': { type: 'boolean', default: false },
      nice: { type: 'string' },
      out: { type: 'string' },
      label: { type: 'string' },
      compare: { type: 'string' },
      'tether-root': { type: 'string' },
      render: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  const quick = values.quick;
  const arms = values.arms
    ? values.arms.split(',').map((a) => {
        if (!(ARM_IDS as readonly string[]).includes(a))
          throw new Error(`--arms: unknown arm "${a}" (${ARM_IDS.join(', ')})`);
        return a as ArmId;
      })
    : [...ARM_IDS];
  if (!arms.includes('direct')) arms.unshift('direct'); // every delta is against direct
  // Quick runs keep the closed loop inside the one generator process: wrk's 1s minimum and its spawn would double a smoke run.
  const tool = values['closed-tool'] ?? (quick ? 'node' : 'auto');
  if (tool !== 'auto' && tool !== 'wrk' && tool !== 'node')
    throw new Error(`--closed-tool: "${tool}" is not auto, wrk or node`);
  const runs = values.runs ? numbers(values.runs, '--runs')[0]! : quick ? 1 : 3;
  if (!Number.isInteger(runs)) throw new Error('--runs must be a whole number');
  return {
    quick,
    runs,
    arms,
    // Quick keeps the rate low: the smoke test checks the harness works, and an overloaded proxy on a busy CI machine must not fail it.
    rates: values.rates ? numbers(values.rates, '--rates') : quick ? [200] : [500, 1000, 2000],
    rate1k: quick ? undefined : 1000,
    openSeconds: values.seconds ? numbers(values.seconds, '--seconds')[0]! : quick ? 0.3 : 5,
    warmupSeconds: quick ? 0.1 : 1,
    concurrencies: quick ? [16] : [16, 64],
    concurrency1k: quick ? undefined : 64,
    closedSeconds: quick ? 0.5 : 4,
    closedTool: tool,
    features: (values.features || !quick) && !values['no-features'],
    featureConcurrency: 16,
    nginx: values.nginx,
    install: values.install,
    pin: !values['no-pin'],
    nice: values.nice === 'off' ? undefined : values.nice ? niceValue(values.nice) : -10,
    out: values.out,
    label: values.label,
    compare: values.compare,
    tetherRoot: values['tether-root'] ? resolve(values['tether-root']) : undefined,
    render: values.render,
    help: values.help,
  };
}
