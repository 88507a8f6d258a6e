// Owns "annotate a Deployment": copies a workload's own tether.io/inject onto its pod template, so annotating it rolls out (un)injected pods.

import { ANNOTATIONS } from './names.ts';
import { InjectError } from './pod.ts';
import { isRecord, type KubeObject, type ObjectMeta } from './types.ts';

/** Workloads whose pod template the webhook keeps in step with the workload's annotation. */
export const WORKLOAD_KINDS = ['Deployment', 'StatefulSet', 'DaemonSet'] as const;

/**
 * Returns a copy of `obj` whose `spec.template` carries the workload's `tether.io/inject` value. When an
 * UPDATE removes the annotation from the workload, the template's copy is removed too — but only if it is
 * still the value the workload had, so an annotation the user wrote on the template itself survives.
 */
export function propagateInjectAnnotation(obj: KubeObject, old?: KubeObject): KubeObject {
  const copy = structuredClone(obj);
  const template = copy.spec?.template;
  if (!isRecord(template)) return copy;
  const value = obj.metadata?.annotations?.[ANNOTATIONS.inject];
  const previous = old?.metadata?.annotations?.[ANNOTATIONS.inject];
  if (value !== undefined && value !== 'true' && value !== 'false') {
    throw new InjectError([`${ANNOTATIONS.inject}: "${value}" must be "true" or "false"`]);
  }
  const meta: ObjectMeta = isRecord(template.metadata) ? template.metadata : {};
  const annotations = { ...meta.annotations };
  if (value !== undefined) {
    if (annotations[ANNOTATIONS.inject] === value) return copy;
    annotations[ANNOTATIONS.inject] = value;
  } else if (previous !== undefined && annotations[ANNOTATIONS.inject] === previous) {
    delete annotations[ANNOTATIONS.inject];
  } else {
    return copy;
  }
  const nextMeta: ObjectMeta = { ...meta, annotations };
  if (Object.keys(annotations).length === 0) delete nextMeta.annotations;
  template.metadata = nextMeta;
  return copy;
}
