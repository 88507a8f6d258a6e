// Owns offline injection of multi-document YAML (tetherctl inject/uninject): finds every pod template and runs the webhook's own mutation on it.

import { Document, parseAllDocuments } from 'yaml';
import { decide } from './filter.ts';
import type { InjectOptions } from './options.ts';
import { InjectError, injectPod, uninjectPod } from './pod.ts';
import { isRecord, type KubeObject, type PodTemplate } from './types.ts';
import { propagateInjectAnnotation } from './workload.ts';

/** Kinds whose pod template sits at spec.template. */
const TEMPLATE_KINDS = new Set([
  'Deployment',
  'StatefulSet',
  'DaemonSet',
  'ReplicaSet',
  'ReplicationController',
  'Job',
]);

export type Direction = 'inject' | 'uninject';

export interface DocumentsResult {
  /** The documents; unchanged ones keep their comments. */
  text: string;
  /** One line per pod template touched or skipped, for stderr. */
  notes: string[];
}

type Mutate = (template: PodTemplate, label: string, fallbackName: string | undefined) => PodTemplate;

function describe(obj: KubeObject): string {
  return `${obj.kind ?? '(no kind)'} ${obj.metadata?.name ?? '(unnamed)'}`;
}

/** Applies `mutate` to every pod template inside `obj`; returns the new object or `obj` itself when nothing changed. */
function walk(obj: KubeObject, mutate: Mutate, direction: Direction): KubeObject {
  const kind = obj.kind ?? '';
  if (kind === 'List' && Array.isArray(obj.items)) {
    const items = (obj.items as unknown[]).map((i) =>
      isRecord(i) ? walk(i as KubeObject, mutate, direction) : i,
    );
    return items.some((i, n) => i !== (obj.items as unknown[])[n]) ? { ...obj, items } : obj;
  }
  if (kind === 'Pod') {
    const out = mutate(obj as PodTemplate, describe(obj), undefined);
    return out === obj ? obj : out;
  }
  const workload = direction === 'inject' && TEMPLATE_KINDS.has(kind) ? propagateInjectAnnotation(obj) : obj;
  const holder = TEMPLATE_KINDS.has(kind)
    ? workload.spec
    : kind === 'CronJob' && isRecord(obj.spec?.jobTemplate) && isRecord(obj.spec.jobTemplate.spec)
      ? obj.spec.jobTemplate.spec
      : undefined;
  if (!holder || !isRecord(holder.template)) return obj;
  const template = holder.template as PodTemplate;
  const out = mutate(template, describe(obj), obj.metadata?.name);
  if (out === template) return obj;
  const copy = structuredClone(workload);
  if (kind === 'CronJob') (copy.spec?.jobTemplate as { spec: { template: unknown } }).spec.template = out;
  else (copy.spec as { template: unknown }).template = out;
  return copy;
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * `inject` treats every template as opted in (asking tetherctl is the opt-in) unless it says
 * `tether.io/inject: "false"`; bad annotations are errors, listed all at once.
 */
export function transformDocuments(text: string, direction: Direction, opts: InjectOptions): DocumentsResult {
  const docs = parseAllDocuments(text);
  const list = Array.isArray(docs) ? docs : [];
  const notes: string[] = [];
  const problems: string[] = [];
  const mutate: Mutate = (template, label, fallbackName) => {
    if (direction === 'uninject') {
      const out = uninjectPod(template);
      if (same(out, template)) return template;
      notes.push(`${label}: sidecar removed`);
      return out;
    }
    const d = decide(template, 'namespace');
    if ('error' in d) {
      problems.push(`${label}: ${d.error}`);
      return template;
    }
    if (!d.inject) {
      notes.push(`${label}: skipped: ${d.reason}`);
      return template;
    }
    try {
      const { pod: out, warnings } = injectPod(
        template,
        opts,
        fallbackName !== undefined ? { fallbackServiceName: fallbackName } : {},
      );
      notes.push(...warnings.map((w) => `${label}: warning: ${w}`));
      if (same(out, template)) {
        notes.push(`${label}: already injected`);
        return template;
      }
      notes.push(`${label}: injected`);
      return out;
    } catch (err) {
      if (!(err instanceof InjectError)) throw err;
      problems.push(...err.problems.map((p) => `${label}: ${p}`));
      return template;
    }
  };

  const out: string[] = [];
  list.forEach((doc, n) => {
    if (doc.errors.length > 0) {
      problems.push(`document ${n + 1}: ${doc.errors.map((e) => e.message).join('; ')}`);
      return;
    }
    const obj: unknown = doc.toJS();
    if (!isRecord(obj)) {
      if (obj !== null && obj !== undefined) out.push(doc.toString());
      return;
    }
    const next = walk(obj, mutate, direction);
    // Documents are re-joined below; a document's own "---" marker would double it.
    const printed = next === obj ? doc.toString() : new Document(next).toString();
    out.push(printed.replace(/^---[ \t]*\n/, ''));
  });
  if (problems.length > 0) throw new InjectError(problems);
  return { text: out.map((d) => (d.endsWith('\n') ? d : d + '\n')).join('---\n'), notes };
}
