// Helpers for the injection tests: default InjectOptions, a throwaway CA and serving cert (openssl), AdmissionReview envelopes and an HTTPS client.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { injectOptionsFrom, INJECTION_SETTINGS } from '../src/config/injector.ts';
import { parseSettings } from '../src/config/settings.ts';
import type { InjectOptions } from '../src/inject/options.ts';

/** What tether-injector injects with no flags — the same defaults tetherctl inject uses. */
export function defaultInjectOptions(args: string[] = []): InjectOptions {
  return injectOptionsFrom(parseSettings(INJECTION_SETTINGS, args, {}).values);
}

export interface TestCerts {
  dir: string;
  caCrt: string;
  certFile: string;
  keyFile: string;
  /** base64 of the CA PEM, as a webhook's caBundle. */
  caBundle: string;
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** A CA and a serving certificate for 127.0.0.1/localhost (EC keys: instant on a busy box). */
export function makeCerts(
  dir = mkdtempSync(join(tmpdir(), 'tether-inject-tls-')),
  cn = 'tether-injector',
): TestCerts {
  const caCrt = join(dir, 'ca.crt');
  const caKey = join(dir, 'ca.key');
  const certFile = join(dir, 'tls.crt');
  const keyFile = join(dir, 'tls.key');
  const openssl = (args: string[]): void => {
    execFileSync('openssl', args, { stdio: 'ignore', timeout: 30_000 });
  };
  openssl(['req', '-x509', '-new', ...EC, '-keyout', caKey, '-out', caCrt, '-days', '2', '-subj', `/CN=${cn}-ca`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature']); // prettier-ignore
  openssl(['req', '-x509', '-new', ...EC, '-keyout', keyFile, '-out', certFile, '-days', '2', '-CA', caCrt, '-CAkey', caKey,
    '-subj', `/CN=${cn}`, '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-addext', 'extendedKeyUsage=serverAuth']); // prettier-ignore
  return { dir, caCrt, certFile, keyFile, caBundle: readFileSync(caCrt).toString('base64') };
}

export function admissionReview(
  object: unknown,
  opts: { kind?: string; operation?: string; namespace?: string; oldObject?: unknown } = {},
): Record<string, unknown> {
  const kind = opts.kind ?? 'Pod';
  const group = kind === 'Pod' ? '' : 'apps';
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: randomUUID(),
      kind: { group, version: 'v1', kind },
      resource: { group, version: 'v1', resource: `${kind.toLowerCase()}s` },
      namespace: opts.namespace ?? 'shop',
      operation: opts.operation ?? 'CREATE',
      userInfo: { username: 'test' },
      object,
      ...(opts.oldObject !== undefined ? { oldObject: opts.oldObject } : {}),
      dryRun: false,
    },
  };
}

export interface HttpsReply {
  status: number;
  body: string;
  /** The serving certificate's fingerprint, to see which certificate answered. */
  fingerprint: string;
}

export function httpsRequest(
  url: string,
  ca: Buffer,
  opts: { method?: string; body?: string | Buffer } = {},
): Promise<HttpsReply> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: opts.method ?? (opts.body !== undefined ? 'POST' : 'GET'),
        ca,
        agent: false,
        timeout: 10_000,
        headers: opts.body !== undefined ? { 'content-type': 'application/json' } : {},
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body,
            fingerprint: (res.socket as TLSSocket).getPeerCertificate().fingerprint256,
          }),
        );
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${url} timed out`)));
    req.on('error', reject);
    req.end(opts.body);
  });
}
