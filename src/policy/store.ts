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

  get loaded(): boolean {
    return this.matcher !== undefined;
  }

  current(): Matcher {
    if (!this.matcher) throw new Error('no policy loaded yet');
    return this.matcher;
  }

  apply(policy: EffectivePolicy, source: string): void {
    this.matcher = new Matcher(policy);
    this.src = source;
    this.appliedAt = new Date();
    this.failure = undefined;
    this.emit('applied', policy, source);
  }

  /** A rejected reload changes nothing in force; it is remembered for /debug/policy. */
  reject(source: string, problems: Problem[]): void {
    this.failure = { at: new Date(), source, problems };
    this.emit('rejected', this.failure);
  }

  status(): {
    source: string;
    version: string | null;
    appliedAt: Date | null;
    lastError: ReloadFailure | null;
  } {
    return {
      source: this.src,
      version: this.matcher?.policy.version ?? null,
      appliedAt: this.appliedAt ?? null,
      lastError: this.failure ?? null,
    };
  }
}
