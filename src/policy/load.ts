// The one entry point every policy source uses: text in, an effective policy and its warnings out.

import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { contradictions, resolvePolicy, type EffectivePolicy } from './resolve.ts';
import type { PolicySpec } from './schema.ts';
import { locate, parsePolicy, type Problem } from './validate.ts';

export const EMBEDDED_DEFAULT_PATH = fileURLToPath(new URL('./default-policy.yaml', import.meta.url));

export type LoadResult =
  | { ok: true; spec: PolicySpec; policy: EffectivePolicy; warnings: Problem[] }
  | { ok: false; problems: Problem[] };

/** Validates one document and resolves it on its own, with warnings for contradictory layers. */
export function loadPolicyText(text: string): LoadResult {
  const parsed = parsePolicy(text);
  if (!parsed.ok) return parsed;
  const policy = resolvePolicy([parsed.spec]);
  return {
    ok: true,
    spec: parsed.spec,
    policy,
    warnings: locate(text, [...parsed.warnings, ...contradictions(policy, parsed.spec)]),
  };
}

export async function loadPolicyFile(path: string): Promise<LoadResult> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    return {
      ok: false,
      problems: [{ severity: 'error', path: '(file)', message: `cannot read ${path}: ${code}` }],
    };
  }
  return loadPolicyText(text);
}
