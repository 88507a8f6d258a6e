// Owns @kubernetes/client-node: loads a kubeconfig (file or in-cluster) and exposes the few API verbs Tether uses, with errors normalised.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  ApiException,
  CoreV1Api,
  KubeConfig,
  Observable,
  Watch,
  type CoreV1Event,
  type ObservableMiddleware,
  type V1ConfigMap,
} from '@kubernetes/client-node';

/** Where the credentials come from: a kubeconfig file (outside a pod) or the pod's mounted service account. */
export type KubeTarget =
  | { kind: 'kubeconfig'; path: string }
  | { kind: 'in-cluster'; host: string; port: number; serviceAccountDir: string };

export interface KubeConnection {
  api: KubeApi;
  /** The API server URL, for logs. */
  server: string;
  /** The namespace the credentials name: the service account's, or the kubeconfig context's. */
  namespace: string | undefined;
}

/** An API failure: `status` is the HTTP status (or the Status object's code inside a watch), absent for network errors. */
export class KubeError extends Error {
  readonly status: number | undefined;
  readonly reason: string | undefined;
  constructor(message: string, status?: number, reason?: string) {
    super(message);
    this.name = 'KubeError';
    this.status = status;
    this.reason = reason;
  }
}

export interface ConfigMapObject {
  namespace: string;
  name: string;
  uid: string;
  resourceVersion: string;
  data: Readonly<Record<string, string>>;
}

export type WatchEvent =
  | { type: 'ADDED' | 'MODIFIED' | 'DELETED'; object: ConfigMapObject }
  | { type: 'BOOKMARK'; resourceVersion: string }
  | { type: 'ERROR'; error: KubeError };

export interface WatchHandle {
  stop(): void;
}

export interface JsonPatchOp {
  op: 'replace' | 'add' | 'test';
  path: string;
  value: unknown;
}

export interface EventObject {
  name: string;
  namespace: string;
  involved: {
    kind: string;
    apiVersion: string;
    namespace: string;
    name: string;
    uid: string;
    resourceVersion: string;
  };
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  at: Date;
  component: string;
  instance: string;
}

/** The verbs Tether needs from the API server, and nothing else (the RBAC role grants exactly these). */
export interface KubeApi {
  /** Lists one ConfigMap by name (a `metadata.name` field selector, so RBAC resourceNames applies). */
  listConfigMap(
    namespace: string,
    name: string,
    timeoutMs: number,
  ): Promise<{ resourceVersion: string; item: ConfigMapObject | undefined }>;
  /**
   * Watches one ConfigMap from `resourceVersion`, with bookmarks. `onOpen` fires once the stream is
   * established; `backstopMs` aborts it after that long without a byte (connect included). `onEnd` is
   * called exactly once: without an error when the server closed the stream (its timeoutSeconds), with
   * one on failure; never after stop().
   */
  watchConfigMap(
    namespace: string,
    name: string,
    opts: { resourceVersion: string; timeoutSeconds: number; backstopMs: number; onOpen?: () => void },
    onEvent: (e: WatchEvent) => void,
    onEnd: (err?: KubeError) => void,
  ): WatchHandle;
  createEvent(e: EventObject, timeoutMs: number): Promise<void>;
  /** JSON-patches an Event; returns its count and resourceVersion after the patch. */
  patchEvent(
    namespace: string,
    name: string,
    ops: JsonPatchOp[],
    timeoutMs: number,
  ): Promise<{ count: number; resourceVersion: string }>;
}

/** Reads the service account's files the way the kubelet mounts them; the token is re-read by client-node as it rotates. */
function inClusterConfig(t: Extract<KubeTarget, { kind: 'in-cluster' }>): {
  kc: KubeConfig;
  namespace: string | undefined;
} {
  const host = t.host.includes(':') ? `[${t.host}]` : t.host;
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [
      {
        name: 'in-cluster',
        server: `https://${host}:${t.port}`,
        caFile: join(t.serviceAccountDir, 'ca.crt'),
        skipTLSVerify: false,
      },
    ],
    users: [
      {
        name: 'service-account',
        authProvider: { name: 'tokenFile', config: { tokenFile: join(t.serviceAccountDir, 'token') } },
      },
    ],
    contexts: [{ name: 'in-cluster', cluster: 'in-cluster', user: 'service-account' }],
    currentContext: 'in-cluster',
  });
  let namespace: string | undefined;
  try {
    namespace = readFileSync(join(t.serviceAccountDir, 'namespace'), 'utf8').trim() || undefined;
  } catch {
    namespace = undefined;
  }
  return { kc, namespace };
}

/** Builds a connection; throws KubeError with a message fit for a start-up failure. */
export function connectKube(target: KubeTarget): KubeConnection {
  let kc: KubeConfig;
  let namespace: string | undefined;
  if (target.kind === 'kubeconfig') {
    kc = new KubeConfig();
    try {
      kc.loadFromFile(target.path);
    } catch (err) {
      throw new KubeError(`cannot load kubeconfig ${target.path}: ${(err as Error).message}`);
    }
    namespace = kc.getContextObject(kc.getCurrentContext())?.namespace;
  } else {
    ({ kc, namespace } = inClusterConfig(target));
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster)
    throw new KubeError(
      `kubeconfig ${target.kind === 'kubeconfig' ? target.path : ''} names no current cluster`,
    );
  return { api: new ClientNodeApi(kc), server: cluster.server, namespace };
}

function statusOf(body: unknown): { message?: string; reason?: string; code?: number } {
  let b = body;
  if (typeof b === 'string') {
    try {
      b = JSON.parse(b);
    } catch {
      return { message: b as string };
    }
  }
  if (b && typeof b === 'object') {
    const s = b as { message?: unknown; reason?: unknown; code?: unknown };
    return {
      ...(typeof s.message === 'string' ? { message: s.message } : {}),
      ...(typeof s.reason === 'string' ? { reason: s.reason } : {}),
      ...(typeof s.code === 'number' ? { code: s.code } : {}),
    };
  }
  return {};
}

/** Maps whatever client-node or undici threw to a KubeError that names the HTTP status or the network error. */
export function toKubeError(err: unknown, what: string): KubeError {
  if (err instanceof KubeError) return err;
  if (err instanceof ApiException) {
    const s = statusOf(err.body);
    return new KubeError(
      `${what}: HTTP ${err.code}${s.reason ? ` ${s.reason}` : ''}${s.message ? `: ${s.message}` : ''}`,
      err.code,
      s.reason,
    );
  }
  const e = err as {
    name?: string;
    message?: string;
    statusCode?: number;
    cause?: { code?: string; message?: string };
  };
  if (typeof e?.statusCode === 'number')
    return new KubeError(`${what}: HTTP ${e.statusCode} ${e.message ?? ''}`.trim(), e.statusCode);
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError')
    return new KubeError(`${what}: no answer in time`);
  const cause = e?.cause?.code ?? e?.cause?.message;
  return new KubeError(`${what}: ${e?.message ?? String(err)}${cause ? ` (${cause})` : ''}`);
}

/** Request options that abort a call after `ms`: client-node has no per-call timeout, and a black-holed API server would hang a call forever. */
function deadline(ms: number): { middleware: ObservableMiddleware[]; middlewareMergeStrategy: 'append' } {
  return {
    middleware: [
      {
        pre: (ctx) => {
          ctx.setSignal(AbortSignal.timeout(ms));
          return new Observable(Promise.resolve(ctx));
        },
        post: (res) => new Observable(Promise.resolve(res)),
      },
    ],
    middlewareMergeStrategy: 'append',
  };
}

function configMapObject(cm: V1ConfigMap, fallbackNs: string): ConfigMapObject {
  return {
    namespace: cm.metadata?.namespace ?? fallbackNs,
    name: cm.metadata?.name ?? '',
    uid: cm.metadata?.uid ?? '',
    resourceVersion: cm.metadata?.resourceVersion ?? '',
    data: { ...cm.data },
  };
}

class ClientNodeApi implements KubeApi {
  private readonly kc: KubeConfig;
  private readonly core: CoreV1Api;

  constructor(kc: KubeConfig) {
    this.kc = kc;
    this.core = kc.makeApiClient(CoreV1Api);
  }

  async listConfigMap(namespace: string, name: string, timeoutMs: number) {
    try {
      const list = await this.core.listNamespacedConfigMap(
        { namespace, fieldSelector: `metadata.name=${name}` },
        deadline(timeoutMs),
      );
      const first = list.items.find((i) => i.metadata?.name === name);
      return {
        resourceVersion: list.metadata?.resourceVersion ?? '',
        item: first ? configMapObject(first, namespace) : undefined,
      };
    } catch (err) {
      throw toKubeError(err, `list ConfigMap ${namespace}/${name}`);
    }
  }

  watchConfigMap(
    namespace: string,
    name: string,
    opts: { resourceVersion: string; timeoutSeconds: number; backstopMs: number; onOpen?: () => void },
    onEvent: (e: WatchEvent) => void,
    onEnd: (err?: KubeError) => void,
  ): WatchHandle {
    const what = `watch ConfigMap ${namespace}/${name}`;
    let stopped = false;
    let ended = false;
    let controller: AbortController | undefined;
    const end = (err?: KubeError): void => {
      if (ended || stopped) return;
      ended = true;
      onEnd(err);
    };
    const watch = new Watch(this.kc);
    // client-node 2.0.1 aborts a watch after 30s without bytes (a private field, no option). The API
    // server sends a bookmark only once a minute, so an idle but healthy watch would be cut every 30s:
    // lengthen it so that the caller's idle timer, which sees parsed events, is the stall detector.
    if (!('requestTimeoutMs' in watch))
      throw new Error(
        '@kubernetes/client-node Watch no longer has requestTimeoutMs; revisit src/kube/client.ts',
      );
    Object.assign(watch, { requestTimeoutMs: opts.backstopMs });
    void watch
      .watch(
        `/api/v1/namespaces/${encodeURIComponent(namespace)}/configmaps`,
        {
          fieldSelector: `metadata.name=${name}`,
          resourceVersion: opts.resourceVersion,
          allowWatchBookmarks: true,
          timeoutSeconds: opts.timeoutSeconds,
        },
        (type: string, obj: unknown) => {
          if (ended || stopped) return;
          if (type === 'BOOKMARK') {
            const rv = (obj as { metadata?: { resourceVersion?: string } })?.metadata?.resourceVersion;
            if (rv) onEvent({ type, resourceVersion: rv });
          } else if (type === 'ERROR') {
            const s = statusOf(obj);
            onEvent({
              type,
              error: new KubeError(
                `${what}: ${s.code ?? ''} ${s.reason ?? ''}: ${s.message ?? 'error event'}`,
                s.code,
                s.reason,
              ),
            });
          } else if (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED') {
            onEvent({ type, object: configMapObject(obj as V1ConfigMap, namespace) });
          }
        },
        (err: unknown) => end(err ? toKubeError(err, what) : undefined),
      )
      .then(
        (c) => {
          controller = c;
          if (stopped) c.abort();
          else if (!ended) opts.onOpen?.();
        },
        (err: unknown) => end(toKubeError(err, what)),
      );
    return {
      stop: () => {
        stopped = true;
        controller?.abort();
      },
    };
  }

  async createEvent(e: EventObject, timeoutMs: number): Promise<void> {
    const at = new Date(Math.floor(e.at.getTime() / 1000) * 1000);
    const body: CoreV1Event = {
      metadata: { name: e.name, namespace: e.namespace },
      involvedObject: e.involved,
      type: e.type,
      reason: e.reason,
      message: e.message,
      count: 1,
      firstTimestamp: at,
      lastTimestamp: at,
      source: { component: e.component, host: e.instance },
      reportingComponent: e.component,
      reportingInstance: e.instance,
    };
    try {
      await this.core.createNamespacedEvent({ namespace: e.namespace, body }, deadline(timeoutMs));
    } catch (err) {
      throw toKubeError(err, `create Event ${e.namespace}/${e.name}`);
    }
  }

  async patchEvent(namespace: string, name: string, ops: JsonPatchOp[], timeoutMs: number) {
    try {
      // client-node sends application/json-patch+json for patches unless told otherwise.
      const ev = await this.core.patchNamespacedEvent({ namespace, name, body: ops }, deadline(timeoutMs));
      return { count: ev.count ?? 1, resourceVersion: ev.metadata.resourceVersion ?? '' };
    } catch (err) {
      throw toKubeError(err, `patch Event ${namespace}/${name}`);
    }
  }
}
