// Reads a small request body into memory once so every try can replay it; larger or unknown-length bodies are streamed once and never retried.

import type { IncomingMessage } from 'node:http';
import { TetherError } from '../../errors/words.ts';
import type { BodyPlan } from './decide.ts';

/** Returns the buffered body, or undefined when the body is to be streamed from the app (or absent). */
export function readReplayableBody(
  req: IncomingMessage,
  plan: BodyPlan,
  signal: AbortSignal,
): Promise<Buffer | undefined> {
  if (plan.kind === 'stream') return Promise.resolve(undefined);
  if (plan.kind === 'none') {
    req.resume(); // drain any zero-length body so 'end' fires and the app's socket can be reused
    return Promise.resolve(Buffer.alloc(0));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      signal.removeEventListener('abort', onAbort);
    };
    const onData = (c: Buffer): void => {
      size += c.length;
      chunks.push(c);
    };
    const onEnd = (): void => {
      cleanup();
      if (size !== plan.bytes) {
        reject(
          new TetherError(
            'bad_request',
            `request body was ${size} bytes but content-length said ${plan.bytes}`,
          ),
        );
      } else resolve(Buffer.concat(chunks, size));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(
        new TetherError(
          'client_closed',
          `the app closed the connection while sending the request body (${err.message})`,
          { cause: err },
        ),
      );
    };
    const onAbort = (): void => {
      cleanup();
      reject(signal.reason as Error);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
