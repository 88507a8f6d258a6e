// Holds the policy in force and swaps it atomically; remembers where it came from and why the last reload failed.

import { EventEmitter } from 'node:events';
import { Matcher } from './match.ts';
import type { EffectivePolicy } from './resolve.ts';
import type { Problem } from './validate.ts';

export interface ReloadFailure {
  at: Date;
  source: string;
  problems: Problem[];
}

export interface PolicyStoreEvents {
  applied: [policy: EffectivePolicy, source: string];
  rejected: [failure: ReloadFailure];
}

/**
 * Readers call current() once per request and keep the Matcher they got, so a swap in the middle
 * of a request never mixes two policies.
 */
export class PolicyStore extends EventEmitter<PolicyStoreEvents> {
  private matcher: Matcher | undefined;
  private src = 'none';
  private appliedAt: Date | undefined;
  private failure: ReloadFailure | undefined;
  private pendingReason: string | null = null;
  private sourceDetail: (() => unknown) | undefined;

  get loaded(): boolean {
    return this.matcher !== undefined;
  }

  current(): Matcher {
    if (!this.matcher) throw new Error('no policy loaded yet');
    return this.matcher;
  }

  /**
   * `stillFailing`: a source made of several documents applies a change to a good one while another
   * is still rejected; that rejection (as returned by reject()) stays visible until it is fixed.
   */
  apply(policy: EffectivePolicy, source: string, opts: { stillFailing?: ReloadFailure } = {}): void {
    this.matcher = new Matcher(policy);
    this.src = source;
    this.appliedAt = new Date();
    this.failure = opts.stillFailing;
    this.emit('applied', policy, source);
  }

  /**
   * Why the policy in force is not yet the configured one (a source still waiting for its first
   * sync), or null. Readiness reports it; the data path serves the policy in force meanwhile.
   */
  get pending(): string | null {
    return this.pendingReason;
  }

  setPending(reason: string | null): void {
    this.pendingReason = reason;
  }

  /** Source-specific state for /debug/policy (e.g. each ConfigMap's resourceVersion and the watch's health), read when asked. */
  setDetail(detail: () => unknown): void {
    this.sourceDetail = detail;
  }

  /** A rejected reload changes nothing in force; it is remembered for /debug/policy. */
  reject(source: string, problems: Problem[]): ReloadFailure {
    const failure = { at: new Date(), source, problems };
    this.failure = failure;
    this.emit('rejected', failure);
    return failure;
  }

  status(): {
    source: string;
    version: string | null;
    appliedAt: Date | null;
    lastError: ReloadFailure | null;
    pending: string | null;
    detail: unknown;
  } {
    return {
      source: this.src,
      version: this.matcher?.policy.version ?? null,
      appliedAt: this.appliedAt ?? null,
      lastError: this.failure ?? null,
      pending: this.pendingReason,
      detail: this.sourceDetail?.() ?? null,
    };
  }
}
