// Finds the rule for a destination: exact host and port, then exact host, then the longest "*.suffix" wildcard, then defaults.

import type { EffectivePolicy } from './resolve.ts';
import type { DestinationRule, Settings } from './schema.ts';

export interface Route {
  /** The policy destination's name, or null when `defaults` applied. */
  rule: DestinationRule | null;
  settings: Settings;
}

export class Matcher {
  private readonly exact = new Map<string, DestinationRule>();
  private readonly anyPort = new Map<string, DestinationRule>();
  /** Longest suffix first, port-specific before any-port at equal length. */
  private readonly wildcards: DestinationRule[];
  readonly policy: EffectivePolicy;

  constructor(policy: EffectivePolicy) {
    this.policy = policy;
    const wild: DestinationRule[] = [];
    for (const d of policy.destinations) {
      if (d.match.host.startsWith('*.')) wild.push(d);
      else if (d.match.port === null) this.anyPort.set(d.match.host, d);
      else this.exact.set(`${d.match.host}:${d.match.port}`, d);
    }
    this.wildcards = wild.sort(
      (a, b) => b.match.host.length - a.match.host.length || (b.match.port ?? 0) - (a.match.port ?? 0),
    );
  }

  /** `host` must already be lower-case without brackets or a trailing dot. */
  lookup(host: string, port: number): Route {
    const rule =
      this.exact.get(`${host}:${port}`) ??
      this.anyPort.get(host) ??
      this.wildcards.find(
        (w) => host.endsWith(w.match.host.slice(1)) && (w.match.port === null || w.match.port === port),
      ) ??
      null;
    return { rule, settings: rule ? rule.settings : this.policy.defaults };
  }
}
