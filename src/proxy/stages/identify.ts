// Stage 1: works out which upstream the app means — from the absolute-form URI, the CONNECT authority of the tunnel, or the Host header.

import type { IncomingMessage } from 'node:http';
import { TetherError } from '../../errors/words.ts';

export interface Destination {
  /** Lower-case, IPv6 without brackets: the key the policy matches on. */
  host: string;
  port: number;
  /** host:port as users write it (IPv6 in brackets). */
  authority: string;
  /** The request-target to send upstream: path and query, untouched. */
  path: string;
  via: 'absolute-uri' | 'host-header' | 'connect-tunnel';
}

type Authority = { host: string; port: number; authority: string };

/**
 * Parsed authorities, per default port: an app talks to a handful of hosts, and URL parsing on
 * every request was the largest cost of this stage. Bounded: a map is cleared when full.
 */
const parsed = new Map<number, Map<string, Authority | null>>();
const PARSED_MAX = 1024;

function parseAuthority(authority: string, defaultPort: number): Authority | undefined {
  let cache = parsed.get(defaultPort);
  if (!cache) parsed.set(defaultPort, (cache = new Map<string, Authority | null>()));
  let a = cache.get(authority);
  if (a === undefined) {
    a = parseUncached(authority, defaultPort) ?? null;
    if (cache.size >= PARSED_MAX) cache.clear();
    cache.set(authority, a);
  }
  return a ?? undefined;
}

function parseUncached(authority: string, defaultPort: number): Authority | undefined {
  if (!authority || /[\s/?#@]/.test(authority)) return undefined;
  let url: URL;
  try {
    url = new URL(`http://${authority}`);
  } catch {
    return undefined;
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '');
  if (!host) return undefined;
  const port = url.port ? Number(url.port) : defaultPort;
  return { host, port, authority: host.includes(':') ? `[${host}]:${port}` : `${host}:${port}` };
}

function make(a: Authority, path: string, via: Destination['via']): Destination {
  return { host: a.host, port: a.port, authority: a.authority, path, via };
}

function bad(message: string): TetherError {
  return new TetherError('bad_request', message);
}

/**
 * `tunnel` is the authority of the CONNECT that carried this request, if any: Node's fetch sends
 * even http:// URLs through CONNECT, and the tunnel's target is where the app meant to go.
 */
export function identify(req: IncomingMessage, tunnel: string | undefined): Destination {
  const url = req.url ?? '';
  if (tunnel !== undefined) {
    const a = tunnelTarget(tunnel);
    const path = url.startsWith('/') || url === '*' ? url : pathOf(url);
    return make(a, path, 'connect-tunnel');
  }
  if (/^https?:\/\//i.test(url)) {
    if (/^https:/i.test(url)) {
      throw bad(
        `absolute-form https:// requests cannot be proxied in plaintext; send CONNECT ${hostOf(url)}:443 (what HTTPS_PROXY clients do)`,
      );
    }
    const rest = url.slice('http://'.length);
    const slash = rest.search(/[/?]/);
    const authority = slash === -1 ? rest : rest.slice(0, slash);
    const a = parseAuthority(authority, 80);
    if (!a) throw bad(`request URI "${url}" names no usable host`);
    return make(a, pathOf(url), 'absolute-uri');
  }
  if (url.startsWith('/') || url === '*') {
    const hostHeader = req.headers.host;
    if (!hostHeader)
      throw bad(
        'request has neither an absolute URI nor a Host header: Tether cannot tell where it should go',
      );
    const a = parseAuthority(hostHeader, 80);
    if (!a) throw bad(`Host header "${hostHeader}" is not host[:port]`);
    return make(a, url, 'host-header');
  }
  throw bad(`request-target "${url.slice(0, 100)}" is neither an absolute http:// URI nor a path`);
}

function pathOf(absolute: string): string {
  const afterScheme = absolute.replace(/^https?:\/\//i, '');
  const i = afterScheme.search(/[/?]/);
  if (i === -1) return '/';
  const p = afterScheme.slice(i);
  return p.startsWith('?') ? `/${p}` : p;
}

function hostOf(absolute: string): string {
  return absolute.replace(/^https?:\/\//i, '').split(/[/?:]/)[0] ?? '';
}

/** The target of a CONNECT: authority-form, so the port is required (RFC 9110 §9.3.6). */
export function tunnelTarget(authority: string): Authority {
  const a = /:\d+$/.test(authority) ? parseAuthority(authority, 0) : undefined;
  if (!a || a.port < 1 || a.port > 65535) throw bad(`CONNECT target "${authority}" is not host:port`);
  return a;
}
