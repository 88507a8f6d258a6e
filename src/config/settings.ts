// The settings machinery: flags and env parsed together from one table, every problem collected before failing once with exit 64.

import { parseArgs } from 'node:util';

/** EX_USAGE: bad flags, env or start-up policy. Linkerd and the BSDs use the same code. */
export const EXIT_USAGE = 64;

export interface Setting<T> {
  flag: string;
  /** Environment variable; the flag wins when both are given. */
  env?: string;
  /** Shown in --help; `undefined` means "unset". */
  default: T;
  /** One line for --help: what it does and why the default is what it is. */
  help: string;
  parse: (raw: string) => T | { error: string };
  boolean?: boolean;
}

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(problems.join('\n'));
    this.problems = problems;
  }
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnySetting = Setting<any>;
/** A setting's value is what its parser returns; it may be undefined only when its default is. */
type ValueOf<T extends AnySetting> =
  Exclude<ReturnType<T['parse']>, { error: string }> | (undefined extends T['default'] ? undefined : never);
export type Values<S extends Record<string, AnySetting>> = { readonly [K in keyof S]: ValueOf<S[K]> };

export interface Parsed<S extends Record<string, AnySetting>> {
  values: Values<S>;
  help: boolean;
  positionals: string[];
}

/** Parses argv and env against `settings`; throws ConfigError listing every problem. */
export function parseSettings<S extends Record<string, AnySetting>>(
  settings: S,
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  opts: { positionals?: boolean } = {},
): Parsed<S> {
  const problems: string[] = [];
  const options: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' } };
  for (const s of Object.values(settings)) options[s.flag] = { type: s.boolean ? 'boolean' : 'string' };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: [...argv],
      options,
      strict: true,
      allowPositionals: opts.positionals ?? false,
    });
  } catch (err) {
    throw new ConfigError([(err as Error).message.replace(/\. To specify a positional.*$/s, '.')]);
  }
  const values: Record<string, unknown> = {};
  for (const [key, s] of Object.entries(settings)) {
    const fromFlag = parsed.values[s.flag];
    const raw = fromFlag !== undefined ? String(fromFlag) : s.env ? env[s.env] : undefined;
    if (raw === undefined || raw === '') {
      values[key] = s.default;
      continue;
    }
    const v: unknown = s.parse(raw);
    if (v !== null && typeof v === 'object' && 'error' in v) {
      const origin = fromFlag !== undefined ? `--${s.flag}` : `${s.env} (environment)`;
      problems.push(`${origin}: ${String(v.error)}`);
    } else values[key] = v;
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return {
    values: Object.freeze(values) as Values<S>,
    help: parsed.values.help === true,
    positionals: parsed.positionals,
  };
}

export function helpText(usage: string, settings: Record<string, AnySetting>): string {
  const lines = [usage, '', 'Options:'];
  for (const s of Object.values(settings)) {
    const name = `--${s.flag}${s.boolean ? '' : ' VALUE'}`;
    const def = s.default === undefined || s.default === null ? '' : ` (default: ${String(s.default)})`;
    lines.push(`  ${name.padEnd(28)} ${s.help}${def}`);
    if (s.env) lines.push(`  ${''.padEnd(28)} env: ${s.env}`);
  }
  lines.push(`  ${'--help'.padEnd(28)} show this help`);
  return lines.join('\n');
}

// Parsers shared by the binaries' settings tables.

export interface HostPort {
  host: string;
  port: number;
}

export function hostPort(raw: string): HostPort | { error: string } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(raw.trim());
  const port = Number(m?.[3]);
  if (!m || port > 65535) return { error: `"${raw}" is not HOST:PORT (e.g. 127.0.0.1:15001 or [::1]:15001)` };
  return { host: m[1] ?? m[2] ?? '', port };
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

export function positiveMs(raw: string): number | { error: string } {
  const m = /^(\d+)(ms|s|m)?$/.exec(raw.trim());
  if (!m) return { error: `"${raw}" is not a duration such as 500ms, 30s or 2m` };
  return Number(m[1]) * (m[2] === 's' ? 1000 : m[2] === 'm' ? 60_000 : 1);
}

export function oneOf<T extends string>(allowed: readonly T[]) {
  return (raw: string): T | { error: string } =>
    (allowed as readonly string[]).includes(raw)
      ? (raw as T)
      : { error: `"${raw}" must be one of ${allowed.join(', ')}` };
}

export const text = (raw: string): string => raw;
