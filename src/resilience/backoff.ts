// Full-jitter exponential backoff (AWS architecture blog; Envoy and Linkerd use the same shape).

/** Delay before retry number `retry` (1 = first retry): uniform in [0, min(max, base·2^(retry-1))]. */
export function fullJitterBackoff(
  retry: number,
  baseMs: number,
  maxMs: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, retry - 1));
  return Math.floor(random() * ceiling);
}
