// Turns the errors Node's net/http layers throw into Tether's words, with the upstream and phase in the message.

import { TetherError, type Phase } from './words.ts';

const DNS_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NONAME', 'EAI_NODATA']);
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE']);
// The kernel reports these when a route is missing; to the user it is "nothing answered the connect".
const UNREACHABLE_CODES = new Set(['EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENETDOWN']);

function codeOf(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string')
    return err.code;
  return undefined;
}

/** Classifies an upstream socket/HTTP error seen during an attempt to `destination`. */
export function classifyUpstreamError(err: unknown, destination: string, phase: Phase): TetherError {
  if (err instanceof TetherError) return err;
  const code = codeOf(err) ?? 'UNKNOWN';
  const detail = err instanceof Error ? err.message : String(err);
  if (code === 'ECONNREFUSED') {
    return new TetherError(
      'connection_refused',
      `upstream ${destination} refused the connection: is anything listening on that port? (${code})`,
      { destination, phase: 'connect', cause: err },
    );
  }
  if (UNREACHABLE_CODES.has(code)) {
    return new TetherError(
      'connection_refused',
      `upstream ${destination} is unreachable from this pod (${code}): check the address and network policy`,
      { destination, phase: 'connect', cause: err },
    );
  }
  if (DNS_CODES.has(code)) {
    return new TetherError(
      'dns_failure',
      `upstream host ${destination} did not resolve (${code}): check the name and the cluster DNS`,
      { destination, phase: 'connect', cause: err },
    );
  }
  if (code === 'ETIMEDOUT' && phase === 'connect') {
    return new TetherError(
      'connect_timeout',
      `upstream ${destination} accepted no connection before the kernel gave up (${code})`,
      { destination, phase, cause: err },
    );
  }
  if (code.startsWith('HPE_')) {
    return new TetherError(
      'protocol_error',
      `upstream ${destination} sent an invalid HTTP/1.1 response (${code}: ${detail})`,
      { destination, phase, cause: err },
    );
  }
  if (RESET_CODES.has(code) || code === 'ETIMEDOUT') {
    return new TetherError(
      'connection_reset',
      `upstream ${destination} closed the connection ${phaseWords(phase)} (${code}: ${detail})`,
      { destination, phase, cause: err },
    );
  }
  return new TetherError(
    'internal_error',
    `unexpected error talking to ${destination}: ${detail} (${code})`,
    {
      destination,
      phase,
      cause: err,
    },
  );
}

function phaseWords(phase: Phase): string {
  switch (phase) {
    case 'before-request':
    case 'connect':
      return 'while connecting';
    case 'request-sent':
      return 'before sending response headers';
    case 'response-headers':
    case 'response-body':
      return 'in the middle of the response body';
  }
}
