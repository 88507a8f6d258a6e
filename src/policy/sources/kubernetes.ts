// The Kubernetes policy source: watches the mesh and namespace policy ConfigMaps, merges them (namespace wins), swaps the policy atomically; a bad edit keeps the last good one.

import { createHash } from 'node:crypto';
import type { ConfigMapObject, KubeApi } from '../../kube/client.ts';
import type { EventRecorder } from '../../kube/events.ts';
import { ListWatch, type ListWatchState } from '../../kube/listwatch.ts';
import type { Clock, Timer } from '../../resilience/clock.ts';
import type { Logger } from '../../telemetry/log.ts';
import { MESH_POLICY_CONFIGMAP, NAMESPACE_POLICY_CONFIGMAP, POLICY_KEY, policyTextOf } from '../configmap.ts';
import { loadPolicyText } from '../load.ts';
import { resolvePolicy, type EffectivePolicy } from '../resolve.ts';
import type { PolicySpec } from '../schema.ts';
import type { PolicyStore, ReloadFailure } from '../store.ts';
import { formatProblem, type Problem } from '../validate.ts';

export interface KubernetesSourceOptions {
  /** The pod's namespace: `tether-policy` is read here. */
  namespace: string;
  /** `tether-mesh-policy` is read here. */
  meshNamespace: string;
  /** Readiness waits this long for the first sync, then turns true on the fallback policy. */
  graceMs: number;
  /** In force until the first sync, and whenever neither ConfigMap exists. */
  fallback: EffectivePolicy;
  watch: {
    idleMs: number;
    backoffBaseMs: number;
    backoffMaxMs: number;
    watchTimeoutSeconds: number;
    requestTimeoutMs: number;
  };
  clock: Clock;
  random?: () => number;
  /** The API server URL, for /debug/policy. */
  server: string;
}

type Role = 'mesh' | 'namespace';

/** One ConfigMap's contribution: what was last seen, the last good spec from it, and its current rejection. */
interface Doc {
  role: Role;
  namespace: string;
  name: string;
  watch: ListWatch;
  seen: boolean;
  object: ConfigMapObject | undefined;
  /** Hash of what was last processed (the policy text, or the reason there is none); null when absent. */
  contentHash: string | null;
  good: { spec: PolicySpec; resourceVersion: string; contentHash: string } | null;
  failure: ReloadFailure | null;
}

const hash = (s: string): string => createHash('sha256').update(s).digest('hex').slice(0, 16);

export class KubernetesPolicySource {
  private readonly opts: KubernetesSourceOptions;
  private readonly store: PolicyStore;
  private readonly log: Logger;
  private readonly events: EventRecorder | undefined;
  /** Lowest precedence first: the order resolvePolicy() merges in. */
  private readonly docs: [Doc, Doc];
  private synced = false;
  /** The grace period ran out before both ConfigMaps were read: apply what has been read so far. */
  private graceExpired = false;
  private grace: Timer | undefined;

  constructor(
    opts: KubernetesSourceOptions,
    api: KubeApi,
    events: EventRecorder | undefined,
    store: PolicyStore,
    log: Logger,
  ) {
    this.opts = opts;
    this.store = store;
    this.log = log;
    this.events = events;
    const doc = (role: Role, namespace: string, name: string): Doc => {
      const d: Doc = {
        role,
        namespace,
        name,
        seen: false,
        object: undefined,
        contentHash: null,
        good: null,
        failure: null,
        watch: new ListWatch(
          {
            namespace,
            name,
            idleMs: opts.watch.idleMs,
            watchTimeoutSeconds: opts.watch.watchTimeoutSeconds,
            backoff: { baseMs: opts.watch.backoffBaseMs, maxMs: opts.watch.backoffMaxMs },
            requestTimeoutMs: opts.watch.requestTimeoutMs,
            clock: opts.clock,
            ...(opts.random ? { random: opts.random } : {}),
            log,
          },
          api,
          (obj) => this.observe(d, obj),
        ),
      };
      return d;
    };
    this.docs = [
      doc('mesh', opts.meshNamespace, MESH_POLICY_CONFIGMAP),
      doc('namespace', opts.namespace, NAMESPACE_POLICY_CONFIGMAP),
    ];
  }

  private get refs(): string {
    return this.docs.map((d) => `${d.namespace}/${d.name}`).join(' and ');
  }

  /** Puts the fallback policy in force (not ready) and starts watching; never waits for the API. */
  start(): void {
    this.store.apply(
      this.opts.fallback,
      `${this.opts.fallback.names.join('+')} (waiting for the Kubernetes API)`,
    );
    this.store.setPending(`waiting for the first sync of ConfigMaps ${this.refs} from the Kubernetes API`);
    this.store.setDetail(() => this.detail());
    this.grace = this.opts.clock.setTimeout(() => {
      if (this.synced) return;
      this.graceExpired = true;
      this.store.setPending(null);
      this.log.warn(
        {
          graceMs: this.opts.graceMs,
          unread: this.docs.filter((d) => !d.seen).map((d) => `${d.namespace}/${d.name}`),
          watches: this.docs.map((d) => d.watch.state()),
        },
        'no complete sync from the Kubernetes API within the grace period: ready on what was read (or the embedded default); the rest applies as soon as it is read',
      );
      // One ConfigMap may be readable and the other not (RBAC missing in the mesh namespace): use the one we have.
      if (this.docs.some((d) => d.seen)) this.recompute(undefined);
    }, this.opts.graceMs);
    for (const d of this.docs) d.watch.start();
  }

  async stop(): Promise<void> {
    this.grace?.cancel();
    await Promise.all(this.docs.map((d) => d.watch.stop()));
  }

  /** True once both ConfigMaps (or their absence) have been read at least once. */
  get isSynced(): boolean {
    return this.synced;
  }

  detail(): Record<string, unknown> {
    return {
      kind: 'kubernetes',
      server: this.opts.server,
      synced: this.synced,
      configMaps: this.docs.map((d) => {
        const w: ListWatchState = d.watch.state();
        return {
          role: d.role,
          namespace: d.namespace,
          name: d.name,
          state: !d.seen ? 'unknown' : d.failure ? 'rejected' : d.object ? 'applied' : 'absent',
          resourceVersion: d.object?.resourceVersion ?? null,
          inForce: d.good ? { resourceVersion: d.good.resourceVersion, policy: d.good.spec.name } : null,
          error: d.failure ? d.failure.problems.map((p) => formatProblem(p)) : null,
          watch: {
            watching: w.watching,
            lists: w.lists,
            watches: w.watches,
            failures: w.consecutiveFailures,
            lastError: w.lastError,
          },
        };
      }),
    };
  }

  private label(d: Doc): string {
    return `configmap ${d.namespace}/${d.name}${d.object ? `@${d.object.resourceVersion}` : ''}`;
  }

  /** Called by a watcher after every list and watch event: the ConfigMap as it is now, or undefined when absent. */
  private observe(d: Doc, obj: ConfigMapObject | undefined): void {
    const firstRead = !d.seen;
    const text = obj ? policyTextOf(obj.data, obj.name) : undefined;
    const contentHash = text ? hash('text' in text ? text.text : `error:${text.error}`) : null;
    const sameContent = d.seen && contentHash === d.contentHash && obj?.uid === d.object?.uid;
    d.object = obj;
    if (sameContent) {
      // A relist or an edit that left policy.yaml as it was (labels, other keys): nothing to apply or report.
      return;
    }
    d.seen = true;
    d.contentHash = contentHash;
    if (!obj || !text) {
      d.good = null;
      d.failure = null;
      if (this.synced)
        this.log.info(
          { configMap: `${d.namespace}/${d.name}` },
          'policy ConfigMap is absent: no policy from it',
        );
      this.recompute(undefined);
      return;
    }
    const problems: Problem[] | undefined =
      'error' in text
        ? [{ severity: 'error', path: `data["${POLICY_KEY}"]`, message: text.error }]
        : undefined;
    const loaded = problems ? undefined : loadPolicyText((text as { text: string }).text);
    if (problems || !loaded?.ok) {
      const errors = problems ?? (loaded && !loaded.ok ? loaded.problems : []);
      d.failure = this.store.reject(this.label(d), errors);
      const messages = errors.filter((p) => p.severity === 'error').map((p) => formatProblem(p));
      this.log.error(
        { source: this.label(d), problems: errors.map((p) => formatProblem(p, `${d.namespace}/${d.name}`)) },
        'policy rejected; the previous policy stays in force',
      );
      this.events?.record(
        obj,
        'Warning',
        'PolicyRejected',
        `tether-sidecar rejected ${POLICY_KEY}; the previous policy stays in force: ${messages.join('; ')}`,
        contentHash ?? '',
      );
      if (!this.synced) this.recompute(undefined);
      return;
    }
    for (const w of loaded.warnings)
      this.log.warn({ source: this.label(d) }, formatProblem(w, `${d.namespace}/${d.name}`));
    d.good = { spec: loaded.spec, resourceVersion: obj.resourceVersion, contentHash: contentHash ?? '' };
    d.failure = null;
    this.recompute(d);
    // A pod reading its policy at start-up is not news; an edit every pod applies is (one aggregated Event).
    if (firstRead) return;
    const n = loaded.spec.destinations.length;
    const warned = loaded.warnings.length
      ? `, with warnings: ${loaded.warnings.map((w) => `${w.path}: ${w.message}`).join('; ')}`
      : '';
    this.events?.record(
      obj,
      'Normal',
      'PolicyApplied',
      `tether-sidecar applied TrafficPolicy "${loaded.spec.name}" (${n} destination${n === 1 ? '' : 's'})${warned}`,
      contentHash ?? '',
    );
  }

  /** Builds the effective policy from each ConfigMap's last good spec and swaps it in; waits until both have been read once. */
  private recompute(changed: Doc | undefined): void {
    const allRead = this.docs.every((d) => d.seen);
    if (!allRead && !this.graceExpired) return;
    const present = this.docs.filter((d) => d.good);
    const policy = present.length ? resolvePolicy(present.map((d) => d.good!.spec)) : this.opts.fallback;
    const unread = this.docs.filter((d) => !d.seen).map((d) => `${d.namespace}/${d.name}`);
    const label =
      (present.length
        ? present.map((d) => `configmap ${d.namespace}/${d.name}@${d.good!.resourceVersion}`).join(' + ')
        : `${this.opts.fallback.names.join('+')} (no policy ConfigMap in force)`) +
      (unread.length ? ` (not read yet: ${unread.join(', ')})` : '');
    const failures = this.docs.map((d) => d.failure).filter((f): f is ReloadFailure => f !== null);
    const stillFailing = failures.sort((a, b) => b.at.getTime() - a.at.getTime())[0];
    const first = allRead && !this.synced;
    if (first) {
      this.synced = true;
      this.grace?.cancel();
      this.store.setPending(null);
    }
    this.store.apply(policy, label, stillFailing ? { stillFailing } : {});
    this.log.info(
      {
        source: label,
        version: policy.version,
        destinations: policy.destinations.length,
        ...(changed ? { changed: `${changed.namespace}/${changed.name}` } : {}),
      },
      first ? 'policy synced from the Kubernetes API' : 'policy applied',
    );
  }
}
