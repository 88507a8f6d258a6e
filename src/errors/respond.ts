// The one place an error becomes an HTTP response: status, x-tether-error header and JSON body.

import type { ServerResponse } from 'node:http';
import { ERROR_WORDS, TetherError, type ErrorWord } from './words.ts';

export const ERROR_HEADER = 'x-tether-error';
export const ATTEMPTS_HEADER = 'x-tether-attempts';

export interface ErrorBody {
  error: ErrorWord;
  destination: string | null;
  message: string;
  attempts: number;
}

/** Normalises anything thrown into a TetherError; a non-TetherError here is a bug and is named as one. */
export function asTetherError(err: unknown, destination?: string): TetherError {
  if (err instanceof TetherError) return err;
  const detail = err instanceof Error ? (err.stack ?? err.message) : String(err);
  return new TetherError('internal_error', `internal error in tether: ${detail}`, {
    destination,
    cause: err,
  });
}

export function statusOf(word: ErrorWord): number {
  return ERROR_WORDS[word].status;
}

/**
 * Writes the error response if nothing has been sent yet; once headers went out the only honest
 * signal left is to abort the downstream stream, so the app sees a truncated body, not a clean end.
 */
export function respondWithError(res: ServerResponse, err: TetherError, attempts: number): void {
  if (res.headersSent) {
    res.destroy(err);
    return;
  }
  if (res.destroyed || err.word === 'client_closed') return;
  const body: ErrorBody = {
    error: err.word,
    destination: err.destination ?? null,
    message: err.message,
    attempts,
  };
  const payload = JSON.stringify(body) + '\n';
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(payload),
    [ERROR_HEADER]: err.word,
  };
  if (attempts > 1) headers[ATTEMPTS_HEADER] = attempts;
  res.writeHead(statusOf(err.word), headers);
  res.end(payload);
}
