// The resilience primitives on a manual clock: backoff bounds, the retry budget window, and cancellable sleeps — no real waiting.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { fullJitterBackoff } from '../src/resilience/backoff.ts';
import { RetryBudget } from '../src/resilience/budget.ts';
import { ManualClock, sleep } from '../src/resilience/clock.ts';

describe('full-jitter backoff', () => {
  test('stays within [0, min(max, base·2^(n-1))]', () => {
    assert.equal(
      fullJitterBackoff(1, 25, 250, () => 0.999),
      24,
    );
    assert.equal(
      fullJitterBackoff(3, 25, 250, () => 0.999),
      99,
    );
    assert.equal(
      fullJitterBackoff(10, 25, 250, () => 0.999),
      249,
    );
    assert.equal(
      fullJitterBackoff(4, 25, 250, () => 0),
      0,
    );
    for (let i = 0; i < 1000; i++) {
      const d = fullJitterBackoff(1 + (i % 8), 25, 250);
      assert.ok(d >= 0 && d < 250);
    }
  });
});

describe('retry budget', () => {
  test('allows ratio × requests plus minPerSecond × window, then refuses', () => {
    const clock = new ManualClock();
    const b = new RetryBudget(0.2, 1, clock);
    for (let i = 0; i < 100; i++) b.recordRequest();
    let granted = 0;
    while (b.tryRetry()) granted++;
    assert.equal(granted, 30, '0.2 × 100 + 1/s × 10s');
  });

  test('the window slides: old requests and retries stop counting after 10s', () => {
    const clock = new ManualClock();
    const b = new RetryBudget(0.5, 0, clock);
    for (let i = 0; i < 10; i++) b.recordRequest();
    let granted = 0;
    while (b.tryRetry()) granted++;
    assert.equal(granted, 5);
    clock.advance(10_500);
    assert.equal(b.tryRetry(), false, 'no deposits in the new window');
    b.recordRequest();
    b.recordRequest();
    assert.equal(b.tryRetry(), true);
  });
});

describe('clock', () => {
  test('sleep resolves when the manual clock passes its time and rejects when aborted', async () => {
    const clock = new ManualClock();
    let done = false;
    const p = sleep(clock, 100).then(() => (done = true));
    clock.advance(99);
    await Promise.resolve();
    assert.equal(done, false);
    clock.advance(1);
    await p;
    assert.equal(done, true);
    const ac = new AbortController();
    const q = sleep(clock, 100, ac.signal);
    ac.abort(new Error('gone'));
    await assert.rejects(q, /gone/);
    assert.equal(clock.pending, 0, 'an aborted sleep leaves no timer behind');
  });
});
