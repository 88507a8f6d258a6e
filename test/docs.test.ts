// Keeps the documentation true: every TrafficPolicy example in README.md and docs/ passes the validator the sidecar uses.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadPolicyText } from '../src/policy/load.ts';
import { formatProblem } from '../src/policy/validate.ts';

const root = new URL('..', import.meta.url).pathname;
const docs = [
  'README.md',
  ...readdirSync(join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];

test('every TrafficPolicy example in the docs is valid', () => {
  let examples = 0;
  for (const doc of docs) {
    const text = readFileSync(join(root, doc), 'utf8');
    for (const m of text.matchAll(/```yaml\n([\s\S]*?)```/g)) {
      const block = m[1] ?? '';
      if (!block.includes('kind: TrafficPolicy')) continue;
      examples++;
      const r = loadPolicyText(block);
      assert.ok(
        r.ok,
        `${doc}: example is invalid:\n${r.ok ? '' : r.problems.map((p) => formatProblem(p)).join('\n')}`,
      );
    }
  }
  assert.ok(examples >= 2, `found only ${examples} examples`);
});
