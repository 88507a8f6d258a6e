// Chooses and starts the sidecar's policy source from its configuration: a policy file (or the embedded default), or the Kubernetes ConfigMaps.

import { hostname } from 'node:os';
import { resolvePolicySource, type SidecarConfig } from '../../config/sidecar.ts';
import type { KubeError, KubeTarget } from '../../kube/client.ts';
import { EventRecorder } from '../../kube/events.ts';
import type { Clock } from '../../resilience/clock.ts';
import type { Logger } from '../../telemetry/log.ts';
import { EMBEDDED_DEFAULT_PATH, loadPolicyFile } from '../load.ts';
import type { PolicyStore } from '../store.ts';
import { formatProblem } from '../validate.ts';
import { FilePolicySource } from './file.ts';
import { KubernetesPolicySource } from './kubernetes.ts';

export interface OpenSource {
  stop(): void;
}

export type OpenResult = { ok: true; source: OpenSource } | { ok: false; problems: string[] };

type SourceConfig = Pick<
  SidecarConfig,
  | 'policyFile'
  | 'policyPollMs'
  | 'policySource'
  | 'kubeconfig'
  | 'namespace'
  | 'meshNamespace'
  | 'serviceAccountDir'
  | 'kubeServiceHost'
  | 'kubeServicePort'
  | 'policySyncGraceMs'
  | 'kubeWatchIdleMs'
  | 'kubeBackoffMaxMs'
  | 'podName'
>;

/**
 * A file source has applied its policy when this returns; the Kubernetes source has put the embedded
 * default in force (readiness pending) and reads the ConfigMaps in the background.
 */
export async function openPolicySource(
  config: SourceConfig,
  store: PolicyStore,
  log: Logger,
  clock: Clock,
): Promise<OpenResult> {
  const chosen = resolvePolicySource(config);
  log.info({ policySource: chosen.source, why: chosen.why }, 'policy source chosen');
  if (chosen.source === 'file') {
    const path = config.policyFile ?? EMBEDDED_DEFAULT_PATH;
    const source = new FilePolicySource(
      { path, pollMs: config.policyPollMs, label: config.policyFile ? `file:${path}` : 'embedded-default' },
      store,
      log,
    );
    const loaded = await source.start();
    if (!loaded.ok)
      return {
        ok: false,
        problems: [`policy ${path} is invalid; the sidecar will not start on it:`, ...loaded.messages],
      };
    return { ok: true, source };
  }

  let target: KubeTarget;
  if (config.kubeconfig) target = { kind: 'kubeconfig', path: config.kubeconfig };
  else if (config.kubeServiceHost) {
    target = {
      kind: 'in-cluster',
      host: config.kubeServiceHost,
      port: config.kubeServicePort,
      serviceAccountDir: config.serviceAccountDir,
    };
  } else {
    return {
      ok: false,
      problems: [
        '--policy-source kubernetes needs the API server: give --kubeconfig outside a pod (in a pod the kubelet sets KUBERNETES_SERVICE_HOST)',
      ],
    };
  }
  let conn;
  try {
    // Loaded only here: client-node costs ~85 MB of RSS (~26 MB live heap), which a file-policy sidecar never needs.
    const { connectKube } = await import('../../kube/client.ts');
    conn = connectKube(target);
  } catch (err) {
    return { ok: false, problems: [(err as KubeError).message] };
  }
  const namespace = config.namespace ?? conn.namespace;
  if (!namespace) {
    return {
      ok: false,
      problems: [
        "--policy-source kubernetes needs the pod's namespace: set --namespace or POD_NAMESPACE (the injector sets it from the downward API)",
      ],
    };
  }
  const fallback = await loadPolicyFile(EMBEDDED_DEFAULT_PATH);
  if (!fallback.ok)
    return { ok: false, problems: fallback.problems.map((p) => formatProblem(p, EMBEDDED_DEFAULT_PATH)) };
  const events = new EventRecorder(conn.api, {
    clock,
    log,
    component: 'tether-sidecar',
    instance: config.podName ?? hostname(),
  });
  const source = new KubernetesPolicySource(
    {
      namespace,
      meshNamespace: config.meshNamespace,
      graceMs: config.policySyncGraceMs,
      fallback: fallback.policy,
      watch: {
        idleMs: config.kubeWatchIdleMs,
        backoffBaseMs: Math.min(500, config.kubeBackoffMaxMs),
        backoffMaxMs: config.kubeBackoffMaxMs,
        // client-go's reflector asks for 5–10 minute watches; the server ends them and we resume from the last resourceVersion.
        watchTimeoutSeconds: 300,
        requestTimeoutMs: 10_000,
      },
      clock,
      server: conn.server,
    },
    conn.api,
    events,
    store,
    log,
  );
  log.info(
    { server: conn.server, namespace, meshNamespace: config.meshNamespace },
    'reading policy from Kubernetes ConfigMaps',
  );
  source.start();
  return {
    ok: true,
    source: {
      stop: () => {
        events.close();
        void source.stop();
      },
    },
  };
}
