// Tracing settings as a user sets them: OTEL_* endpoint rules, bad sampler values refused with exit 64, and tracing off leaving the app's trace context untouched.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { tracesUrl } from '../src/telemetry/trace-config.ts';
import { POLICY_HEAD, startTestSidecar, viaProxy } from './support/sidecar.ts';
import { startUpstream, type Upstream } from './support/upstream.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

function runSidecar(env: Record<string, string>): { status: number | null; stderr: string } {
  const r = spawnSync(
    process.execPath,
    [
      '--disable-warning=DEP0060',
      'cmd/sidecar.ts',
      '--listen',
      '127.0.0.1:0',
      '--admin-listen',
      '127.0.0.1:0',
    ],
    {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', ...env },
      encoding: 'utf8',
      timeout: 20_000,
    },
  );
  return { status: r.status, stderr: r.stderr };
}

describe('OTLP endpoint', () => {
  test('the traces endpoint is used as given; the base endpoint gets /v1/traces; neither means off', () => {
    assert.equal(tracesUrl('http://jaeger:4318', undefined), 'http://jaeger:4318/v1/traces');
    assert.equal(tracesUrl('http://jaeger:4318/', undefined), 'http://jaeger:4318/v1/traces');
    assert.equal(tracesUrl('http://jaeger:4318', 'http://other:4318/custom'), 'http://other:4318/custom');
    assert.equal(tracesUrl(undefined, undefined), undefined);
  });
});

describe('invalid tracing settings stop the sidecar at start with exit 64', () => {
  test('an unknown sampler names the variable and the choices', () => {
    const r = runSidecar({ OTEL_TRACES_SAMPLER: 'jaeger_remote' });
    assert.equal(r.status, 64);
    assert.match(
      r.stderr,
      /OTEL_TRACES_SAMPLER \(environment\): "jaeger_remote" must be one of parentbased_traceidratio, /,
    );
  });

  test('a ratio outside 0..1, a non-URL endpoint and a non-boolean OTEL_SDK_DISABLED are all reported at once', () => {
    const r = runSidecar({
      OTEL_TRACES_SAMPLER_ARG: '10',
      OTEL_EXPORTER_OTLP_ENDPOINT: 'jaeger:4318',
      OTEL_SDK_DISABLED: 'yes',
    });
    assert.equal(r.status, 64);
    assert.match(r.stderr, /OTEL_TRACES_SAMPLER_ARG \(environment\): "10" must be a number from 0 to 1/);
    assert.match(
      r.stderr,
      /OTEL_EXPORTER_OTLP_ENDPOINT \(environment\): "jaeger:4318" is not an http:\/\/ or https:\/\/ URL/,
    );
    assert.match(r.stderr, /OTEL_SDK_DISABLED \(environment\): "yes" must be true or false/);
  });
});

describe('tracing off', () => {
  let up: Upstream;
  before(async () => {
    up = await startUpstream();
  });
  after(() => up.close());

  for (const [what, args] of [
    ['no endpoint configured', []],
    ['OTEL_SDK_DISABLED with an endpoint', ['--otlp-endpoint', 'http://127.0.0.1:9', '--tracing-disabled']],
  ] as const) {
    test(`${what}: no SDK, and the app's traceparent and tracestate reach the upstream untouched`, async () => {
      const sc = await startTestSidecar(POLICY_HEAD + 'spec: {}\n', [...args]);
      try {
        assert.equal(sc.tracing, undefined);
        const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
        const r = await viaProxy(sc.egress.port, `http://${up.authority}/echo`, {
          headers: { traceparent, tracestate: 'vendor=abc' },
        });
        const seen = (JSON.parse(r.body) as { headers: Record<string, string> }).headers;
        assert.equal(seen.traceparent, traceparent);
        assert.equal(seen.tracestate, 'vendor=abc');
      } finally {
        await sc.close();
      }
    });
  }
});
