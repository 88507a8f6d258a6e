// tether-injector over real HTTPS: AdmissionReview round trips, bad requests, certificate reload, and the binary's exit codes.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync, rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { startInjectorServer, type InjectorServer } from '../src/inject/server.ts';
import { applyPatchCopy, type PatchOperation } from '../src/inject/patch.ts';
import type { PodTemplate } from '../src/inject/types.ts';
import { createLogger } from '../src/telemetry/log.ts';
import {
  admissionReview,
  defaultInjectOptions,
  httpsRequest,
  makeCerts,
  type TestCerts,
} from './inject-helpers.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const NODE = process.execPath;

const POD: PodTemplate = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: {
    name: 'web',
    namespace: 'shop',
    labels: { app: 'web' },
    annotations: { 'tether.io/inject': 'true' },
  },
  spec: { containers: [{ name: 'app', image: 'web:1', ports: [{ containerPort: 8080, name: 'http' }] }] },
};

describe('tether-injector HTTPS server', () => {
  let certs: TestCerts;
  let ca: Buffer;
  let server: InjectorServer;
  let base: string;

  before(async () => {
    certs = makeCerts();
    ca = readFileSync(certs.caCrt);
    server = await startInjectorServer({
      listen: { host: '127.0.0.1', port: 0 },
      certFile: certs.certFile,
      keyFile: certs.keyFile,
      certReloadMs: 60_000,
      inject: defaultInjectOptions(),
      log: createLogger('silent', 'test'),
    });
    base = `https://127.0.0.1:${server.address.port}`;
  });
  after(async () => {
    await server.close();
    rmSync(certs.dir, { recursive: true, force: true });
  });

  test('answers an AdmissionReview with the same uid and a JSON Patch that injects the sidecar', async () => {
    const review = admissionReview(POD);
    const res = await httpsRequest(`${base}/mutate/pods`, ca, { body: JSON.stringify(review) });
    assert.equal(res.status, 200);
    const body = JSON.parse(res.body) as {
      apiVersion: string;
      kind: string;
      response: { uid: string; allowed: boolean; patch: string };
    };
    assert.equal(body.apiVersion, 'admission.k8s.io/v1');
    assert.equal(body.kind, 'AdmissionReview');
    assert.equal(body.response.uid, (review.request as { uid: string }).uid);
    assert.equal(body.response.allowed, true);
    const ops = JSON.parse(Buffer.from(body.response.patch, 'base64').toString()) as PatchOperation[];
    const patched = applyPatchCopy(POD, ops);
    assert.equal(patched.spec?.initContainers?.[0]?.name, 'tether-proxy');
  });

  test('tetherctl inject prints exactly the pod the webhook produces', async () => {
    const res = await httpsRequest(`${base}/mutate/pods`, ca, { body: JSON.stringify(admissionReview(POD)) });
    const ops = JSON.parse(
      Buffer.from(
        (JSON.parse(res.body) as { response: { patch: string } }).response.patch,
        'base64',
      ).toString(),
    ) as PatchOperation[];
    const fromWebhook = applyPatchCopy(POD, ops);
    const cli = spawnSync(NODE, ['--disable-warning=DEP0060', 'cmd/tetherctl.ts', 'inject', '-f', '-'], {
      cwd: ROOT,
      input: JSON.stringify(POD),
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(cli.status, 0, cli.stderr);
    assert.deepEqual(parse(cli.stdout), fromWebhook);
  });

  test('the namespace-enabled path injects an unannotated pod; the opt-in path does not', async () => {
    const bare = { ...POD, metadata: { name: 'bare', namespace: 'shop' } };
    const ns = JSON.parse(
      (
        await httpsRequest(`${base}/mutate/pods/namespace-enabled`, ca, {
          body: JSON.stringify(admissionReview(bare)),
        })
      ).body,
    ) as { response: { patch?: string } };
    assert.ok(ns.response.patch);
    const pod = JSON.parse(
      (await httpsRequest(`${base}/mutate/pods`, ca, { body: JSON.stringify(admissionReview(bare)) })).body,
    ) as { response: { allowed: boolean; patch?: string } };
    assert.equal(pod.response.allowed, true);
    assert.equal(pod.response.patch, undefined);
  });

  test('health endpoints answer GET', async () => {
    for (const p of ['/livez', '/readyz']) assert.equal((await httpsRequest(`${base}${p}`, ca)).status, 200);
  });

  test('malformed requests get 4xx with a reason, never a crash', async () => {
    const notJson = await httpsRequest(`${base}/mutate/pods`, ca, { body: '{' });
    assert.equal(notJson.status, 400);
    const v1beta1 = await httpsRequest(`${base}/mutate/pods`, ca, {
      body: JSON.stringify({ ...admissionReview(POD), apiVersion: 'admission.k8s.io/v1beta1' }),
    });
    assert.equal(v1beta1.status, 400);
    assert.match(v1beta1.body, /expected apiVersion admission\.k8s\.io\/v1/);
    const noUid = await httpsRequest(`${base}/mutate/pods`, ca, {
      body: JSON.stringify({
        apiVersion: 'admission.k8s.io/v1',
        kind: 'AdmissionReview',
        request: { object: {} },
      }),
    });
    assert.equal(noUid.status, 400);
    assert.equal((await httpsRequest(`${base}/nowhere`, ca, { body: '{}' })).status, 404);
    assert.equal((await httpsRequest(`${base}/mutate/pods`, ca)).status, 405);
    const huge = await httpsRequest(`${base}/mutate/pods`, ca, {
      body: Buffer.alloc(9 * 1024 * 1024, 32),
    }).catch((err: Error) => ({ status: -1, body: err.message }));
    assert.ok(huge.status === 413 || huge.status === -1, `oversized body: ${huge.status}`);
    // Still serving after all that.
    assert.equal((await httpsRequest(`${base}/livez`, ca)).status, 200);
  });

  test('a client that does not trust the CA is refused', async () => {
    const other = makeCerts(undefined, 'other');
    try {
      await assert.rejects(
        httpsRequest(`${base}/livez`, readFileSync(other.caCrt)),
        /self-signed|unable to verify|certificate/i,
      );
    } finally {
      rmSync(other.dir, { recursive: true, force: true });
    }
  });

  test('a rotated certificate is served to new connections without a restart', async () => {
    const before = (await httpsRequest(`${base}/livez`, ca)).fingerprint;
    assert.equal(server.reloadCertificate(), false, 'unchanged files are not a rotation');
    const next = makeCerts(undefined, 'rotated');
    try {
      copyFileSync(next.certFile, certs.certFile);
      copyFileSync(next.keyFile, certs.keyFile);
      assert.equal(server.reloadCertificate(), true);
      const after = await httpsRequest(`${base}/livez`, readFileSync(next.caCrt));
      assert.equal(after.status, 200);
      assert.notEqual(after.fingerprint, before);
      ca = readFileSync(next.caCrt);
    } finally {
      rmSync(next.dir, { recursive: true, force: true });
    }
  });
});

describe('tether-injector binary', () => {
  const injector = (args: string[], env: Record<string, string> = {}) =>
    spawnSync(NODE, ['--disable-warning=DEP0060', 'cmd/injector.ts', ...args], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 30_000,
      env: { PATH: process.env.PATH ?? '', ...env },
    });

  test('bad settings exit 64 and list every problem, from flags and env alike', () => {
    const r = injector(['--sidecar-mode', 'sideways', '--proxy-memory-limit', 'lots'], {
      TETHER_INJECT_OTLP_ENDPOINT: 'jaeger:4318',
    });
    assert.equal(r.status, 64);
    assert.match(r.stderr, /--sidecar-mode: "sideways" must be one of native, legacy/);
    assert.match(r.stderr, /--proxy-memory-limit: "lots" is not a Kubernetes quantity/);
    assert.match(
      r.stderr,
      /TETHER_INJECT_OTLP_ENDPOINT \(environment\): "jaeger:4318" is not an http\(s\) URL/,
    );
  });

  test('a missing certificate exits 64 naming the file', () => {
    const r = injector(['--tls-cert-file', '/nonexistent/tls.crt', '--tls-key-file', '/nonexistent/tls.key']);
    assert.equal(r.status, 64);
    assert.match(r.stderr, /cannot read the serving certificate: .*\/nonexistent\/tls\.crt/);
  });

  test('--help lists every setting with its env var', () => {
    const r = injector(['--help']);
    assert.equal(r.status, 0);
    for (const s of [
      '--listen',
      'TETHER_INJECTOR_TLS_CERT_FILE',
      '--sidecar-mode',
      'TETHER_INJECT_IMAGE',
      '--otlp-endpoint',
    ])
      assert.ok(r.stdout.includes(s), s);
  });

  test('serves, then exits 0 on SIGTERM', async () => {
    const certs = makeCerts();
    const child = spawn(
      NODE,
      [
        '--disable-warning=DEP0060',
        'cmd/injector.ts',
        '--listen',
        '127.0.0.1:0',
        '--tls-cert-file',
        certs.certFile,
        '--tls-key-file',
        certs.keyFile,
      ],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    try {
      const port = await new Promise<number>((resolve, reject) => {
        let out = '';
        const timer = setTimeout(() => reject(new Error(`no listening line: ${out}`)), 20_000);
        child.stdout.on('data', (c: Buffer) => {
          out += c.toString();
          const m = /"address":"127\.0\.0\.1:(\d+)"/.exec(out);
          if (m) {
            clearTimeout(timer);
            resolve(Number(m[1]));
          }
        });
      });
      assert.equal(
        (await httpsRequest(`https://127.0.0.1:${port}/readyz`, readFileSync(certs.caCrt))).status,
        200,
      );
      const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      rmSync(certs.dir, { recursive: true, force: true });
    }
  });
});
