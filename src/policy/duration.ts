// Parses policy durations ("250ms", "2s", "1m30s") into milliseconds; bare numbers are refused as ambiguous.

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const WHOLE = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$/;
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;

/** Returns milliseconds, or an error message naming the accepted forms. */
export function parseDuration(input: unknown): number | { error: string } {
  if (typeof input !== 'string') {
    return { error: `must be a duration string such as "250ms", "2s" or "1m30s", not ${describe(input)}` };
  }
  const s = input.trim();
  if (!WHOLE.test(s)) {
    const hint = /^\d+(\.\d+)?$/.test(s) ? ` (add a unit: "${s}ms" or "${s}s")` : '';
    return {
      error: `"${input}" is not a duration; use a number and a unit ms, s, m or h, e.g. "250ms", "1m30s"${hint}`,
    };
  }
  let total = 0;
  for (const m of s.matchAll(PART)) total += Number(m[1]) * (UNIT_MS[m[2] ?? ''] ?? 0);
  if (!Number.isFinite(total) || total > 24 * 3_600_000) return { error: `"${input}" is longer than 24h` };
  return Math.round(total);
}

/** Formats milliseconds back into the policy notation, for messages and /debug/policy. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return `the string "${v}"`;
  return `${typeof v} ${String(JSON.stringify(v))}`;
}
