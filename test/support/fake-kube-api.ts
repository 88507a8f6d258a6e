// A scriptable stand-in for kube-apiserver on 127.0.0.1:0 (plain HTTP): serves ConfigMap lists, streams watch events on demand, records Event writes.

import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface FakeConfigMap {
  namespace: string;
  name: string;
  uid?: string;
  resourceVersion: string;
  data: Record<string, string>;
}

export interface RecordedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  body: string;
  contentType: string | undefined;
}

/** An open watch: the test pushes events into it, or ends it. */
export interface OpenWatch {
  namespace: string;
  name: string;
  resourceVersion: string;
  send(type: string, object: unknown): void;
  end(): void;
  /** Destroys the socket without a clean end, like a dying server. */
  reset(): void;
  readonly closed: boolean;
}

export type WatchBehaviour = (w: OpenWatch, req: IncomingMessage, res: ServerResponse) => void;

export interface FakeKubeApi {
  port: number;
  kubeconfigPath: string;
  requests: RecordedRequest[];
  /** Current objects by "ns/name"; a missing key means the ConfigMap does not exist. */
  objects: Map<string, FakeConfigMap>;
  watches: OpenWatch[];
  /** How each new watch request is answered; default: 200, stream stays open and silent. */
  onWatch: WatchBehaviour;
  /** How each list is answered; returning false falls through to the normal list. */
  onList: (req: IncomingMessage, res: ServerResponse) => boolean;
  /** How Event writes are answered: status and body; default 201 echoing the body. */
  onEvent: (r: RecordedRequest) => { status: number; body: unknown };
  /** Every accepted connection (for counting reconnect attempts). */
  connections: number;
  /** Creates, updates or deletes a ConfigMap; open watches hear of it unless `quiet` (a change the watch missed). */
  setConfigMap(
    cm: FakeConfigMap | { namespace: string; name: string; deleted: true },
    opts?: { quiet?: boolean },
  ): void;
  lists(ns?: string): RecordedRequest[];
  watchRequests(ns?: string): RecordedRequest[];
  close(): Promise<void>;
}

export function configMapJson(cm: FakeConfigMap): unknown {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      namespace: cm.namespace,
      name: cm.name,
      uid: cm.uid ?? `uid-${cm.namespace}-${cm.name}`,
      resourceVersion: cm.resourceVersion,
    },
    data: cm.data,
  };
}

export function statusJson(code: number, reason: string, message: string): unknown {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

export async function startFakeKubeApi(): Promise<FakeKubeApi> {
  const dir = mkdtempSync(join(tmpdir(), 'tether-fake-kube-'));
  const sockets = new Set<Socket>();
  const tombstones = new Map<string, FakeConfigMap>();
  let rv = 100;
  const api: FakeKubeApi = {
    port: 0,
    kubeconfigPath: join(dir, 'kubeconfig'),
    requests: [],
    objects: new Map(),
    watches: [],
    onWatch: () => undefined,
    onList: () => false,
    onEvent: (r) => ({ status: 201, body: JSON.parse(r.body) as unknown }),
    connections: 0,
    setConfigMap: (cm, opts = {}) => {
      const key = `${cm.namespace}/${cm.name}`;
      rv++;
      if ('deleted' in cm) {
        const old = api.objects.get(key);
        api.objects.delete(key);
        if (old) tombstones.set(key, { ...old, resourceVersion: String(rv) });
        if (old && !opts.quiet)
          for (const w of api.watches)
            if (!w.closed && w.namespace === cm.namespace && w.name === cm.name)
              w.send('DELETED', configMapJson({ ...old, resourceVersion: String(rv) }));
        return;
      }
      const had = api.objects.has(key);
      const obj = { ...cm, resourceVersion: String(rv) };
      api.objects.set(key, obj);
      if (!opts.quiet)
        for (const w of api.watches)
          if (!w.closed && w.namespace === cm.namespace && w.name === cm.name)
            w.send(had ? 'MODIFIED' : 'ADDED', configMapJson(obj));
    },
    lists: (ns) =>
      api.requests.filter(
        (r) =>
          r.method === 'GET' &&
          r.query.get('watch') !== 'true' &&
          r.path.endsWith('/configmaps') &&
          (!ns || r.path.includes(`/namespaces/${ns}/`)),
      ),
    watchRequests: (ns) =>
      api.requests.filter(
        (r) => r.query.get('watch') === 'true' && (!ns || r.path.includes(`/namespaces/${ns}/`)),
      ),
    close: async () => {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close');
      rmSync(dir, { recursive: true, force: true });
    },
  };
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://fake');
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const rec: RecordedRequest = {
        method: req.method ?? 'GET',
        path: url.pathname,
        query: url.searchParams,
        body: Buffer.concat(chunks).toString(),
        contentType: req.headers['content-type'],
      };
      api.requests.push(rec);
      const m = /^\/api\/v1\/namespaces\/([^/]+)\/(configmaps|events)(?:\/([^/]+))?$/.exec(url.pathname);
      if (!m) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify(statusJson(404, 'NotFound', `no route ${url.pathname}`)));
        return;
      }
      const [, ns = '', kind] = m;
      if (kind === 'events') {
        const r = api.onEvent(rec);
        res.writeHead(r.status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(r.body));
        return;
      }
      const name = (url.searchParams.get('fieldSelector') ?? '').replace(/^metadata\.name=/, '');
      if (url.searchParams.get('watch') === 'true') {
        let closed = false;
        const w: OpenWatch = {
          namespace: ns,
          name,
          resourceVersion: url.searchParams.get('resourceVersion') ?? '',
          send: (type, object) => {
            if (closed) return;
            if (!res.headersSent)
              res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
            res.write(JSON.stringify({ type, object }) + '\n');
          },
          end: () => {
            if (closed) return;
            closed = true;
            if (!res.headersSent) res.writeHead(200, { 'content-type': 'application/json' });
            res.end();
          },
          reset: () => {
            closed = true;
            req.socket.destroy();
          },
          get closed() {
            return closed;
          },
        };
        res.on('close', () => (closed = true));
        api.watches.push(w);
        api.onWatch(w, req, res);
        // Like the real server: what changed after the requested resourceVersion is replayed first.
        const since = Number(w.resourceVersion);
        const cur = api.objects.get(`${ns}/${name}`);
        const gone = tombstones.get(`${ns}/${name}`);
        if (cur && Number(cur.resourceVersion) > since) w.send('MODIFIED', configMapJson(cur));
        else if (!cur && gone && Number(gone.resourceVersion) > since) w.send('DELETED', configMapJson(gone));
        if (!res.headersSent && !closed) {
          res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
          res.flushHeaders();
        }
        return;
      }
      if (api.onList(req, res)) return;
      const obj = api.objects.get(`${ns}/${name}`);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'ConfigMapList',
          metadata: { resourceVersion: String(rv) },
          items: obj ? [configMapJson(obj)] : [],
        }),
      );
    });
  });
  server.on('connection', (s: Socket) => {
    api.connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  api.port = (server.address() as AddressInfo).port;
  writeFileSync(
    api.kubeconfigPath,
    `apiVersion: v1
kind: Config
clusters: [{ name: fake, cluster: { server: "http://127.0.0.1:${api.port}", insecure-skip-tls-verify: true } }]
users: [{ name: fake, user: { token: fake-token } }]
contexts: [{ name: fake, context: { cluster: fake, user: fake, namespace: app } }]
current-context: fake
`,
  );
  return api;
}
