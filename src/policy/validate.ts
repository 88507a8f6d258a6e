// Parses and validates a TrafficPolicy document: every problem is reported with its path and line/column; unknown fields are errors.

import { isMap, isPair, isScalar, LineCounter, parseAllDocuments, type Document, type Node } from 'yaml';
import { describe, parseDuration } from './duration.ts';
import {
  API_VERSION,
  KIND,
  NAMED_RETRY_CONDITIONS,
  type DestinationSpec,
  type HostMatch,
  type NamedRetryCondition,
  type Outbound,
  type PolicySpec,
  type SettingsSpec,
} from './schema.ts';

export interface Problem {
  severity: 'error' | 'warning';
  /** Dotted path into the document, e.g. spec.destinations[0].timeouts.connect */
  path: string;
  message: string;
  line?: number;
  column?: number;
}

export type ParseResult =
  { ok: true; spec: PolicySpec; warnings: Problem[] } | { ok: false; problems: Problem[] };

type Path = (string | number)[];

export function formatPath(path: Path): string {
  let out = '';
  for (const seg of path) out += typeof seg === 'number' ? `[${seg}]` : out === '' ? seg : `.${seg}`;
  return out || '(document)';
}

export function formatProblem(p: Problem, source?: string): string {
  const where = [source, p.line !== undefined ? `${p.line}:${p.column ?? 1}` : undefined]
    .filter(Boolean)
    .join(':');
  return `${where ? where + ': ' : ''}${p.severity}: ${p.path}: ${p.message}`;
}

/** Levenshtein distance, for "did you mean" on misspelt field names. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] ?? 0;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j] ?? 0;
      row[j] = Math.min((row[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length] ?? 0;
}

function suggest(name: string, allowed: readonly string[]): string {
  const best = allowed
    .map((a) => ({ a, d: distance(name.toLowerCase(), a.toLowerCase()) }))
    .sort((x, y) => x.d - y.d)[0];
  return best && best.d <= Math.max(2, Math.floor(name.length / 3)) ? ` (did you mean "${best.a}"?)` : '';
}

class Checker {
  readonly problems: Problem[] = [];
  private readonly doc: Document | undefined;
  private readonly lines: LineCounter;

  constructor(doc: Document | undefined, lines: LineCounter) {
    this.doc = doc;
    this.lines = lines;
  }

  positionOf(path: Path): { line?: number; column?: number } {
    return this.position(path, true);
  }

  private position(path: Path, keyOnly: boolean): { line?: number; column?: number } {
    if (!this.doc) return {};
    let node: unknown = this.doc.contents;
    let keyNode: unknown;
    for (const seg of path) {
      if (isMap(node)) {
        const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && p.key.value === seg);
        if (!pair) break;
        keyNode = pair.key;
        node = pair.value;
      } else if (node && typeof node === 'object' && 'items' in node && Array.isArray(node.items)) {
        keyNode = undefined;
        node = (node.items as unknown[])[seg as number];
      } else break;
    }
    const target = (keyOnly && keyNode ? keyNode : (node ?? keyNode)) as Node | undefined;
    const offset = target?.range?.[0];
    if (offset === undefined) return {};
    const { line, col } = this.lines.linePos(offset);
    return { line, column: col };
  }

  report(severity: Problem['severity'], path: Path, message: string, keyOnly = false): void {
    this.problems.push({ severity, path: formatPath(path), message, ...this.position(path, keyOnly) });
  }

  error(path: Path, message: string, keyOnly = false): void {
    this.report('error', path, message, keyOnly);
  }

  /** A mapping whose keys are all in `allowed`; unknown keys are errors, so typos never silently do nothing. */
  mapping(v: unknown, path: Path, allowed: readonly string[]): Record<string, unknown> | undefined {
    if (v === undefined) return undefined;
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      this.error(path, `must be a mapping, not ${describe(v)}`);
      return undefined;
    }
    const rec = v as Record<string, unknown>;
    for (const key of Object.keys(rec)) {
      if (!allowed.includes(key)) {
        this.error(
          [...path, key],
          `unknown field "${key}"${suggest(key, allowed)}; allowed: ${allowed.join(', ')}`,
          true,
        );
      }
    }
    return rec;
  }

  string(v: unknown, path: Path): string | undefined {
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v === '') {
      this.error(path, `must be a non-empty string, not ${describe(v)}`);
      return undefined;
    }
    return v;
  }

  integer(v: unknown, path: Path, min: number, max: number): number | undefined {
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      this.error(path, `must be a whole number from ${min} to ${max}, not ${describe(v)}`);
      return undefined;
    }
    return v;
  }

  ratio(v: unknown, path: Path, minExclusive: boolean): number | undefined {
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || v > 1 || v < 0 || (minExclusive && v === 0)) {
      this.error(path, `must be a number ${minExclusive ? 'above 0' : 'from 0'} up to 1, not ${describe(v)}`);
      return undefined;
    }
    return v;
  }

  boolean(v: unknown, path: Path): boolean | undefined {
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') {
      this.error(path, `must be true or false, not ${describe(v)}`);
      return undefined;
    }
    return v;
  }

  /** A duration; `allowOff` lets "0s" mean "no bound" for the optional layers. */
  duration(v: unknown, path: Path, allowOff: boolean): number | null | undefined {
    if (v === undefined) return undefined;
    const ms = parseDuration(v);
    if (typeof ms !== 'number') {
      this.error(path, ms.error);
      return undefined;
    }
    if (ms === 0) {
      if (allowOff) return null;
      this.error(path, 'must be longer than 0s');
      return undefined;
    }
    return ms;
  }
}

const TOP_FIELDS = ['apiVersion', 'kind', 'metadata', 'spec'] as const;
const METADATA_FIELDS = ['name', 'namespace', 'labels', 'annotations'] as const;
const SPEC_FIELDS = ['outbound', 'defaults', 'destinations'] as const;
const SETTINGS_FIELDS = ['timeouts', 'retries', 'circuitBreaker'] as const;
const DESTINATION_FIELDS = ['name', 'match', 'critical', ...SETTINGS_FIELDS] as const;
const TIMEOUT_FIELDS = ['connect', 'responseHeaders', 'idle', 'total'] as const;
const RETRY_FIELDS = ['attempts', 'on', 'backoff', 'budget', 'maxBodyBytes', 'unsafeMethods'] as const;
const BREAKER_FIELDS = [
  'enabled',
  'failureRatio',
  'minimumRequests',
  'window',
  'openFor',
  'maxConcurrent',
] as const;
const OUTBOUND: readonly Outbound[] = ['allowAny', 'registryOnly'];
const HOST_RE = /^(\*\.)?([a-z0-9]([a-z0-9-]*[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/;
const IPV6_RE = /^\[?[0-9a-f:.]+\]?$/;
const NAME_RE = /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/;

function checkSettings(c: Checker, raw: Record<string, unknown>, path: Path): SettingsSpec {
  const out: SettingsSpec = {};
  const t = c.mapping(raw.timeouts, [...path, 'timeouts'], TIMEOUT_FIELDS);
  if (t) {
    const p = [...path, 'timeouts'];
    const timeouts: NonNullable<SettingsSpec['timeouts']> = {};
    const connect = c.duration(t.connect, [...p, 'connect'], false);
    if (connect != null) timeouts.connectMs = connect;
    const rh = c.duration(t.responseHeaders, [...p, 'responseHeaders'], true);
    if (rh !== undefined) timeouts.responseHeadersMs = rh;
    const idle = c.duration(t.idle, [...p, 'idle'], true);
    if (idle !== undefined) timeouts.idleMs = idle;
    const total = c.duration(t.total, [...p, 'total'], true);
    if (total !== undefined) timeouts.totalMs = total;
    out.timeouts = timeouts;
  }
  const r = c.mapping(raw.retries, [...path, 'retries'], RETRY_FIELDS);
  if (r) {
    const p = [...path, 'retries'];
    const retries: NonNullable<SettingsSpec['retries']> = {};
    const attempts = c.integer(r.attempts, [...p, 'attempts'], 0, 10);
    if (attempts !== undefined) retries.attempts = attempts;
    if (r.on !== undefined) {
      if (!Array.isArray(r.on)) c.error([...p, 'on'], `must be a list of conditions, not ${describe(r.on)}`);
      else {
        const on = new Set<NamedRetryCondition>();
        const statuses = new Set<number>();
        r.on.forEach((cond: unknown, i) => {
          const s = typeof cond === 'number' ? String(cond) : cond;
          if (typeof s === 'string' && (NAMED_RETRY_CONDITIONS as readonly string[]).includes(s)) {
            on.add(s as NamedRetryCondition);
          } else if (typeof s === 'string' && /^[1-5]\d\d$/.test(s)) {
            statuses.add(Number(s));
          } else {
            c.error(
              [...p, 'on', i],
              `unknown retry condition ${describe(cond)}${typeof s === 'string' ? suggest(s, NAMED_RETRY_CONDITIONS) : ''}; use ${NAMED_RETRY_CONDITIONS.join(', ')} or an HTTP status code such as "503"`,
            );
          }
        });
        retries.on = on;
        retries.statuses = statuses;
      }
    }
    const b = c.mapping(r.backoff, [...p, 'backoff'], ['base', 'max']);
    if (b) {
      const base = c.duration(b.base, [...p, 'backoff', 'base'], false);
      const max = c.duration(b.max, [...p, 'backoff', 'max'], false);
      retries.backoff = {};
      if (base != null) retries.backoff.baseMs = base;
      if (max != null) retries.backoff.maxMs = max;
      if (base != null && max != null && max < base) {
        c.error([...p, 'backoff', 'max'], `must not be shorter than backoff.base (${String(b.base)})`);
      }
    }
    const bud = c.mapping(r.budget, [...p, 'budget'], ['ratio', 'minPerSecond']);
    if (bud) {
      retries.budget = {};
      const ratio = c.ratio(bud.ratio, [...p, 'budget', 'ratio'], false);
      if (ratio !== undefined) retries.budget.ratio = ratio;
      const min = c.integer(bud.minPerSecond, [...p, 'budget', 'minPerSecond'], 0, 100_000);
      if (min !== undefined) retries.budget.minPerSecond = min;
    }
    const maxBody = c.integer(r.maxBodyBytes, [...p, 'maxBodyBytes'], 0, 16 * 1024 * 1024);
    if (maxBody !== undefined) retries.maxBodyBytes = maxBody;
    const unsafe = c.boolean(r.unsafeMethods, [...p, 'unsafeMethods']);
    if (unsafe !== undefined) retries.unsafeMethods = unsafe;
    out.retries = retries;
  }
  const cb = c.mapping(raw.circuitBreaker, [...path, 'circuitBreaker'], BREAKER_FIELDS);
  if (cb) {
    const p = [...path, 'circuitBreaker'];
    const breaker: NonNullable<SettingsSpec['circuitBreaker']> = {};
    const enabled = c.boolean(cb.enabled, [...p, 'enabled']);
    if (enabled !== undefined) breaker.enabled = enabled;
    const ratio = c.ratio(cb.failureRatio, [...p, 'failureRatio'], true);
    if (ratio !== undefined) breaker.failureRatio = ratio;
    const min = c.integer(cb.minimumRequests, [...p, 'minimumRequests'], 1, 1_000_000);
    if (min !== undefined) breaker.minimumRequests = min;
    const window = c.duration(cb.window, [...p, 'window'], false);
    if (window != null) {
      if (window < 100) c.error([...p, 'window'], 'must be at least 100ms');
      else breaker.windowMs = window;
    }
    const openFor = c.duration(cb.openFor, [...p, 'openFor'], false);
    if (openFor != null) breaker.openForMs = openFor;
    const maxc = c.integer(cb.maxConcurrent, [...p, 'maxConcurrent'], 1, 1_000_000);
    if (maxc !== undefined) breaker.maxConcurrent = maxc;
    out.circuitBreaker = breaker;
  }
  return out;
}

function checkMatch(c: Checker, v: unknown, path: Path): HostMatch | undefined {
  const m = c.mapping(v, path, ['host', 'port']);
  if (v === undefined) c.error(path, 'is required: say which host (and optionally port) this destination is');
  if (!m) return undefined;
  const host = c.string(m.host, [...path, 'host']);
  if (m.host === undefined) c.error([...path, 'host'], 'is required');
  const port = m.port === undefined ? null : c.integer(m.port, [...path, 'port'], 1, 65535);
  if (host === undefined || port === undefined) return undefined;
  const lower = host.toLowerCase().replace(/\.$/, '');
  if (!HOST_RE.test(lower) && !IPV6_RE.test(lower)) {
    c.error(
      [...path, 'host'],
      `"${host}" is not a host name; use a DNS name, an IP address, or "*.suffix" to match a whole domain`,
    );
    return undefined;
  }
  return { host: lower.replace(/^\[(.*)\]$/, '$1'), port };
}

function parsePath(path: string): Path {
  const out: Path = [];
  for (const m of path.matchAll(/([^.[\]]+)|\[(\d+)\]/g))
    out.push(m[2] !== undefined ? Number(m[2]) : (m[1] ?? ''));
  return out;
}

/** Adds line and column to problems found after validation (contradiction warnings), from the source text. */
export function locate(text: string, problems: Problem[]): Problem[] {
  const lines = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lines });
  const doc = Array.isArray(docs) ? docs.find((d) => d.contents !== null) : undefined;
  if (!doc) return problems;
  const c = new Checker(doc, lines);
  return problems.map((p) => (p.line !== undefined ? p : { ...p, ...c.positionOf(parsePath(p.path)) }));
}

/** Validates an already-parsed policy object; `c` carries positions when the source text is known. */
function checkPolicy(c: Checker, root: unknown): PolicySpec | undefined {
  const top = c.mapping(root, [], TOP_FIELDS);
  if (!top) return undefined;
  if (top.apiVersion !== API_VERSION) {
    c.error(['apiVersion'], `must be "${API_VERSION}", not ${describe(top.apiVersion)}`);
  }
  if (top.kind !== KIND) c.error(['kind'], `must be "${KIND}", not ${describe(top.kind)}`);
  const meta = c.mapping(top.metadata, ['metadata'], METADATA_FIELDS);
  const name = meta ? (c.string(meta.name, ['metadata', 'name']) ?? 'unnamed') : 'unnamed';
  if (top.spec === undefined) {
    c.error(['spec'], 'is required');
    return undefined;
  }
  const spec = c.mapping(top.spec, ['spec'], SPEC_FIELDS);
  if (!spec) return undefined;
  const out: PolicySpec = { name, destinations: [] };
  if (spec.outbound !== undefined) {
    if (typeof spec.outbound === 'string' && (OUTBOUND as readonly string[]).includes(spec.outbound)) {
      out.outbound = spec.outbound as Outbound;
    } else
      c.error(['spec', 'outbound'], `must be one of ${OUTBOUND.join(', ')}, not ${describe(spec.outbound)}`);
  }
  const defaults = c.mapping(spec.defaults, ['spec', 'defaults'], SETTINGS_FIELDS);
  if (defaults) out.defaults = checkSettings(c, defaults, ['spec', 'defaults']);
  if (spec.destinations !== undefined && spec.destinations !== null) {
    if (!Array.isArray(spec.destinations)) {
      c.error(['spec', 'destinations'], `must be a list, not ${describe(spec.destinations)}`);
    } else {
      const names = new Map<string, number>();
      const matches = new Map<string, number>();
      spec.destinations.forEach((d: unknown, i) => {
        const path = ['spec', 'destinations', i];
        const raw = c.mapping(d, path, DESTINATION_FIELDS);
        if (!raw) return;
        const dname = c.string(raw.name, [...path, 'name']);
        if (raw.name === undefined) c.error([...path, 'name'], 'is required');
        else if (dname !== undefined && !NAME_RE.test(dname)) {
          c.error([...path, 'name'], `"${dname}" must be lower-case letters, digits, "-" and "."`);
        }
        const match = checkMatch(c, raw.match, [...path, 'match']);
        const critical = c.boolean(raw.critical, [...path, 'critical']);
        const settings = checkSettings(c, raw, path);
        if (dname !== undefined) {
          const prev = names.get(dname);
          if (prev !== undefined)
            c.error([...path, 'name'], `"${dname}" is already used by destinations[${prev}]`);
          names.set(dname, i);
        }
        if (match) {
          const key = `${match.host}:${match.port ?? '*'}`;
          const prev = matches.get(key);
          if (prev !== undefined)
            c.error([...path, 'match'], `matches the same host and port as destinations[${prev}]`);
          matches.set(key, i);
        }
        if (dname === undefined || !match) return;
        const dest: DestinationSpec = { name: dname, match, ...settings };
        if (critical !== undefined) dest.critical = critical;
        out.destinations.push(dest);
      });
    }
  }
  return out;
}

/** Validates a policy already parsed into plain data (e.g. from a ConfigMap that was parsed elsewhere). */
export function validatePolicyObject(root: unknown): ParseResult {
  const c = new Checker(undefined, new LineCounter());
  const spec = checkPolicy(c, root);
  return finish(c, spec);
}

/** Parses and validates policy YAML text. */
export function parsePolicy(text: string): ParseResult {
  const lines = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  const c0 = new Checker(undefined, lines);
  if (!Array.isArray(docs)) {
    c0.error([], 'is empty: expected one TrafficPolicy document');
    return { ok: false, problems: c0.problems };
  }
  const real = docs.filter((d) => d.contents !== null || d.errors.length > 0);
  if (real.length !== 1) {
    c0.error([], `must hold exactly one YAML document, found ${real.length}`);
    return { ok: false, problems: c0.problems };
  }
  const doc = real[0] as Document;
  if (doc.errors.length > 0) {
    return {
      ok: false,
      problems: doc.errors.map((e) => {
        const pos = e.linePos?.[0] ?? lines.linePos(e.pos[0]);
        return {
          severity: 'error' as const,
          path: '(yaml)',
          message: e.message.split('\n')[0] ?? e.message,
          ...(pos ? { line: pos.line, column: pos.col } : {}),
        };
      }),
    };
  }
  const c = new Checker(doc, lines);
  const spec = checkPolicy(c, doc.toJS({ maxAliasCount: 100 }));
  return finish(c, spec);
}

function finish(c: Checker, spec: PolicySpec | undefined): ParseResult {
  const errors = c.problems.filter((p) => p.severity === 'error');
  if (errors.length > 0 || !spec) return { ok: false, problems: c.problems };
  return { ok: true, spec, warnings: c.problems.filter((p) => p.severity === 'warning') };
}
