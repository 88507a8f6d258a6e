// The binaries as a user runs them: tether-sidecar's exit code 64 and messages, tetherctl validate's output and exit codes.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';

const root = new URL('..', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'tether-cli-'));
const file = (name: string, text: string): string => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};

function run(
  bin: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--disable-warning=DEP0060', join(root, 'cmd', bin), ...args],
      { env: { ...process.env, ...env }, timeout: 15_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

const head = 'apiVersion: tether.io/v1alpha1\nkind: TrafficPolicy\nmetadata: { name: t }\n';
const good = file(
  'good.yaml',
  head +
    'spec:\n  destinations:\n    - { name: api, match: { host: api.svc, port: 80 }, timeouts: { connect: 250ms } }\n',
);
const bad = file(
  'bad.yaml',
  head + 'spec:\n  defaults:\n    timeouts: { connect: 1s, responseHeader: 15s }\n',
);
const contradictory = file(
  'warn.yaml',
  head + 'spec:\n  defaults:\n    timeouts: { connect: 3s, responseHeaders: 1s }\n',
);
const configMap = file(
  'cm.yaml',
  `apiVersion: v1
kind: ConfigMap
metadata: { name: tether-policy }
data:
  policy.yaml: |
    ${(head + 'spec: {}\n').split('\n').join('\n    ')}
`,
);

describe('tether-sidecar', () => {
  test('--help lists every flag with its env var', async () => {
    const r = await run('sidecar.ts', ['--help']);
    assert.equal(r.code, 0);
    for (const f of [
      '--policy-file',
      'TETHER_POLICY_FILE',
      '--listen',
      'TETHER_LISTEN',
      '--admin-listen',
      'TETHER_ADMIN_LISTEN',
    ])
      assert.ok(r.stdout.includes(f), f);
  });

  test('an unknown flag exits 64 with the reason', async () => {
    const r = await run('sidecar.ts', ['--listn', '127.0.0.1:1']);
    assert.equal(r.code, 64);
    assert.match(r.stderr, /Unknown option '--listn'/);
  });

  test('every bad setting is reported at once, env included, exit 64', async () => {
    const r = await run('sidecar.ts', ['--listen', '0.0.0.0:15001'], { TETHER_ADMIN_LISTEN: 'nowhere' });
    assert.equal(r.code, 64);
    assert.match(r.stderr, /--listen: 0\.0\.0\.0 is not a loopback address/);
    assert.match(r.stderr, /TETHER_ADMIN_LISTEN \(environment\): "nowhere" is not HOST:PORT/);
  });

  test('an invalid policy at start-up exits 64 with file, line and problem', async () => {
    const r = await run('sidecar.ts', [
      '--policy-file',
      bad,
      '--listen',
      '127.0.0.1:0',
      '--admin-listen',
      '127.0.0.1:0',
    ]);
    assert.equal(r.code, 64);
    assert.match(r.stderr, /bad\.yaml:6:\d+: error: spec\.defaults\.timeouts\.responseHeader: unknown field/);
  });

  test('an unreadable policy file exits 64', async () => {
    const r = await run('sidecar.ts', [
      '--policy-file',
      join(dir, 'missing.yaml'),
      '--listen',
      '127.0.0.1:0',
      '--admin-listen',
      '127.0.0.1:0',
    ]);
    assert.equal(r.code, 64);
    assert.match(r.stderr, /cannot read .*missing\.yaml: ENOENT/);
  });
});

describe('tetherctl validate', () => {
  test('a good file: exit 0 and a summary', async () => {
    const r = await run('tetherctl.ts', ['validate', good]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /good\.yaml: valid TrafficPolicy "t", 1 destination/);
  });

  test('a bad file: exit 1, each problem with line:column', async () => {
    const r = await run('tetherctl.ts', ['validate', good, bad]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /bad\.yaml:6:\d+: error: .*did you mean "responseHeaders"/);
    assert.match(r.stdout, /bad\.yaml: invalid \(1 error\(s\)\)/);
  });

  test('a contradictory file: warnings printed, exit 0', async () => {
    const r = await run('tetherctl.ts', ['validate', contradictory]);
    assert.equal(r.code, 0);
    assert.match(
      r.stdout,
      /warn\.yaml:6:\d+: warning: spec\.defaults\.timeouts\.connect: connect \(3s\) is longer than responseHeaders \(1s\)/,
    );
  });

  test('a ConfigMap manifest is validated through its policy.yaml key', async () => {
    const r = await run('tetherctl.ts', ['validate', configMap]);
    assert.equal(r.code, 0, r.stdout);
    assert.match(r.stdout, /ConfigMap tether-policy data\.policy\.yaml\): valid/);
  });

  test('no file is a usage error', async () => {
    assert.equal((await run('tetherctl.ts', ['validate'])).code, 64);
    assert.equal((await run('tetherctl.ts', ['frobnicate'])).code, 64);
  });
});
