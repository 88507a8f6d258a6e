// Owns fast-json-patch: the JSON Patch an AdmissionResponse carries is computed from the mutated copy, never written by hand.

import fjp from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';

export type PatchOperation = Operation;

/** RFC 6902 operations turning `before` into `after`. */
export function diff(before: object, after: object): PatchOperation[] {
  return fjp.compare(before, after);
}

/** Applies `ops` to a copy of `doc` (what the API server does with our patch); throws on an invalid patch. */
export function applyPatchCopy<T extends object>(doc: T, ops: readonly PatchOperation[]): T {
  return fjp.applyPatch(doc, [...ops], true, false).newDocument;
}
