// A TCP forwarder on 127.0.0.1:0 that a test can open, cut (reset every connection and refuse new ones) or black-hole (silence without closing), to partition one client from a server.

import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';

export type GateMode = 'open' | 'refuse' | 'blackhole';

export interface TcpGate {
  port: number;
  readonly mode: GateMode;
  /** Connections accepted since the gate started, in any mode: how often the client tried. */
  readonly attempts: number;
  /**
   * Forward new connections. Connections caught in a black hole stay silent for good, as flows do
   * after a NAT or conntrack reset: only a client that notices the silence recovers.
   */
  open(): void;
  /** Close every connection, and close new ones as they arrive: the server is unreachable. */
  refuse(): void;
  /** Stop moving bytes on every connection, old and new, without closing any: a silent partition. */
  blackhole(): void;
  close(): Promise<void>;
}

interface Pair {
  client: Socket;
  upstream: Socket | undefined;
}

export async function startTcpGate(target: { host: string; port: number }): Promise<TcpGate> {
  const pairs = new Set<Pair>();
  let attempts = 0;
  let mode: GateMode = 'open';

  const drop = (p: Pair): void => {
    p.client.destroy();
    p.upstream?.destroy();
    pairs.delete(p);
  };
  const silence = (p: Pair): void => {
    p.client.unpipe();
    p.upstream?.unpipe();
    p.client.pause();
    p.upstream?.pause();
  };

  const server = createServer((client) => {
    attempts++;
    const pair: Pair = {
      client,
      upstream: undefined,
    };
    pairs.add(pair);
    client.on('error', () => undefined);
    client.on('close', () => {
      pair.upstream?.destroy();
      pairs.delete(pair);
    });
    if (mode === 'refuse') {
      drop(pair);
      return;
    }
    if (mode === 'blackhole') {
      client.pause();
      return;
    }
    const upstream = connect(target.port, target.host);
    pair.upstream = upstream;
    upstream.on('error', () => client.destroy());
    upstream.on('close', () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');

  return {
    port: (server.address() as AddressInfo).port,
    get mode() {
      return mode;
    },
    get attempts() {
      return attempts;
    },
    open: () => {
      mode = 'open';
    },
    refuse: () => {
      mode = 'refuse';
      for (const p of [...pairs]) drop(p);
    },
    blackhole: () => {
      mode = 'blackhole';
      for (const p of pairs) silence(p);
    },
    close: async () => {
      for (const p of [...pairs]) drop(p);
      server.close();
      await once(server, 'close');
    },
  };
}
