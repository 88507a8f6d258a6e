// What tracing is configured with, kept apart from the SDK so reading settings never loads OpenTelemetry (400ms and ~40MB when tracing is off).

export const SAMPLERS = [
  'parentbased_traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'traceidratio',
  'always_on',
  'always_off',
] as const;
export type SamplerName = (typeof SAMPLERS)[number];

/** Why spans never reached the collector: the bounded queue was full, or the export failed (collector down, rejected). */
export type DropReason = 'queue_full' | 'export_failed';

export interface TracingConfig {
  /** Full OTLP/HTTP traces URL (…/v1/traces). */
  tracesUrl: string;
  sampler: SamplerName;
  /** The ratio for the *traceidratio samplers, 0..1. */
  samplerArg: number;
  serviceName: string;
  podName?: string | undefined;
  namespace?: string | undefined;
  /** Tether's version, recorded as the instrumentation scope version. */
  version: string;
}

/**
 * The OTLP/HTTP traces URL the specification derives: the signal-specific endpoint as given, or
 * the base endpoint plus `v1/traces`; undefined when neither is set (tracing stays off).
 */
export function tracesUrl(
  endpoint: string | undefined,
  tracesEndpoint: string | undefined,
): string | undefined {
  if (tracesEndpoint) return tracesEndpoint;
  if (!endpoint) return undefined;
  return endpoint.endsWith('/') ? `${endpoint}v1/traces` : `${endpoint}/v1/traces`;
}
