// Accept: the egress listener on loopback — forward-proxy and Host-routed HTTP, and CONNECT tunnels sniffed into HTTP or opaque bytes.

import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Clock } from '../resilience/clock.ts';
import { serveHttp, serveOpaqueTunnel, type StackDeps } from './stack.ts';

/** The CONNECT authority of a tunnel whose socket now carries plaintext HTTP. */
const TUNNEL = Symbol('tether.tunnel');
type TunnelSocket = Socket & { [TUNNEL]?: string };

/**
 * How long to wait for the app's first bytes in a tunnel before treating it as opaque: protocols
 * where the server speaks first (SMTP, MySQL) would otherwise wait forever.
 */
const SNIFF_MS = 1000;

/** TLS records start with 0x16 (handshake); HTTP/1.x requests with an upper-case method token. */
function looksLikeHttp(first: Buffer): boolean {
  return /^[A-Z]{3,10} /.test(first.subarray(0, 11).toString('latin1'));
}

export function createEgressServer(deps: StackDeps, clock: Clock): Server {
  const server = createServer(
    {
      // Streams are bounded by the policy's idle timeout, not by Node's whole-request timer.
      requestTimeout: 0,
      headersTimeout: 60_000,
      // Apps' client pools keep idle connections for long (Go 90s); closing sooner makes them meet resets.
      keepAliveTimeout: 300_000,
    },
    (req: IncomingMessage, res) => {
      void serveHttp(deps, req, res, (req.socket as TunnelSocket)[TUNNEL]);
    },
  );

  server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const authority = req.url ?? '';
    socket.on('error', () => undefined);
    // Answer first: clients send nothing until the tunnel is up, and the first bytes decide how it is served.
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    const decide = (first: Buffer): void => {
      timer.cancel();
      socket.off('data', onData);
      if (looksLikeHttp(first)) {
        socket.pause();
        if (first.length > 0) socket.unshift(first);
        (socket as TunnelSocket)[TUNNEL] = authority;
        server.emit('connection', socket);
        socket.resume();
      } else {
        void serveOpaqueTunnel(deps, socket, authority, first);
      }
    };
    const onData = (chunk: Buffer): void => {
      socket.pause();
      decide(chunk);
    };
    const timer = clock.setTimeout(() => decide(Buffer.alloc(0)), SNIFF_MS);
    if (head.length > 0) {
      decide(head);
      return;
    }
    socket.on('data', onData);
  });

  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable || err.code === 'ECONNRESET') {
      socket.destroy();
      return;
    }
    const body = JSON.stringify({
      error: 'bad_request',
      destination: null,
      message: `malformed HTTP request: ${err.code ?? err.message}`,
      attempts: 0,
    });
    socket.end(
      `HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nx-tether-error: bad_request\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  });
  return server;
}
