// Owns tether-injector's HTTPS listener: the webhook paths, health endpoints, body limits and certificate reload.

import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { HostPort } from '../config/settings.ts';
import type { Logger } from '../telemetry/log.ts';
import type { InjectOptions } from './options.ts';
import { BadReview, review, reviewResponse, type Endpoint } from './review.ts';

/** The paths the MutatingWebhookConfiguration's entries call (chart: templates/webhook.yaml). */
export const WEBHOOK_PATHS: Readonly<Record<string, Endpoint>> = {
  '/mutate/pods': { what: 'pods', scope: 'pod' },
  '/mutate/pods/namespace-enabled': { what: 'pods', scope: 'namespace' },
  '/mutate/workloads': { what: 'workloads' },
};

/** The API server caps AdmissionReview bodies well below this (etcd's 1.5 MiB object limit, twice for UPDATE). */
const MAX_BODY_BYTES = 8 * 1024 * 1024;

export interface InjectorServerOptions {
  listen: HostPort;
  certFile: string;
  keyFile: string;
  /** How often the certificate files are re-read (cert-manager and Secret mounts rotate them in place). */
  certReloadMs: number;
  inject: InjectOptions;
  log: Logger;
}

export interface InjectorServer {
  address: AddressInfo;
  /** Re-reads the certificate now; true when it changed. */
  reloadCertificate(): boolean;
  close(): Promise<void>;
}

export class InjectorStartupError extends Error {}

function readPair(certFile: string, keyFile: string): { cert: Buffer; key: Buffer } {
  return { cert: readFileSync(certFile), key: readFileSync(keyFile) };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) });
  res.end(payload);
}

function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        resolve(undefined);
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export async function startInjectorServer(o: InjectorServerOptions): Promise<InjectorServer> {
  const log = o.log;
  let pair: { cert: Buffer; key: Buffer };
  try {
    pair = readPair(o.certFile, o.keyFile);
  } catch (err) {
    throw new InjectorStartupError(`cannot read the serving certificate: ${(err as Error).message}`);
  }

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (req.method === 'GET' && (path === '/livez' || path === '/readyz'))
      return send(res, 200, { ok: true });
    const endpoint = WEBHOOK_PATHS[path];
    if (!endpoint)
      return send(res, 404, { error: `no endpoint ${path}`, endpoints: Object.keys(WEBHOOK_PATHS) });
    if (req.method !== 'POST') return send(res, 405, { error: `use POST for ${path}` });
    const raw = await readBody(req);
    if (raw === undefined)
      return send(res, 413, { error: `AdmissionReview larger than ${MAX_BODY_BYTES} bytes` });
    let body: unknown;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {
      return send(res, 400, { error: 'body is not JSON' });
    }
    try {
      const r = review(body, endpoint, o.inject);
      const level = r.outcome.action === 'skipped' || r.outcome.action === 'unchanged' ? 'debug' : 'info';
      log[level]({ path, ...r.outcome, uid: r.response.uid }, `admission ${r.outcome.action}`);
      send(res, 200, reviewResponse(r.response));
    } catch (err) {
      if (!(err instanceof BadReview)) throw err;
      log.warn({ path, error: err.message }, 'malformed AdmissionReview');
      send(res, 400, { error: err.message });
    }
  };

  const server: Server = createServer({ ...pair, minVersion: 'TLSv1.2' }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.error({ err }, 'admission handler failed');
      if (!res.headersSent) send(res, 500, { error: String(err) });
      else res.destroy();
    });
  });
  // The API server waits at most timeoutSeconds (<= 30 s); a stuck client must not hold a socket longer.
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  server.on('tlsClientError', (err) => log.debug({ err: err.message }, 'TLS handshake failed'));

  const reloadCertificate = (): boolean => {
    let next: { cert: Buffer; key: Buffer };
    try {
      next = readPair(o.certFile, o.keyFile);
    } catch (err) {
      log.warn(
        { err: (err as Error).message },
        'cannot re-read the serving certificate; keeping the current one',
      );
      return false;
    }
    if (next.cert.equals(pair.cert) && next.key.equals(pair.key)) return false;
    try {
      server.setSecureContext({ ...next, minVersion: 'TLSv1.2' });
    } catch (err) {
      // A half-written rotation (new cert, old key): try again on the next tick.
      log.warn(
        { err: (err as Error).message },
        'new serving certificate does not load yet; keeping the current one',
      );
      return false;
    }
    pair = next;
    log.info({ certFile: o.certFile }, 'serving certificate reloaded');
    return true;
  };
  const timer = setInterval(reloadCertificate, o.certReloadMs);
  timer.unref();

  server.listen(o.listen.port, o.listen.host);
  try {
    await once(server, 'listening');
  } catch (err) {
    clearInterval(timer);
    throw new InjectorStartupError(
      `cannot listen on ${o.listen.host}:${o.listen.port}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
    );
  }
  const address = server.address() as AddressInfo;
  log.info(
    { address: `${address.address}:${address.port}`, paths: Object.keys(WEBHOOK_PATHS) },
    'tether-injector listening',
  );

  let closing: Promise<void> | undefined;
  return {
    address,
    reloadCertificate,
    close: () => {
      closing ??= (async () => {
        clearInterval(timer);
        const closed = once(server, 'close');
        server.close();
        server.closeIdleConnections();
        // In-flight reviews finish; the API server's keep-alive sockets must not hold shutdown open.
        const force = setTimeout(() => server.closeAllConnections(), 5_000);
        await closed;
        clearTimeout(force);
      })();
      return closing;
    },
  };
}
