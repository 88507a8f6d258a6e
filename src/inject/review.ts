// Owns the AdmissionReview v1 exchange: validate the request, filter → mutate → respond with a JSON Patch, for pods and for workloads.

import { decide, type Scope } from './filter.ts';
import type { InjectOptions } from './options.ts';
import { diff } from './patch.ts';
import { InjectError, injectPod, isInjected } from './pod.ts';
import { isRecord, type KubeObject, type PodTemplate } from './types.ts';
import { propagateInjectAnnotation, WORKLOAD_KINDS } from './workload.ts';

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';

/** What a webhook path is for; the MutatingWebhookConfiguration points each entry at one of these. */
export type Endpoint = { what: 'pods'; scope: Scope } | { what: 'workloads' };

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  patchType?: 'JSONPatch';
  /** base64 of the JSON Patch. */
  patch?: string;
  status?: { code: number; message: string; reason?: string };
  warnings?: string[];
}

export interface ReviewResult {
  response: AdmissionResponse;
  /** For the access log: what happened and why. */
  outcome: {
    action: 'injected' | 'updated' | 'propagated' | 'unchanged' | 'skipped' | 'denied';
    reason?: string;
    target: string;
  };
}

export class BadReview extends Error {}

interface AdmissionRequest {
  uid: string;
  kind: { kind: string };
  operation: string;
  namespace?: string;
  name?: string;
  subResource?: string;
  object: unknown;
  oldObject?: unknown;
}

/** Checks the envelope; anything the API server would never send is a BadReview (HTTP 400). */
export function parseReview(body: unknown): AdmissionRequest {
  if (!isRecord(body)) throw new BadReview('body is not a JSON object');
  if (body.apiVersion !== ADMISSION_API_VERSION || body.kind !== 'AdmissionReview') {
    throw new BadReview(
      `expected apiVersion ${ADMISSION_API_VERSION}, kind AdmissionReview; got ${String(body.apiVersion)} ${String(body.kind)}`,
    );
  }
  const req = body.request;
  if (!isRecord(req)) throw new BadReview('AdmissionReview has no request');
  if (typeof req.uid !== 'string' || req.uid === '') throw new BadReview('request.uid is missing');
  if (!isRecord(req.kind) || typeof req.kind.kind !== 'string')
    throw new BadReview('request.kind.kind is missing');
  if (typeof req.operation !== 'string') throw new BadReview('request.operation is missing');
  if (!isRecord(req.object)) throw new BadReview('request.object is missing');
  return req as unknown as AdmissionRequest;
}

function patched(
  uid: string,
  before: object,
  after: object,
  warnings: string[],
): AdmissionResponse | undefined {
  const ops = diff(before, after);
  if (ops.length === 0) return undefined;
  return {
    uid,
    allowed: true,
    patchType: 'JSONPatch',
    patch: Buffer.from(JSON.stringify(ops)).toString('base64'),
    ...(warnings.length > 0 ? { warnings } : {}),
  };
}

const allow = (uid: string, warnings: string[] = []): AdmissionResponse => ({
  uid,
  allowed: true,
  ...(warnings.length > 0 ? { warnings } : {}),
});
const deny = (uid: string, problems: string[]): AdmissionResponse => ({
  uid,
  allowed: false,
  status: { code: 400, reason: 'BadRequest', message: `tether-injector: ${problems.join('; ')}` },
});

function targetOf(req: AdmissionRequest): string {
  const obj = req.object as KubeObject;
  const name =
    req.name ||
    obj.metadata?.name ||
    (obj.metadata?.generateName ? `${obj.metadata.generateName}*` : '(unnamed)');
  return `${req.kind.kind} ${req.namespace ?? ''}/${name}`;
}

function reviewPod(req: AdmissionRequest, scope: Scope, opts: InjectOptions): ReviewResult {
  const target = targetOf(req);
  if (req.kind.kind !== 'Pod' || req.operation !== 'CREATE' || req.subResource) {
    return {
      response: allow(req.uid),
      outcome: {
        action: 'unchanged',
        reason: `not a Pod CREATE (${req.kind.kind} ${req.operation})`,
        target,
      },
    };
  }
  const pod = req.object as PodTemplate;
  const d = decide(pod, scope);
  if ('error' in d)
    return { response: deny(req.uid, [d.error]), outcome: { action: 'denied', reason: d.error, target } };
  if (!d.inject) {
    const warnings = d.explicit ? [`tether: sidecar not injected: ${d.reason}`] : [];
    return { response: allow(req.uid, warnings), outcome: { action: 'skipped', reason: d.reason, target } };
  }
  const already = isInjected(pod);
  let after: PodTemplate;
  let warnings: string[];
  try {
    ({ pod: after, warnings } = injectPod(pod, opts));
  } catch (err) {
    if (!(err instanceof InjectError)) throw err;
    return {
      response: deny(req.uid, err.problems),
      outcome: { action: 'denied', reason: err.message, target },
    };
  }
  const response = patched(
    req.uid,
    pod,
    after,
    warnings.map((w) => `tether: ${w}`),
  );
  if (!response)
    return { response: allow(req.uid), outcome: { action: 'unchanged', reason: 'already injected', target } };
  return { response, outcome: { action: already ? 'updated' : 'injected', target } };
}

function reviewWorkload(req: AdmissionRequest): ReviewResult {
  const target = targetOf(req);
  const kinds: readonly string[] = WORKLOAD_KINDS;
  if (
    !kinds.includes(req.kind.kind) ||
    (req.operation !== 'CREATE' && req.operation !== 'UPDATE') ||
    req.subResource
  ) {
    return {
      response: allow(req.uid),
      outcome: {
        action: 'unchanged',
        reason: `not a workload CREATE/UPDATE (${req.kind.kind} ${req.operation})`,
        target,
      },
    };
  }
  const obj = req.object as KubeObject;
  const old = isRecord(req.oldObject) ? (req.oldObject as KubeObject) : undefined;
  let after: KubeObject;
  try {
    after = propagateInjectAnnotation(obj, old);
  } catch (err) {
    if (!(err instanceof InjectError)) throw err;
    return {
      response: deny(req.uid, err.problems),
      outcome: { action: 'denied', reason: err.message, target },
    };
  }
  const response = patched(req.uid, obj, after, []);
  if (!response) return { response: allow(req.uid), outcome: { action: 'unchanged', target } };
  return { response, outcome: { action: 'propagated', target } };
}

/** The whole webhook decision for one AdmissionReview body; throws BadReview for malformed input. */
export function review(body: unknown, endpoint: Endpoint, opts: InjectOptions): ReviewResult {
  const req = parseReview(body);
  return endpoint.what === 'pods' ? reviewPod(req, endpoint.scope, opts) : reviewWorkload(req);
}

export function reviewResponse(response: AdmissionResponse): unknown {
  return { apiVersion: ADMISSION_API_VERSION, kind: 'AdmissionReview', response };
}
