// The ConfigMap contract for policy (names, key), shared by the Kubernetes policy source and `tetherctl validate`.

/** In the pod's namespace; wins over the mesh policy per destination name. */
export const NAMESPACE_POLICY_CONFIGMAP = 'tether-policy';
/** In the mesh namespace (default tether-system); applies to every injected pod. */
export const MESH_POLICY_CONFIGMAP = 'tether-mesh-policy';
/** The data key holding the TrafficPolicy YAML. */
export const POLICY_KEY = 'policy.yaml';

/** The policy text of a ConfigMap's data, or why there is none. */
export function policyTextOf(
  data: Readonly<Record<string, unknown>> | undefined,
  name: string,
): { text: string } | { error: string } {
  const text = data?.[POLICY_KEY];
  if (typeof text !== 'string') {
    const keys = Object.keys(data ?? {});
    return {
      error: `ConfigMap ${name} has no data key "${POLICY_KEY}" holding the policy${keys.length ? ` (it has: ${keys.join(', ')})` : ''}`,
    };
  }
  return { text };
}
