// The Dockerfile cannot be built here (no engine), so its promises are checked: what it copies exists and
// passes .dockerignore, its entrypoint script dispatches to the real binaries, and production dependencies
// cover every runtime import.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { PROXY_UID, TETHER_VERSION } from '../src/inject/names.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DOCKERFILE = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
const PKG = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  engines: { node: string };
  dependencies: Record<string, string>;
};

/** Dockerfile instructions with line continuations joined; heredoc bodies kept apart. */
function instructions(): { line: string; heredoc?: string }[] {
  const out: { line: string; heredoc?: string }[] = [];
  const lines = DOCKERFILE.split('\n');
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i] ?? '';
    if (/^\s*(#|$)/.test(line)) continue;
    while (line.endsWith('\\')) line = line.slice(0, -1) + ' ' + (lines[++i] ?? '').trim();
    const here = /<<'?(\w+)'?/.exec(line);
    if (here) {
      const body: string[] = [];
      while (++i < lines.length && lines[i] !== here[1]) body.push(lines[i] ?? '');
      out.push({ line, heredoc: body.join('\n') + '\n' });
    } else out.push({ line });
  }
  return out;
}

/** .dockerignore semantics for the patterns used here: last match wins, `!` re-includes, `*` is everything. */
function ignored(path: string): boolean {
  const patterns = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  let out = false;
  for (const p of patterns) {
    const negated = p.startsWith('!');
    const pat = (negated ? p.slice(1) : p).replace(/\/$/, '');
    if (pat === '*' || path === pat || path.startsWith(pat + '/')) out = !negated;
  }
  return out;
}

function entrypointScript(): string {
  const copy = instructions().find(
    (i) => i.heredoc !== undefined && i.line.includes('/usr/local/bin/tether'),
  );
  assert.ok(copy?.heredoc, 'the Dockerfile writes its entrypoint with a COPY heredoc');
  return copy.heredoc;
}

describe('Dockerfile', () => {
  test('every path it copies from the build context exists and is let through by .dockerignore', () => {
    const copies = instructions().filter(
      (i) => /^COPY\s/.test(i.line) && !i.line.includes('--from=') && i.heredoc === undefined,
    );
    assert.ok(copies.length >= 3);
    for (const c of copies) {
      const words = c.line
        .split(/\s+/)
        .slice(1)
        .filter((w) => !w.startsWith('--'));
      for (const src of words.slice(0, -1)) {
        assert.ok(existsSync(join(ROOT, src)), `COPY ${src}: missing in the repository`);
        assert.equal(ignored(src), false, `COPY ${src}: excluded by .dockerignore`);
      }
    }
    for (const keptOut of ['node_modules', '.git', 'test', 'e2e', 'bench', 'charts'])
      assert.ok(ignored(keptOut), keptOut);
  });

  test('production dependencies only, the Node major from package.json, the proxy UID as a numeric USER', () => {
    assert.match(DOCKERFILE, /npm ci --omit=dev/);
    const nodeMajor = /node:(\d+)-/.exec(DOCKERFILE)?.[1];
    assert.equal(nodeMajor, /(\d+)/.exec(PKG.engines.node)?.[1]);
    assert.match(DOCKERFILE, new RegExp(`^USER ${PROXY_UID}:${PROXY_UID}$`, 'm'));
    for (const label of ['title', 'version', 'revision', 'source', 'licenses'])
      assert.match(DOCKERFILE, new RegExp(`org\\.opencontainers\\.image\\.${label}=`));
  });

  test('every runtime import in cmd/ and src/ is a Node builtin or a production dependency', () => {
    const files: string[] = [];
    const walk = (dir: string): void => {
      for (const n of readdirSync(dir)) {
        const p = join(dir, n);
        if (statSync(p).isDirectory()) walk(p);
        else if (p.endsWith('.ts')) files.push(p);
      }
    };
    walk(join(ROOT, 'cmd'));
    walk(join(ROOT, 'src'));
    const missing: string[] = [];
    const seen = new Set<string>();
    for (const f of files) {
      const text = readFileSync(f, 'utf8');
      for (const m of text.matchAll(
        /^(?:import|export)\s+(?!type\s)[^;]*?from\s+'([^']+)'|import\(\s*'([^']+)'\s*\)/gms,
      )) {
        const spec = m[1] ?? m[2] ?? '';
        if (spec.startsWith('.') || spec.startsWith('node:') || builtinModules.includes(spec)) continue;
        const pkg = spec.startsWith('@')
          ? spec.split('/').slice(0, 2).join('/')
          : (spec.split('/')[0] ?? spec);
        seen.add(pkg);
        if (!(pkg in PKG.dependencies)) missing.push(`${f.slice(ROOT.length)} imports ${spec}`);
      }
    }
    for (const pkg of ['pino', 'yaml', 'fast-json-patch'])
      assert.ok(seen.has(pkg), `the scan saw no import of ${pkg}`);
    assert.deepEqual(
      missing,
      [],
      'imported at run time but not in dependencies (npm ci --omit=dev leaves it out)',
    );
  });

  describe('the entrypoint script', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-entrypoint-'));
    const script = join(dir, 'tether');
    writeFileSync(script, entrypointScript(), { mode: 0o755 });
    const nodeDir = dirname(process.execPath);
    const run = (args: string[]) =>
      spawnSync('sh', [script, ...args], {
        encoding: 'utf8',
        timeout: 30_000,
        env: { PATH: `${nodeDir}:/usr/bin:/bin`, TETHER_HOME: ROOT },
      });

    test('tetherctl, sidecar and injector reach the real binaries', () => {
      const v = run(['tetherctl', 'version']);
      assert.equal(v.status, 0, v.stderr);
      assert.equal(v.stdout.trim(), `tetherctl ${TETHER_VERSION}`);
      const sc = run(['sidecar', '--help']);
      assert.equal(sc.status, 0, sc.stderr);
      assert.match(sc.stdout, /tether-sidecar/);
      const inj = run(['injector', '--help']);
      assert.equal(inj.status, 0, inj.stderr);
      assert.match(inj.stdout, /tether-injector/);
      assert.doesNotMatch(sc.stderr + inj.stderr, /DEP0060/);
    });

    test('flags pass through; an unknown command exits 64', () => {
      const bad = run(['injector', '--sidecar-mode', 'sideways']);
      assert.equal(bad.status, 64);
      assert.match(bad.stderr, /--sidecar-mode: "sideways"/);
      const unknown = run(['proxy']);
      assert.equal(unknown.status, 64);
      assert.match(unknown.stderr, /unknown command "proxy"/);
      rmSync(dir, { recursive: true, force: true });
    });
  });
});
