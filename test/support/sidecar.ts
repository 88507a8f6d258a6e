// Starts a real sidecar in-process on 127.0.0.1:0 with a policy written to a temp file, and sends requests through it.

import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { request, type IncomingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadSidecarConfig } from '../../src/config/sidecar.ts';
import { startSidecar, type Sidecar, type SidecarOptions } from '../../src/sidecar.ts';
import { createLogger } from '../../src/telemetry/log.ts';

export interface TestSidecar extends Sidecar {
  policyPath: string;
  proxy: string;
  writePolicy(yaml: string): void;
}

export const POLICY_HEAD = `apiVersion: tether.io/v1alpha1
kind: TrafficPolicy
metadata: { name: test }
`;

export async function startTestSidecar(
  policyYaml: string,
  extraArgs: string[] = [],
  opts: SidecarOptions = {},
): Promise<TestSidecar> {
  const dir = mkdtempSync(join(tmpdir(), 'tether-test-'));
  const policyPath = join(dir, 'policy.yaml');
  writeFileSync(policyPath, policyYaml);
  const { values } = loadSidecarConfig(
    [
      '--policy-file',
      policyPath,
      '--listen',
      '127.0.0.1:0',
      '--admin-listen',
      '127.0.0.1:0',
      '--policy-poll',
      '100ms',
      ...extraArgs,
    ],
    {},
  );
  const sc = await startSidecar(values, {
    log: createLogger(process.env.TETHER_TEST_LOG === '1' ? 'debug' : 'silent', 'test'),
    ...opts,
  });
  return {
    ...sc,
    policyPath,
    proxy: `http://127.0.0.1:${sc.egress.port}`,
    writePolicy: (yaml) => writeFileSync(policyPath, yaml),
    close: async () => {
      await sc.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  ms: number;
  /** Set when the response stream was aborted after headers. */
  aborted?: string;
}

/** Sends one request through the proxy in absolute form, as HTTP_PROXY clients do. */
export function viaProxy(
  proxyPort: number,
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string | Buffer; chunked?: boolean } = {},
): Promise<Reply> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1',
      port: proxyPort,
      method: opts.method ?? 'GET',
      path: url,
      headers: {
        ...opts.headers,
        ...(opts.body !== undefined && !opts.chunked
          ? { 'content-length': String(Buffer.byteLength(opts.body)) }
          : {}),
      },
      agent: false,
    });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      const done = (aborted?: string): void =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString(),
          ms: performance.now() - started,
          ...(aborted ? { aborted } : {}),
        });
      res.on('end', () => done());
      res.on('error', (err) => done(err.message || 'aborted'));
    });
    if (opts.body !== undefined) req.end(opts.body);
    else req.end();
  });
}

export async function adminGet(sc: Sidecar, path: string): Promise<{ status: number; body: unknown }> {
  const r = await fetch(`http://127.0.0.1:${sc.admin.port}${path}`);
  const text = await r.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* plain text (metrics) */
  }
  return { status: r.status, body };
}

/** Polls `check` until it returns true or `ms` passes; for state that changes asynchronously (policy reloads). */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  ms: number,
  what: string,
): Promise<void> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out after ${ms}ms waiting for ${what}`);
}
