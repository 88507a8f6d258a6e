// Owns whether a pod gets the sidecar: small named checks, each returning the reason it skipped, run in order.

import { ANNOTATIONS } from './names.ts';
import type { PodTemplate } from './types.ts';

/**
 * How the pod reached the injector. The API server matches namespace labels (namespaceSelector), so the
 * injector needs no access to Namespaces: the webhook entry the request came through says which case it is.
 * - `pod`: the namespace is not enabled; only `tether.io/inject: "true"` on the pod opts in.
 * - `namespace`: the namespace carries `tether.io/inject=enabled`; every pod is injected unless it opts out.
 *   `tetherctl inject` uses this scope too: asking for injection is the opt-in.
 */
export type Scope = 'pod' | 'namespace';

export type Decision =
  | { inject: true }
  /** `explicit`: the pod asked for the sidecar and still did not get it — worth an admission warning. */
  | { inject: false; reason: string; explicit: boolean }
  | { error: string };

type Check = (pod: PodTemplate, scope: Scope) => Decision | undefined;

const injectValue = (pod: PodTemplate): string | undefined => pod.metadata?.annotations?.[ANNOTATIONS.inject];

const CHECKS: ReadonlyArray<[name: string, check: Check]> = [
  [
    'annotation value',
    (pod) => {
      const v = injectValue(pod);
      return v === undefined || v === 'true' || v === 'false'
        ? undefined
        : { error: `${ANNOTATIONS.inject}: "${v}" must be "true" or "false"` };
    },
  ],
  [
    'opted out',
    (pod) =>
      injectValue(pod) === 'false'
        ? { inject: false, reason: `opted out by ${ANNOTATIONS.inject}: "false"`, explicit: false }
        : undefined,
  ],
  [
    'opted in',
    (pod, scope) =>
      scope === 'pod' && injectValue(pod) !== 'true'
        ? {
            inject: false,
            reason: `no ${ANNOTATIONS.inject}: "true" annotation and the namespace is not enabled`,
            explicit: false,
          }
        : undefined,
  ],
  [
    'host network',
    // The pod shares the node's network namespace: 127.0.0.1:15001 would collide between pods on the node.
    (pod) =>
      pod.spec?.hostNetwork === true
        ? {
            inject: false,
            reason: 'hostNetwork pods share the node network namespace, where the proxy ports would collide',
            explicit: injectValue(pod) === 'true',
          }
        : undefined,
  ],
];

export function decide(pod: PodTemplate, scope: Scope): Decision {
  for (const [, check] of CHECKS) {
    const d = check(pod, scope);
    if (d !== undefined) return d;
  }
  return { inject: true };
}
