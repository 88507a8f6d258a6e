// The file policy source: loads a policy file and re-applies it when it changes; a bad edit keeps the last good policy.

import { watchFile, unwatchFile, type Stats } from 'node:fs';
import type { Logger } from '../../telemetry/log.ts';
import { loadPolicyFile } from '../load.ts';
import type { PolicyStore } from '../store.ts';
import { formatProblem } from '../validate.ts';

export interface FileSourceOptions {
  path: string;
  /** How often the file is stat'ed; stat polling survives editors' rename-over and ConfigMap symlink swaps, which fs.watch misses. */
  pollMs: number;
  label?: string;
}

export class FilePolicySource {
  private readonly opts: FileSourceOptions;
  private readonly store: PolicyStore;
  private readonly log: Logger;
  private lastVersion: string | undefined;
  private reloading: Promise<void> = Promise.resolve();
  private readonly listener = (curr: Stats, prev: Stats): void => {
    if (curr.mtimeMs === prev.mtimeMs && curr.size === prev.size && curr.ino === prev.ino) return;
    this.reloading = this.reloading.then(() => this.reload());
  };

  constructor(opts: FileSourceOptions, store: PolicyStore, log: Logger) {
    this.opts = opts;
    this.store = store;
    this.log = log;
  }

  private get label(): string {
    return this.opts.label ?? `file:${this.opts.path}`;
  }

  /** First load; returns the problems so the caller can refuse to start on a bad file. */
  async start(): Promise<{ ok: true } | { ok: false; messages: string[] }> {
    const r = await loadPolicyFile(this.opts.path);
    if (!r.ok) return { ok: false, messages: r.problems.map((p) => formatProblem(p, this.opts.path)) };
    for (const w of r.warnings) this.log.warn({ source: this.label }, formatProblem(w, this.opts.path));
    this.lastVersion = r.policy.version;
    this.store.apply(r.policy, this.label);
    watchFile(this.opts.path, { interval: this.opts.pollMs, persistent: false }, this.listener);
    return { ok: true };
  }

  async reload(): Promise<void> {
    const r = await loadPolicyFile(this.opts.path);
    if (!r.ok) {
      this.log.error(
        { source: this.label, problems: r.problems.map((p) => formatProblem(p, this.opts.path)) },
        'policy rejected; the previous policy stays in force',
      );
      this.store.reject(this.label, r.problems);
      return;
    }
    if (r.policy.version === this.lastVersion) return;
    for (const w of r.warnings) this.log.warn({ source: this.label }, formatProblem(w, this.opts.path));
    this.lastVersion = r.policy.version;
    this.store.apply(r.policy, this.label);
    this.log.info({ source: this.label, version: r.policy.version }, 'policy applied');
  }

  stop(): void {
    unwatchFile(this.opts.path, this.listener);
  }
}
