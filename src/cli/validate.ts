// `tetherctl validate`: checks policy files (TrafficPolicy documents or ConfigMaps holding policy.yaml) with the sidecar's own validator.

import { readFile } from 'node:fs/promises';
import { parseAllDocuments } from 'yaml';
import {
  MESH_POLICY_CONFIGMAP,
  NAMESPACE_POLICY_CONFIGMAP,
  POLICY_KEY,
  policyTextOf,
} from '../policy/configmap.ts';
import { loadPolicyText } from '../policy/load.ts';
import { formatProblem } from '../policy/validate.ts';

export { POLICY_KEY };

export interface ValidateOutput {
  /** 0 clean or warnings only, 1 errors. */
  code: number;
  out: string[];
}

/** Pulls the policy text out of a ConfigMap manifest, or returns the text itself for a TrafficPolicy. */
export function policyTextsOf(
  text: string,
): { label: string; text: string; warning?: string }[] | { error: string } {
  let docs;
  try {
    docs = parseAllDocuments(text);
  } catch {
    return [{ label: '', text }];
  }
  if (!Array.isArray(docs)) return [{ label: '', text }];
  const objs = docs.map((d) => (d.errors.length ? undefined : (d.toJS() as unknown)));
  const configMaps = objs.filter(
    (o): o is { kind: string; metadata?: { name?: string }; data?: Record<string, unknown> } =>
      typeof o === 'object' && o !== null && (o as { kind?: unknown }).kind === 'ConfigMap',
  );
  if (configMaps.length === 0) return [{ label: '', text }];
  if (configMaps.length !== objs.filter((o) => o !== null && o !== undefined).length) {
    return {
      error:
        'mixes ConfigMaps with other documents; validate TrafficPolicy files and ConfigMap manifests separately',
    };
  }
  const out: { label: string; text: string; warning?: string }[] = [];
  for (const cm of configMaps) {
    const name = cm.metadata?.name ?? '(unnamed)';
    const policy = policyTextOf(cm.data, name);
    if ('error' in policy) return policy;
    // The sidecar reads exactly two names (RBAC grants nothing else): any other name is silently never applied.
    const known = name === NAMESPACE_POLICY_CONFIGMAP || name === MESH_POLICY_CONFIGMAP;
    out.push({
      label: `ConfigMap ${name} data.${POLICY_KEY}`,
      text: policy.text,
      ...(known
        ? {}
        : {
            warning: `metadata.name: sidecars read only ConfigMaps named ${NAMESPACE_POLICY_CONFIGMAP} (pod namespace) and ${MESH_POLICY_CONFIGMAP} (mesh namespace); "${name}" is never applied`,
          }),
    });
  }
  return out;
}

export async function validateFiles(
  files: readonly string[],
  read: (f: string) => Promise<string> = (f) => readFile(f, 'utf8'),
): Promise<ValidateOutput> {
  const out: string[] = [];
  let code = 0;
  for (const file of files) {
    let text: string;
    try {
      text = await read(file);
    } catch (err) {
      out.push(`${file}: error: cannot read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
      code = 1;
      continue;
    }
    const texts = policyTextsOf(text);
    if ('error' in texts) {
      out.push(`${file}: error: ${texts.error}`);
      code = 1;
      continue;
    }
    for (const t of texts) {
      const where = t.label ? `${file} (${t.label})` : file;
      if (t.warning) out.push(`${where}: warning: ${t.warning}`);
      const r = loadPolicyText(t.text);
      if (!r.ok) {
        code = 1;
        for (const p of r.problems) out.push(formatProblem(p, where));
        out.push(`${where}: invalid (${r.problems.filter((p) => p.severity === 'error').length} error(s))`);
        continue;
      }
      for (const w of r.warnings) out.push(formatProblem(w, where));
      const n = r.policy.destinations.length;
      out.push(
        `${where}: valid TrafficPolicy "${r.spec.name}", ${n} destination${n === 1 ? '' : 's'}${r.warnings.length ? `, ${r.warnings.length} warning(s)` : ''}`,
      );
    }
  }
  return { code, out };
}
