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

function parseAuthority(authority: string, defaultPort: number): { host: string; port: number } | undefined {
  if (!authority || /[\s/?#@]/.test(authority)) return undefined;
  let url: URL;
  try {
    url = new URL(`http://${authority}`);
  } catch {
    return undefined;
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '');
  if (!host) return undefined;
  return { host, port: url.port ? Number(url.port) : defaultPort };
}

function make(host: string, port: number, path: string, via: Destination['via']): Destination {
  return { host, port, authority: host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`, path, via };
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
    const a = parseAuthority(tunnel, 80);
    if (!a) throw bad(`CONNECT authority "${tunnel}" is not host:port`);
    const path = url.startsWith('/') || url === '*' ? url : pathOf(url);
    return make(a.host, a.port, path, 'connect-tunnel');
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
    return make(a.host, a.port, pathOf(url), 'absolute-uri');
  }
  if (url.startsWith('/') || url === '*') {
    const hostHeader = req.headers.host;
    if (!hostHeader)
      throw bad(
        'request has neither an absolute URI nor a Host header: Tether cannot tell where it should go',
      );
    const a = parseAuthority(hostHeader, 80);
    if (!a) throw bad(`Host header "${hostHeader}" is not host[:port]`);
    return make(a.host, a.port, url, 'host-header');
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

export const parseConnectAuthority = (authority: string): { host: string; port: number } | undefined =>
  parseAuthority(authority, 443);
