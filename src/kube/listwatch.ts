// Keeps one named ConfigMap in view: list, then watch from the list's resourceVersion; relists on 410, restarts silent watches, backs off with jitter.

import type { Logger } from '../telemetry/log.ts';
import { sleep, type Clock, type Timer } from '../resilience/clock.ts';
import type { ConfigMapObject, KubeApi, KubeError, WatchEvent, WatchHandle } from './client.ts';

export interface ListWatchOptions {
  namespace: string;
  name: string;
  /**
   * A watch that delivers nothing (no event, no bookmark) for this long is presumed dead and
   * restarted from the last resourceVersion. The API server sends a bookmark about once a minute
   * (kubernetes#90249), so a live watch is never silent for long; a half-open TCP connection can
   * otherwise hang for the kernel's ~15 minute retransmission timeout (client-node#364, #596, #3020).
   */
  idleMs: number;
  /** Server-side watch length; each watch asks for a random length in [min, 2·min) so that many pods do not reconnect in step (client-go does the same). */
  watchTimeoutSeconds: number;
  /** Reconnect backoff: exponential from baseMs, capped at maxMs, "equal jitter" so that retries never bunch at zero (client-node#1933). */
  backoff: { baseMs: number; maxMs: number };
  /** Bound on a list call and on connecting a watch. */
  requestTimeoutMs: number;
  clock: Clock;
  random?: () => number;
  log: Logger;
}

/** What the watcher knows, for /debug/policy and for tests. */
export interface ListWatchState {
  namespace: string;
  name: string;
  /** The first list has succeeded: the object (or its absence) is known. */
  synced: boolean;
  /** A watch is established and has not failed since. */
  watching: boolean;
  resourceVersion: string | null;
  lists: number;
  watches: number;
  consecutiveFailures: number;
  lastError: string | null;
}

type WatchOutcome =
  | { kind: 'closed'; events: number; ms: number }
  | { kind: 'expired'; error: KubeError }
  | { kind: 'idle' }
  | { kind: 'failed'; error: KubeError }
  | { kind: 'stopped' };

/** HTTP 410 Gone, as a status or inside a watch's ERROR event: the resourceVersion was compacted away. */
function isExpired(err: KubeError): boolean {
  return err.status === 410 || err.reason === 'Expired' || err.reason === 'Gone';
}

export class ListWatch {
  private readonly opts: ListWatchOptions;
  private readonly api: KubeApi;
  private readonly onChange: (obj: ConfigMapObject | undefined) => void;
  private readonly random: () => number;
  private readonly stopper = new AbortController();
  private running: Promise<void> | undefined;
  private current: { stop(): void } | undefined;
  private readonly st: ListWatchState;

  /** `onChange` gets the object after every list and on every add/modify, `undefined` when it is absent or deleted. */
  constructor(opts: ListWatchOptions, api: KubeApi, onChange: (obj: ConfigMapObject | undefined) => void) {
    this.opts = opts;
    this.api = api;
    this.onChange = onChange;
    this.random = opts.random ?? Math.random;
    this.st = {
      namespace: opts.namespace,
      name: opts.name,
      synced: false,
      watching: false,
      resourceVersion: null,
      lists: 0,
      watches: 0,
      consecutiveFailures: 0,
      lastError: null,
    };
  }

  state(): Readonly<ListWatchState> {
    return { ...this.st };
  }

  start(): void {
    this.running ??= this.loop().catch((err: unknown) => {
      // The loop catches every API failure itself; reaching here is a bug, and the policy in force stays.
      this.opts.log.error(
        { err, configMap: this.ref },
        'policy watch loop crashed; the policy in force stays',
      );
    });
  }

  async stop(): Promise<void> {
    this.stopper.abort(new Error('stopped'));
    this.current?.stop();
    await this.running;
  }

  private get ref(): string {
    return `${this.opts.namespace}/${this.opts.name}`;
  }

  private get stopped(): boolean {
    return this.stopper.signal.aborted;
  }

  /** Delay before the next attempt after `failures` consecutive failures: uniform in [c/2, c], c = min(max, base·2^(failures-1)). */
  backoffMs(failures: number): number {
    const ceiling = Math.min(
      this.opts.backoff.maxMs,
      this.opts.backoff.baseMs * 2 ** Math.max(0, failures - 1),
    );
    return Math.round(ceiling / 2 + (this.random() * ceiling) / 2);
  }

  private async pause(): Promise<void> {
    const ms = this.backoffMs(this.st.consecutiveFailures);
    try {
      await sleep(this.opts.clock, ms, this.stopper.signal);
    } catch {
      /* stopped */
    }
  }

  private fail(err: KubeError, what: string): void {
    this.st.consecutiveFailures++;
    this.st.watching = false;
    this.st.lastError = err.message;
    // The first failure of a streak is worth a warning; the rest repeat it, so they go to debug.
    const level = this.st.consecutiveFailures === 1 ? 'warn' : 'debug';
    this.opts.log[level](
      {
        configMap: this.ref,
        err: err.message,
        status: err.status,
        failures: this.st.consecutiveFailures,
        retryInMs: this.backoffMs(this.st.consecutiveFailures),
      },
      `${what} failed; the policy in force stays, retrying with backoff`,
    );
  }

  private succeed(): void {
    if (this.st.consecutiveFailures > 0)
      this.opts.log.info({ configMap: this.ref }, 'Kubernetes API reachable again');
    this.st.consecutiveFailures = 0;
    this.st.lastError = null;
  }

  private async loop(): Promise<void> {
    let needList = true;
    while (!this.stopped) {
      if (needList) {
        let listed;
        try {
          listed = await this.api.listConfigMap(
            this.opts.namespace,
            this.opts.name,
            this.opts.requestTimeoutMs,
          );
        } catch (err) {
          if (this.stopped) return;
          this.fail(err as KubeError, 'list');
          await this.pause();
          continue;
        }
        if (this.stopped) return;
        this.st.lists++;
        this.st.resourceVersion = listed.resourceVersion;
        this.st.synced = true;
        this.succeed();
        needList = false;
        this.onChange(listed.item);
      }
      const outcome = await this.watchOnce(this.st.resourceVersion ?? '');
      switch (outcome.kind) {
        case 'stopped':
          return;
        case 'closed':
          // The server ended the watch (its timeoutSeconds): resume from the last resourceVersion.
          // A watch that ends at once with nothing in it is a misbehaving server or proxy: back off.
          if (outcome.events === 0 && outcome.ms < 1000) {
            this.st.consecutiveFailures++;
            await this.pause();
          }
          break;
        case 'expired':
          this.opts.log.info(
            { configMap: this.ref, resourceVersion: this.st.resourceVersion, err: outcome.error.message },
            'watch resourceVersion expired (410 Gone); relisting',
          );
          needList = true;
          break;
        case 'idle':
          this.st.consecutiveFailures++;
          this.st.watching = false;
          this.st.lastError = `watch silent for ${this.opts.idleMs}ms`;
          this.opts.log.warn(
            { configMap: this.ref, idleMs: this.opts.idleMs },
            'watch went silent (no event or bookmark); restarting it',
          );
          await this.pause();
          break;
        case 'failed':
          if (isExpired(outcome.error)) {
            needList = true;
            this.opts.log.info(
              { configMap: this.ref, err: outcome.error.message },
              'watch resourceVersion expired (410 Gone); relisting',
            );
            break;
          }
          this.fail(outcome.error, 'watch');
          await this.pause();
          break;
      }
    }
  }

  private watchOnce(resourceVersion: string): Promise<WatchOutcome> {
    if (this.stopped) return Promise.resolve({ kind: 'stopped' });
    const { clock, idleMs } = this.opts;
    const started = clock.now();
    const timeoutSeconds = Math.floor(this.opts.watchTimeoutSeconds * (1 + this.random()));
    let events = 0;
    let idle: Timer | undefined;
    let handle: WatchHandle | undefined;
    return new Promise<WatchOutcome>((resolve) => {
      let settled = false;
      const settle = (o: WatchOutcome): void => {
        if (settled) return;
        settled = true;
        idle?.cancel();
        this.stopper.signal.removeEventListener('abort', onStop);
        handle?.stop();
        this.current = undefined;
        resolve(o);
      };
      const armIdle = (): void => {
        idle?.cancel();
        idle = clock.setTimeout(() => settle({ kind: 'idle' }), idleMs);
      };
      const onStop = (): void => settle({ kind: 'stopped' });
      const onEvent = (e: WatchEvent): void => {
        if (settled) return;
        armIdle();
        events++;
        if (e.type === 'ERROR') {
          settle(
            isExpired(e.error) ? { kind: 'expired', error: e.error } : { kind: 'failed', error: e.error },
          );
          return;
        }
        this.st.watching = true;
        this.succeed();
        if (e.type === 'BOOKMARK') {
          this.st.resourceVersion = e.resourceVersion;
          return;
        }
        this.st.resourceVersion = e.object.resourceVersion;
        this.onChange(e.type === 'DELETED' ? undefined : e.object);
      };
      const onOpen = (): void => {
        if (settled) return;
        this.st.watching = true;
        this.succeed();
      };
      this.st.watches++;
      this.stopper.signal.addEventListener('abort', onStop, { once: true });
      armIdle();
      handle = this.api.watchConfigMap(
        this.opts.namespace,
        this.opts.name,
        // The idle timer above also covers a connect that hangs; client-node's own timer is only a backstop behind it.
        { resourceVersion, timeoutSeconds, backstopMs: idleMs + this.opts.requestTimeoutMs, onOpen },
        onEvent,
        (err) =>
          settle(
            err ? { kind: 'failed', error: err } : { kind: 'closed', events, ms: clock.now() - started },
          ),
      );
      if (settled) handle.stop();
      else this.current = handle;
    });
  }
}
