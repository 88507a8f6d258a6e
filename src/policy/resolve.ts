// Turns validated policy specs into the effective policy: layers merged, built-in defaults filled in, contradictions warned about, a version computed.

import { createHash } from 'node:crypto';
import { formatDuration } from './duration.ts';
import {
  BUILTIN_DEFAULTS,
  type DestinationRule,
  type DestinationSpec,
  type Outbound,
  type PolicySpec,
  type Settings,
  type SettingsSpec,
} from './schema.ts';
import type { Problem } from './validate.ts';

export interface EffectivePolicy {
  /** Names of the documents it was built from, lowest precedence first. */
  names: string[];
  outbound: Outbound;
  defaults: Settings;
  destinations: DestinationRule[];
  /** Content hash of the effective policy: equal policies have equal versions. */
  version: string;
}

function definedOnly<T extends object>(o: T | undefined): Partial<T> {
  const out: Partial<T> = {};
  if (!o) return out;
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

/** Overlays `top` on `base` field by field, so a layer that sets only `timeouts.connect` keeps the rest. */
export function overlay(base: Settings, top: SettingsSpec | undefined): Settings {
  if (!top) return base;
  const r = top.retries;
  return {
    timeouts: { ...base.timeouts, ...definedOnly(top.timeouts) },
    retries: {
      ...base.retries,
      ...definedOnly(r),
      backoff: { ...base.retries.backoff, ...definedOnly(r?.backoff) },
      budget: { ...base.retries.budget, ...definedOnly(r?.budget) },
    },
    circuitBreaker: { ...base.circuitBreaker, ...definedOnly(top.circuitBreaker) },
  };
}

function mergeSettingsSpecs(
  a: SettingsSpec | undefined,
  b: SettingsSpec | undefined,
): SettingsSpec | undefined {
  if (!a) return b;
  if (!b) return a;
  return {
    timeouts: { ...a.timeouts, ...definedOnly(b.timeouts) },
    retries: {
      ...a.retries,
      ...definedOnly(b.retries),
      backoff: { ...a.retries?.backoff, ...definedOnly(b.retries?.backoff) },
      budget: { ...a.retries?.budget, ...definedOnly(b.retries?.budget) },
    },
    circuitBreaker: { ...a.circuitBreaker, ...definedOnly(b.circuitBreaker) },
  };
}

/**
 * Merges policy documents, lowest precedence first (mesh, then namespace): `defaults` overlay field
 * by field, a destination of the same name is replaced whole by the later document.
 */
export function mergeSpecs(specs: readonly PolicySpec[]): PolicySpec {
  const byName = new Map<string, DestinationSpec>();
  let defaults: SettingsSpec | undefined;
  let outbound: Outbound | undefined;
  for (const s of specs) {
    defaults = mergeSettingsSpecs(defaults, s.defaults);
    if (s.outbound) outbound = s.outbound;
    for (const d of s.destinations) {
      byName.delete(d.name); // keep the later document's order
      byName.set(d.name, d);
    }
  }
  // Two documents may name different destinations that match the same host: the later one wins.
  const byMatch = new Map<string, DestinationSpec>();
  for (const d of byName.values()) byMatch.set(`${d.match.host}:${d.match.port ?? '*'}`, d);
  const merged: PolicySpec = {
    name: specs.map((s) => s.name).join('+'),
    destinations: [...byMatch.values()],
  };
  if (defaults) merged.defaults = defaults;
  if (outbound) merged.outbound = outbound;
  return merged;
}

function canonical(v: unknown): unknown {
  if (v instanceof Set) return [...(v as Set<unknown>)].sort();
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === 'object') {
    return Object.fromEntries(
      Object.entries(v)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, x]) => [k, canonical(x)]),
    );
  }
  return v;
}

/** A stable fingerprint of settings: the breaker of a destination is rebuilt only when this changes. */
export function fingerprint(v: unknown): string {
  return createHash('sha256')
    .update(JSON.stringify(canonical(v)))
    .digest('hex')
    .slice(0, 12);
}

export function resolvePolicy(specs: readonly PolicySpec[]): EffectivePolicy {
  const spec = specs.length === 1 && specs[0] ? specs[0] : mergeSpecs(specs);
  const defaults = overlay(BUILTIN_DEFAULTS, spec.defaults);
  const destinations: DestinationRule[] = spec.destinations.map((d) => ({
    name: d.name,
    match: d.match,
    settings: overlay(defaults, d),
    critical: d.critical ?? false,
  }));
  const body = { outbound: spec.outbound ?? 'allowAny', defaults, destinations };
  return { names: specs.map((s) => s.name), ...body, version: fingerprint(body) };
}

/** Warnings for layers that contradict each other: legal, but probably not what the author meant. */
export function contradictions(policy: EffectivePolicy, spec: PolicySpec): Problem[] {
  const out: Problem[] = [];
  const check = (s: Settings, path: string): void => {
    const t = s.timeouts;
    const warn = (field: string, message: string): void => {
      out.push({ severity: 'warning', path: `${path}.${field}`, message });
    };
    const d = formatDuration;
    if (t.responseHeadersMs !== null && t.connectMs > t.responseHeadersMs) {
      warn(
        'timeouts.connect',
        `connect (${d(t.connectMs)}) is longer than responseHeaders (${d(t.responseHeadersMs)}): a slow connect will be reported as response_timeout, not connect_timeout`,
      );
    }
    if (t.idleMs !== null && t.responseHeadersMs !== null && t.idleMs < t.responseHeadersMs) {
      warn(
        'timeouts.idle',
        `idle (${d(t.idleMs)}) is shorter than responseHeaders (${d(t.responseHeadersMs)}): a slow upstream fails with idle_timeout before response_timeout`,
      );
    }
    if (t.totalMs !== null) {
      const tries = s.retries.attempts + 1;
      const perTry = t.responseHeadersMs ?? t.idleMs;
      if (perTry !== null) {
        const worst = tries * perTry + s.retries.attempts * s.retries.backoff.maxMs;
        if (worst > t.totalMs) {
          warn(
            'timeouts.total',
            `(attempts+1) × responseHeaders + backoff = ${tries} × ${d(perTry)} + ${s.retries.attempts} × ${d(s.retries.backoff.maxMs)} = ${d(worst)} exceeds total (${d(t.totalMs)}): ${s.retries.attempts > 0 ? 'later tries will be cut short by' : 'a slow response ends in'} deadline_exceeded`,
          );
        }
      }
    }
  };
  check(policy.defaults, 'spec.defaults');
  policy.destinations.forEach((dest) => {
    const i = spec.destinations.findIndex((x) => x.name === dest.name);
    check(dest.settings, `spec.destinations[${i}]`);
    const raw = spec.destinations[i];
    if (raw?.retries?.on && dest.settings.retries.attempts === 0) {
      out.push({
        severity: 'warning',
        path: `spec.destinations[${i}].retries.on`,
        message: 'has no effect while retries.attempts is 0',
      });
    }
  });
  return out;
}
