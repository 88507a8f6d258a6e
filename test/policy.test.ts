// Policy validation, matching and merging as users meet them: clear messages with line and column, warnings for contradictions, precedence.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseDuration } from '../src/policy/duration.ts';
import { loadPolicyText } from '../src/policy/load.ts';
import { Matcher } from '../src/policy/match.ts';
import { resolvePolicy } from '../src/policy/resolve.ts';
import { parsePolicy } from '../src/policy/validate.ts';

const head = 'apiVersion: tether.io/v1alpha1\nkind: TrafficPolicy\nmetadata: { name: t }\n';

function problems(yaml: string): string[] {
  const r = parsePolicy(yaml);
  assert.equal(r.ok, false, 'expected the policy to be rejected');
  return r.ok ? [] : r.problems.map((p) => `${p.line ?? '?'}:${p.column ?? '?'} ${p.path}: ${p.message}`);
}

describe('durations', () => {
  test('accepts unit-suffixed and compound durations', () => {
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('2s'), 2000);
    assert.equal(parseDuration('1m30s'), 90_000);
    assert.equal(parseDuration('1.5s'), 1500);
    assert.equal(parseDuration('1h'), 3_600_000);
  });
  test('refuses bare numbers, unknown units and negatives with a hint', () => {
    const bare = parseDuration('250');
    assert.ok(typeof bare === 'object' && /add a unit: "250ms"/.test(bare.error));
    for (const bad of ['5 seconds', '-1s', '1d', '', 'fast'])
      assert.equal(typeof parseDuration(bad), 'object', bad);
    assert.equal(typeof parseDuration(5), 'object');
  });
});

describe('validation', () => {
  test('the architecture example policy is valid, with the one warning its own rule implies', () => {
    const r = loadPolicyText(
      head +
        `spec:
  defaults:
    timeouts: { connect: 1s, responseHeaders: 15s, idle: 60s, total: 30s }
    retries: { attempts: 0 }
    circuitBreaker: { failureRatio: 0.5, minimumRequests: 20, window: 10s, openFor: 30s, maxConcurrent: 1000 }
  destinations:
    - name: payments
      match: { host: payments.shop.svc.cluster.local, port: 8080 }
      timeouts: { connect: 250ms, responseHeaders: 2s, idle: 30s, total: 5s }
      retries:
        attempts: 2
        on: [connect-failure, connection-reset, "502", "503", "504", "429"]
        backoff: { base: 25ms, max: 250ms }
        budget: { ratio: 0.2, minPerSecond: 10 }
        maxBodyBytes: 65536
      circuitBreaker: { failureRatio: 0.5, minimumRequests: 10, window: 10s, openFor: 15s, maxConcurrent: 200 }
      critical: true
`,
    );
    assert.ok(r.ok);
    // 3 tries × 2s + 2 × 250ms backoff = 6.5s cannot fit in total: 5s — the example contradicts itself.
    assert.deepEqual(
      r.warnings.map((w) => w.path),
      ['spec.destinations[0].timeouts.total'],
    );
    const p = r.policy.destinations[0];
    assert.equal(p?.settings.timeouts.connectMs, 250);
    assert.deepEqual([...(p?.settings.retries.statuses ?? [])], [502, 503, 504, 429]);
    assert.equal(p?.critical, true);
  });

  test('unknown fields are errors with position and a suggestion', () => {
    const msgs = problems(head + 'spec:\n  defaults:\n    timeouts: { conect: 1s }\n');
    assert.equal(msgs.length, 1);
    assert.match(
      msgs[0] ?? '',
      /^6:17 spec\.defaults\.timeouts\.conect: unknown field "conect" \(did you mean "connect"\?\)/,
    );
  });

  test('every problem is reported at once, not just the first', () => {
    const msgs = problems(
      head +
        `spec:
  outbound: closed
  destinations:
    - name: Payments
      match: { host: "pay ments", port: 70000 }
      retries: { attempts: 11, on: [sometimes] }
      circuitBreaker: { failureRatio: 1.5 }
    - match: { host: a.b }
`,
    );
    const text = msgs.join('\n');
    for (const want of [
      'spec.outbound',
      'destinations[0].name',
      'match.port',
      'retries.attempts',
      'retries.on[0]',
      'failureRatio',
      'destinations[1].name',
    ]) {
      assert.ok(text.includes(want), `missing a problem about ${want} in:\n${text}`);
    }
  });

  test('wrong apiVersion or kind, YAML syntax errors and several documents are rejected clearly', () => {
    assert.match(
      problems('apiVersion: v1\nkind: TrafficPolicy\nspec: {}\n').join(),
      /apiVersion: must be "tether\.io\/v1alpha1"/,
    );
    assert.match(problems(head + 'spec:\n  defaults: [\n').join(), /^\d+:\d+ \(yaml\)/);
    assert.match(
      problems(head + 'spec: {}\n---\n' + head + 'spec: {}\n').join(),
      /exactly one YAML document, found 2/,
    );
    assert.match(problems('').join(), /exactly one YAML document|empty/);
  });

  test('duplicate names and duplicate matches are rejected', () => {
    const text = problems(
      head +
        `spec:
  destinations:
    - { name: a, match: { host: x.svc, port: 80 } }
    - { name: a, match: { host: y.svc } }
    - { name: c, match: { host: x.svc, port: 80 } }
`,
    ).join('\n');
    assert.match(text, /already used by destinations\[0\]/);
    assert.match(text, /same host and port as destinations\[0\]/);
  });

  test('contradictory layers produce warnings, not errors', () => {
    const r = loadPolicyText(
      head +
        `spec:
  destinations:
    - name: slow
      match: { host: slow.svc }
      timeouts: { connect: 3s, responseHeaders: 2s, idle: 1s, total: 5s }
      retries: { attempts: 2 }
    - name: noretry
      match: { host: n.svc }
      retries: { on: ["503"] }
`,
    );
    assert.ok(r.ok);
    const text = r.warnings.map((w) => `${w.path}: ${w.message}`).join('\n');
    assert.match(text, /connect \(3s\) is longer than responseHeaders \(2s\)/);
    assert.match(text, /idle \(1s\) is shorter than responseHeaders/);
    assert.match(text, /3 × 2s \+ 2 × 250ms = 6500ms exceeds total \(5s\)/);
    assert.match(text, /retries\.on: has no effect while retries\.attempts is 0/);
  });

  test('"0s" turns an optional layer off; connect may not be 0', () => {
    const r = loadPolicyText(
      head + 'spec:\n  defaults:\n    timeouts: { idle: 0s, total: 0s, responseHeaders: 0s }\n',
    );
    assert.ok(r.ok);
    assert.equal(r.policy.defaults.timeouts.idleMs, null);
    assert.equal(r.policy.defaults.timeouts.totalMs, null);
    assert.match(
      problems(head + 'spec:\n  defaults:\n    timeouts: { connect: 0s }\n').join(),
      /longer than 0s/,
    );
  });
});

describe('destination matching', () => {
  const r = loadPolicyText(
    head +
      `spec:
  defaults:
    timeouts: { connect: 1s }
  destinations:
    - { name: exact-port, match: { host: api.example.com, port: 8443 }, timeouts: { connect: 101ms } }
    - { name: exact-host, match: { host: api.example.com }, timeouts: { connect: 102ms } }
    - { name: wild-deep, match: { host: "*.eu.example.com" }, timeouts: { connect: 103ms } }
    - { name: wild, match: { host: "*.example.com" }, timeouts: { connect: 104ms } }
    - { name: wild-port, match: { host: "*.example.com", port: 9000 }, timeouts: { connect: 105ms } }
`,
  );
  assert.ok(r.ok);
  const m = new Matcher(r.policy);
  const name = (h: string, p: number): string => m.lookup(h, p).rule?.name ?? 'default';

  test('exact host and port beats exact host beats wildcard beats defaults', () => {
    assert.equal(name('api.example.com', 8443), 'exact-port');
    assert.equal(name('api.example.com', 80), 'exact-host');
    assert.equal(name('a.eu.example.com', 80), 'wild-deep');
    assert.equal(name('b.example.com', 80), 'wild');
    assert.equal(name('b.example.com', 9000), 'wild-port');
    assert.equal(name('example.com', 80), 'default', 'a wildcard does not match the bare domain');
    assert.equal(name('other.org', 80), 'default');
    assert.equal(m.lookup('other.org', 80).settings.timeouts.connectMs, 1000);
  });
});

describe('merging mesh and namespace policies', () => {
  const parse = (y: string) => {
    const r = parsePolicy(head + y);
    assert.ok(r.ok);
    return r.spec;
  };
  const mesh = parse(`spec:
  defaults: { timeouts: { connect: 2s, idle: 30s } }
  destinations:
    - { name: payments, match: { host: pay.svc }, timeouts: { responseHeaders: 9s } }
    - { name: search, match: { host: search.svc }, critical: true }
`);
  const ns = parse(`spec:
  defaults: { timeouts: { connect: 500ms } }
  destinations:
    - { name: payments, match: { host: pay.svc }, timeouts: { responseHeaders: 1s } }
`);

  test('namespace wins per destination name; defaults overlay field by field', () => {
    const p = resolvePolicy([mesh, ns]);
    assert.equal(p.defaults.timeouts.connectMs, 500);
    assert.equal(p.defaults.timeouts.idleMs, 30_000, 'mesh idle kept where the namespace says nothing');
    const pay = p.destinations.find((d) => d.name === 'payments');
    assert.equal(pay?.settings.timeouts.responseHeadersMs, 1000);
    assert.ok(p.destinations.some((d) => d.name === 'search' && d.critical));
    assert.notEqual(p.version, resolvePolicy([mesh]).version);
    assert.equal(p.version, resolvePolicy([mesh, ns]).version, 'equal policies have equal versions');
  });
});
