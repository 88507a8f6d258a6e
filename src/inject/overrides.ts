// Owns reading a pod's tether.io/* annotations into per-pod overrides, naming every bad value instead of falling back to a default.

import { LOG_LEVELS, type LogLevel } from '../telemetry/log.ts';
import { ANNOTATIONS, SIDECAR_MODES, type SidecarMode } from './names.ts';
import type { ProxyResources } from './options.ts';

/** "none" removes a default request or limit; anything else must be a Kubernetes quantity. */
export const NO_QUANTITY = 'none';

// Kubernetes' quantity grammar (k8s.io/apimachinery/pkg/api/resource): a non-negative decimal with an
// optional binary (Ki..Ei), decimal (n, u, m, k, M..E) or exponent suffix.
const QUANTITY = /^(?:\d+(?:\.\d*)?|\.\d+)(?:Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$/;

/** Parses a quantity or "none" (undefined); the error says what was wrong. */
export function parseQuantity(raw: string): string | undefined | { error: string } {
  const v = raw.trim();
  if (v === NO_QUANTITY) return undefined;
  return QUANTITY.test(v)
    ? v
    : { error: `"${raw}" is not a Kubernetes quantity (e.g. 100m, 0.5, 64Mi, 1Gi) or "${NO_QUANTITY}"` };
}

export function parsePorts(raw: string): number[] | { error: string } {
  const parts = raw.split(',').map((p) => p.trim());
  const ports: number[] = [];
  for (const p of parts) {
    const n = /^\d{1,5}$/.test(p) ? Number(p) : NaN;
    if (!(n >= 1 && n <= 65535))
      return { error: `"${raw}" is not a comma-separated list of TCP ports (e.g. "80,8080")` };
    if (!ports.includes(n)) ports.push(n);
  }
  return ports;
}

export interface PodOverrides {
  mode: SidecarMode | undefined;
  /** Only the keys the pod set; `undefined` values mean "none". */
  resources: Partial<ProxyResources>;
  logLevel: LogLevel | undefined;
  /** Ports whose outbound TCP an init container redirects to the proxy. */
  capturePorts: number[] | undefined;
}

const RESOURCE_ANNOTATIONS: ReadonlyArray<[keyof ProxyResources, string]> = [
  ['cpuRequest', ANNOTATIONS.cpuRequest],
  ['memoryRequest', ANNOTATIONS.memoryRequest],
  ['cpuLimit', ANNOTATIONS.cpuLimit],
  ['memoryLimit', ANNOTATIONS.memoryLimit],
];

/** Every problem is reported as `annotation: why`, so the user can fix them all at once. */
export function readOverrides(
  annotations: Readonly<Record<string, string>>,
): { overrides: PodOverrides } | { problems: string[] } {
  const problems: string[] = [];
  const o: PodOverrides = { mode: undefined, resources: {}, logLevel: undefined, capturePorts: undefined };

  const mode = annotations[ANNOTATIONS.sidecarMode];
  if (mode !== undefined) {
    if ((SIDECAR_MODES as readonly string[]).includes(mode)) o.mode = mode as SidecarMode;
    else problems.push(`${ANNOTATIONS.sidecarMode}: "${mode}" must be one of ${SIDECAR_MODES.join(', ')}`);
  }

  for (const [key, annotation] of RESOURCE_ANNOTATIONS) {
    const raw = annotations[annotation];
    if (raw === undefined) continue;
    const q = parseQuantity(raw);
    if (typeof q === 'object') problems.push(`${annotation}: ${q.error}`);
    else o.resources[key] = q;
  }

  const level = annotations[ANNOTATIONS.logLevel];
  if (level !== undefined) {
    if ((LOG_LEVELS as readonly string[]).includes(level)) o.logLevel = level as LogLevel;
    else problems.push(`${ANNOTATIONS.logLevel}: "${level}" must be one of ${LOG_LEVELS.join(', ')}`);
  }

  const capture = annotations[ANNOTATIONS.capture];
  const ports = annotations[ANNOTATIONS.capturePorts];
  if (capture !== undefined && capture !== 'iptables') {
    problems.push(
      `${ANNOTATIONS.capture}: "${capture}" is not a capture mode; the only one is "iptables" (omit the annotation for none)`,
    );
  } else if (capture === 'iptables') {
    if (ports === undefined)
      problems.push(
        `${ANNOTATIONS.capturePorts}: required with ${ANNOTATIONS.capture}: iptables (e.g. "80,8080")`,
      );
    else {
      const p = parsePorts(ports);
      if ('error' in p) problems.push(`${ANNOTATIONS.capturePorts}: ${p.error}`);
      else o.capturePorts = p;
    }
  } else if (ports !== undefined) {
    problems.push(`${ANNOTATIONS.capturePorts}: has no effect without ${ANNOTATIONS.capture}: iptables`);
  }

  return problems.length > 0 ? { problems } : { overrides: o };
}
