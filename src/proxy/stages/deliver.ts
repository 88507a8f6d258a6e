// Stage 6: streams the chosen response to the app; idle and deadline keep running, and a failure after headers aborts the app's stream.

import { pipeline } from 'node:stream';
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
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    const fail = (err: TetherError): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      up.idle.stop();
      // Destroy both ends: the upstream socket must not outlive the exchange (http-party/node-http-proxy#1559).
      up.response.destroy();
      up.request.destroy();
      reject(err);
    };
    const onAbort = (): void => fail(signal.reason as TetherError);
    signal.addEventListener('abort', onAbort, { once: true });
    up.setIdleHandler(fail);
    up.response.on('data', (chunk: Buffer) => {
      record.bytesIn += chunk.length;
      up.idle.touch();
    });
    // Registered before pipeline's own listeners: when the upstream breaks mid-body, pipeline
    // destroys the app's side and our close handler would otherwise blame the app.
    up.response.once('error', (err) => fail(classifyUpstreamError(err, authority, 'response-body')));
    pipeline(up.response, res, (err) => {
      if (settled) return;
      if (!err) {
        settled = true;
        signal.removeEventListener('abort', onAbort);
        up.idle.stop();
        resolve();
        return;
      }
      if (signal.aborted) return fail(signal.reason as TetherError);
      if (res.destroyed && !up.response.destroyed) {
        return fail(
          new TetherError('client_closed', 'the app closed the connection during the response', {
            destination: authority,
          }),
        );
      }
      fail(classifyUpstreamError(err, authority, 'response-body'));
    });
  });
}
