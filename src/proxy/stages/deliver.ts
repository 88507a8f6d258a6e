// Stage 6: streams the chosen response to the app; idle and deadline keep running, and a failure after headers aborts the app's stream.

import type { ServerResponse } from 'node:http';
import { classifyUpstreamError } from '../../errors/classify.ts';
import { ATTEMPTS_HEADER } from '../../errors/respond.ts';
import { TetherError } from '../../errors/words.ts';
import type { RequestRecord } from '../observer.ts';
import type { UpstreamResponse } from '../upstream/forward.ts';
import { responseHeaders } from './headers.ts';

export function deliver(
  res: ServerResponse,
  up: UpstreamResponse,
  record: RequestRecord,
  authority: string,
  signal: AbortSignal,
): Promise<void> {
  const status = up.response.statusCode ?? 502;
  const headers = responseHeaders(up.response.rawHeaders);
  if (record.attempts > 1) headers.push(ATTEMPTS_HEADER, String(record.attempts));
  res.writeHead(status, up.response.statusMessage, headers);
  record.status = status;
  const src = up.response;
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    const fail = (err: TetherError): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      up.idle.stop();
      src.unpipe(res);
      // Destroy both ends: the upstream socket must not outlive the exchange (http-party/node-http-proxy#1559).
      src.destroy();
      up.request.destroy();
      reject(err);
    };
    const onAbort = (): void => fail(signal.reason as TetherError);
    signal.addEventListener('abort', onAbort, { once: true });
    up.setIdleHandler(fail);
    src.on('data', (chunk: Buffer) => {
      record.bytesIn += chunk.length;
      up.idle.touch();
    });
    // Plain pipe and events rather than stream.pipeline: pipeline builds an AbortController per
    // call and aborts it when done, and that DOMException (with its stack trace) plus the
    // end-of-stream bookkeeping was ~8% of the proxy's CPU (bench/profile.ts, docs/adr).
    src.once('error', (err) => fail(classifyUpstreamError(err, authority, 'response-body')));
    src.once('close', () => {
      // Node reports a mid-body upstream close as an 'error' first; this catches any close without one.
      if (!src.readableEnded) fail(classifyUpstreamError(prematureClose(), authority, 'response-body'));
    });
    res.once('finish', () => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      up.idle.stop();
      resolve();
    });
    const appGone = (): void => {
      if (res.writableFinished) return;
      if (signal.aborted) return fail(signal.reason as TetherError);
      fail(
        new TetherError('client_closed', 'the app closed the connection during the response', {
          destination: authority,
        }),
      );
    };
    // An error writing to the app ends in its 'close'; the listener also keeps pipe() from rethrowing it.
    res.on('error', () => undefined);
    res.once('close', appGone);
    src.pipe(res);
  });
}

function prematureClose(): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error('upstream response closed before its end');
  err.code = 'ERR_STREAM_PREMATURE_CLOSE';
  return err;
}
