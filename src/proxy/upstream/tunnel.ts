// Opens the raw TCP connection behind a CONNECT tunnel that carries TLS (or anything not HTTP), under the connect timeout.

import { connect, type Socket } from 'node:net';
import { classifyUpstreamError } from '../../errors/classify.ts';
import { TetherError } from '../../errors/words.ts';
import { formatDuration } from '../../policy/duration.ts';
import type { Clock } from '../../resilience/clock.ts';

export function openTunnel(
  host: string,
  port: number,
  authority: string,
  connectMs: number,
  clock: Clock,
  signal: AbortSignal,
): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    let done = false;
    const finish = (err?: unknown): void => {
      if (done) return;
      done = true;
      timer.cancel();
      signal.removeEventListener('abort', onAbort);
      socket.off('error', onError);
      if (err === undefined) resolve(socket);
      else {
        socket.destroy();
        reject(classifyUpstreamError(err, authority, 'connect'));
      }
    };
    const timer = clock.setTimeout(
      () =>
        finish(
          new TetherError(
            'connect_timeout',
            `upstream ${authority} accepted no connection within ${formatDuration(connectMs)} (timeouts.connect)`,
            {
              destination: authority,
              phase: 'connect',
            },
          ),
        ),
      connectMs,
    );
    const onAbort = (): void => finish(signal.reason);
    const onError = (err: Error): void => finish(err);
    signal.addEventListener('abort', onAbort, { once: true });
    socket.once('error', onError);
    socket.once('connect', () => finish());
  });
}
