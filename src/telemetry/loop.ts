// Measures event-loop stalls with a timer that should fire every tick: how late it fires is how long the loop was blocked.

/** How often the loop is sampled: 4 samples a second cost nothing and catch any stall worth reporting. */
const TICK_MS = 250;

export interface LoopMonitorOptions {
  /** A stall longer than this makes the loop "stalled". */
  stallMs: number;
  /** How long a stall is remembered, so a probe that runs after the stall still sees it. */
  windowMs: number;
}

/**
 * Liveness defaults: a proxy whose loop is blocked for 5s has hung every request in flight; Node
 * does not pause that long for GC. Remembered for 30s, three kubelet probes at the default 10s
 * period see it, so one long stall can restart a pod but a single slow tick never does.
 */
export const LOOP_DEFAULTS: LoopMonitorOptions = { stallMs: 5000, windowMs: 30_000 };

export class LoopMonitor {
  private readonly opts: LoopMonitorOptions;
  private readonly timer: NodeJS.Timeout;
  private lastTick = performance.now();
  /** Late ticks within the window, oldest first; at most windowMs / TICK_MS entries. */
  private readonly late: { at: number; lagMs: number }[] = [];

  constructor(opts: LoopMonitorOptions = LOOP_DEFAULTS) {
    this.opts = opts;
    this.timer = setInterval(() => this.tick(), TICK_MS).unref();
  }

  private tick(): void {
    const now = performance.now();
    const lag = now - this.lastTick - TICK_MS;
    this.lastTick = now;
    this.prune(now);
    if (lag > TICK_MS) this.late.push({ at: now, lagMs: lag });
  }

  private prune(now: number): void {
    while (this.late.length > 0 && now - (this.late[0]?.at ?? now) > this.opts.windowMs) this.late.shift();
  }

  /** The longest stall within the window, including one still going on (the tick that is late right now). */
  lagMs(): number {
    const now = performance.now();
    this.prune(now);
    let worst = Math.max(0, now - this.lastTick - TICK_MS);
    for (const l of this.late) worst = Math.max(worst, l.lagMs);
    return Math.round(worst);
  }

  stalled(): boolean {
    return this.lagMs() > this.opts.stallMs;
  }

  get stallMs(): number {
    return this.opts.stallMs;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
