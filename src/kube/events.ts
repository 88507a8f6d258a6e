// Reports policy outcomes as Kubernetes Events on the ConfigMap, aggregated across pods and rate-limited so a fleet of sidecars cannot flood the API.

import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from '../telemetry/log.ts';
import type { Clock } from '../resilience/clock.ts';
import type { ConfigMapObject, KubeApi, KubeError } from './client.ts';

export interface EventRecorderOptions {
  clock: Clock;
  log: Logger;
  /** `source.component` / `reportingComponent` of every Event. */
  component: string;
  /** `reportingInstance`: the pod name (a pod's hostname is its name). */
  instance?: string;
  /** The same Event (same ConfigMap, reason and content) is written at most once per this long by one sidecar. */
  repeatMs?: number;
  /** Token bucket bounding all Event writes of one sidecar: burst, and one token per refillMs. */
  burst?: number;
  refillMs?: number;
  requestTimeoutMs?: number;
}

/** Events carry a human message; the API server stores up to 1 KiB of it in events.k8s.io, so keep to that. */
const MAX_MESSAGE = 1024;

/**
 * The Event name is a function of (ConfigMap uid, reason, content hash), never of the pod: every
 * sidecar that sees the same bad edit lands on the same Event and bumps its `count` and
 * `lastTimestamp` (client-go's EventCorrelator aggregates the same way, per process), so
 * `kubectl describe configmap` shows one line "PolicyRejected (x40 over 3s)" rather than forty.
 */
export function eventName(
  cm: Pick<ConfigMapObject, 'name' | 'uid'>,
  reason: string,
  contentHash: string,
): string {
  const h = createHash('sha256').update(`${cm.uid}\n${reason}\n${contentHash}`).digest('hex').slice(0, 16);
  return `${cm.name}.${h}`;
}

export class EventRecorder {
  private readonly api: KubeApi;
  private readonly opts: Required<Omit<EventRecorderOptions, 'log' | 'clock'>> &
    Pick<EventRecorderOptions, 'log' | 'clock'>;
  private readonly lastWritten = new Map<string, number>();
  private tokens: number;
  private refilledAt: number;
  private queue: Promise<void> = Promise.resolve();
  private dropped = 0;
  private closed = false;
  private warnedForbidden = false;

  constructor(api: KubeApi, opts: EventRecorderOptions) {
    this.api = api;
    this.opts = {
      instance: hostname(),
      repeatMs: 10 * 60_000,
      burst: 10,
      refillMs: 6_000,
      requestTimeoutMs: 10_000,
      ...opts,
    };
    this.tokens = this.opts.burst;
    this.refilledAt = opts.clock.now();
  }

  /** Events not written because the rate limit was exhausted. */
  get droppedCount(): number {
    return this.dropped;
  }

  private takeToken(): boolean {
    const now = this.opts.clock.now();
    const earned = Math.floor((now - this.refilledAt) / this.opts.refillMs);
    if (earned > 0) {
      this.tokens = Math.min(this.opts.burst, this.tokens + earned);
      this.refilledAt += earned * this.opts.refillMs;
    }
    if (this.tokens <= 0) return false;
    this.tokens--;
    return true;
  }

  /**
   * Queues an Event about `cm`. `contentHash` identifies what the Event is about (the policy text),
   * so re-observing the same content after a relist does not write again within repeatMs.
   */
  record(
    cm: ConfigMapObject,
    type: 'Normal' | 'Warning',
    reason: string,
    message: string,
    contentHash: string,
  ): void {
    if (this.closed) return;
    const name = eventName(cm, reason, contentHash);
    const now = this.opts.clock.now();
    const last = this.lastWritten.get(name);
    if (last !== undefined && now - last < this.opts.repeatMs) return;
    if (!this.takeToken()) {
      this.dropped++;
      this.opts.log.debug(
        { configMap: `${cm.namespace}/${cm.name}`, reason },
        'Event not written: rate limit reached',
      );
      return;
    }
    this.lastWritten.set(name, now);
    if (this.lastWritten.size > 256) this.lastWritten.delete(this.lastWritten.keys().next().value as string);
    const msg = message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE - 1)}…` : message;
    this.queue = this.queue
      .then(() => this.write(cm, name, type, reason, msg))
      .catch((err: unknown) => this.report(err as KubeError, cm, reason));
  }

  /** Resolves when every queued Event has been written or has failed. */
  flush(): Promise<void> {
    return this.queue;
  }

  close(): void {
    this.closed = true;
  }

  private report(err: KubeError, cm: ConfigMapObject, reason: string): void {
    if (err.status === 403) {
      if (this.warnedForbidden) return;
      this.warnedForbidden = true;
      this.opts.log.warn(
        { err: err.message, namespace: cm.namespace },
        'cannot write Events: the service account lacks create/patch on events here (see manifests/rbac/sidecar-policy-reader.yaml)',
      );
      return;
    }
    this.opts.log.warn(
      { err: err.message, configMap: `${cm.namespace}/${cm.name}`, reason },
      'could not write Event',
    );
  }

  private async write(
    cm: ConfigMapObject,
    name: string,
    type: 'Normal' | 'Warning',
    reason: string,
    message: string,
  ): Promise<void> {
    const at = new Date();
    const timeout = this.opts.requestTimeoutMs;
    try {
      await this.api.createEvent(
        {
          name,
          namespace: cm.namespace,
          involved: {
            kind: 'ConfigMap',
            apiVersion: 'v1',
            namespace: cm.namespace,
            name: cm.name,
            uid: cm.uid,
            resourceVersion: cm.resourceVersion,
          },
          type,
          reason,
          message,
          at,
          component: this.opts.component,
          instance: this.opts.instance,
        },
        timeout,
      );
      return;
    } catch (err) {
      if ((err as KubeError).status !== 409) throw err;
    }
    // Another sidecar created it first. RBAC grants no `get` on events, so read the current count from
    // the answer to a lastTimestamp patch, then bump it only if nobody wrote in between (a `test` on
    // resourceVersion makes the increment atomic); after a few lost races the lastTimestamp bump stands.
    const stamp = new Date(Math.floor(at.getTime() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
    for (let attempt = 0; attempt < 3; attempt++) {
      const seen = await this.api.patchEvent(
        cm.namespace,
        name,
        [{ op: 'replace', path: '/lastTimestamp', value: stamp }],
        timeout,
      );
      try {
        await this.api.patchEvent(
          cm.namespace,
          name,
          [
            { op: 'test', path: '/metadata/resourceVersion', value: seen.resourceVersion },
            { op: 'replace', path: '/count', value: seen.count + 1 },
          ],
          timeout,
        );
        return;
      } catch (err) {
        const status = (err as KubeError).status;
        // A failed `test` is 422 (or 409 when the write raced at the storage layer): someone else bumped it.
        if (status !== 422 && status !== 409) throw err;
      }
    }
  }
}
