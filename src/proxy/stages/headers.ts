// Hop-by-hop header handling (RFC 9110 §7.6.1) in both directions, and consuming Tether's own x-tether-* request headers.

import type { IncomingHttpHeaders } from 'node:http';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization', // credentials for this proxy, not for the upstream
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding', // Node re-frames each hop itself
  'upgrade',
  // Node already answered "100 Continue" to the app; forwarding Expect would make the upstream send
  // a second interim response that http-proxy does not relay.
  'expect',
]);

function connectionTokens(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
  return (Array.isArray(value) ? value.join(',') : value)
    .split(',')
    .map((t) => t.trim().toLowerCase())
    .filter(Boolean);
}

/** Strips hop-by-hop and x-tether-* headers from the app's request, in place; sets Host to the destination. */
export function prepareRequestHeaders(headers: IncomingHttpHeaders, authorityForHost: string): void {
  for (const t of connectionTokens(headers.connection)) delete headers[t];
  for (const name of Object.keys(headers)) {
    if (HOP_BY_HOP.has(name) || name.startsWith('x-tether-')) delete headers[name];
  }
  headers.host = authorityForHost;
}

/** Copies the upstream's response headers without hop-by-hop ones, keeping order, case and duplicates (Set-Cookie). */
export function responseHeaders(raw: readonly string[]): string[] {
  // Copied only when the upstream names extra hop-by-hop headers in Connection (rare): not per response.
  let drop: ReadonlySet<string> = HOP_BY_HOP;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]?.toLowerCase() !== 'connection') continue;
    const tokens = connectionTokens(raw[i + 1]);
    if (tokens.length > 0) drop = new Set([...drop, ...tokens]);
  }
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    const value = raw[i + 1];
    if (name === undefined || value === undefined || drop.has(name.toLowerCase())) continue;
    out.push(name, value);
  }
  return out;
}
