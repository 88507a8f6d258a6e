// The bench's upstream: one fixed response per path from a pre-built buffer, so every arm pays the same tiny, constant upstream cost.
//
// It speaks just enough HTTP/1.1 for bodiless GETs on keep-alive connections (what every arm sends):
// it finds each request head's end, picks the body by path, and writes pre-encoded bytes. Anything
// else is answered 400 and the connection closed, so a mistake in an arm shows up as errors, not
// as silently wrong numbers.

import { createServer, type AddressInfo, type Socket } from 'node:net';

export const BODIES: Readonly<Record<string, number>> = { '/small': 16, '/1k': 1024 };

function response(bytes: number): Buffer {
  const body = Buffer.alloc(bytes, 'x');
  body.write('tether-bench\n');
  const head = `HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${bytes}\r\nkeep-alive: timeout=60\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), body.subarray(0, bytes)]);
}

const RESPONSES = new Map(Object.entries(BODIES).map(([path, n]) => [path, response(n)]));
const BAD = Buffer.from(
  'HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n',
  'latin1',
);
/** A request head larger than this is not something an arm sends: treat it as a protocol error. */
const MAX_HEAD = 16 * 1024;

function serve(socket: Socket): void {
  socket.setNoDelay(true);
  let pending = '';
  socket.on('data', (chunk: Buffer) => {
    pending += chunk.toString('latin1');
    let end: number;
    const out: Buffer[] = [];
    while ((end = pending.indexOf('\r\n\r\n')) !== -1) {
      const head = pending.slice(0, end);
      pending = pending.slice(end + 4);
      const sp = head.indexOf(' ', 4);
      const res = head.startsWith('GET ') && sp !== -1 ? RESPONSES.get(head.slice(4, sp)) : undefined;
      // A content-length or chunked body would be misread as the next request head.
      if (!res || /\r\n(content-length:\s*[1-9]|transfer-encoding:)/i.test(head)) {
        socket.end(BAD);
        return;
      }
      out.push(res);
    }
    if (pending.length > MAX_HEAD) {
      socket.end(BAD);
      return;
    }
    if (out.length === 1) socket.write(out[0]!);
    else if (out.length > 1) socket.write(Buffer.concat(out));
  });
  socket.on('error', () => undefined);
}

// Port 0 by default: the kernel picks a free port and this process names it on stdout, so no
// other process can take it between a bench's choice and the bind.
const port = Number(process.argv[2] ?? 0);
if (!Number.isInteger(port) || port < 0) {
  process.stderr.write('usage: node bench/upstream.ts [PORT]\n');
  process.exit(64);
}
const server = createServer({ noDelay: true }, serve);
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`);
});
process.once('SIGTERM', () => process.exit(0));
