// One try against the upstream through http-proxy (the only module that uses it), with connect, response-header and idle timers on the socket.

import type { Agent, ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import httpProxy from 'http-proxy';
import { classifyUpstreamError } from '../../errors/classify.ts';
import { TetherError, type Phase } from '../../errors/words.ts';
import { formatDuration } from '../../policy/duration.ts';
import type { Clock, Timer } from '../../resilience/clock.ts';

export interface TryLimits {
  connectMs: number;
  responseHeadersMs: number | null;
  idleMs: number | null;
}

export interface TryTarget {
  host: string;
  port: number;
  /** host:port as shown to users. */
  authority: string;
  /** The request-target exactly as the app sent it: http-proxy would collapse "//" in paths. */
  path: string;
  agent: Agent;
  /** Extra request headers for this try only (the remaining deadline). */
  headers: Record<string, string>;
  /** Replayable body; undefined streams the app's request once. */
  body: Buffer | undefined;
  /** Counts request body bytes sent upstream, for the access log. */
  countSent?: (bytes: number) => void;
}

/**
 * Restarts on every byte in either direction; expiry means "nothing moved for idleMs". Shared by
 * the try and the response body that follows it, so one bound covers the whole exchange.
 */
export class IdleWatch {
  private timer: Timer | undefined;
  private readonly clock: Clock;
  private readonly ms: number | null;
  private readonly onIdle: () => void;

  constructor(clock: Clock, ms: number | null, onIdle: () => void) {
    this.clock = clock;
    this.ms = ms;
    this.onIdle = onIdle;
    this.touch();
  }

  touch(): void {
    if (this.ms === null) return;
    this.timer?.cancel();
    this.timer = this.clock.setTimeout(this.onIdle, this.ms);
  }

  stop(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }
}

/** Response headers are in; the body has not been read yet. */
export interface UpstreamResponse {
  readonly response: IncomingMessage;
  readonly request: ClientRequest;
  /** Keeps running through the body; the deliver stage re-targets its expiry. */
  readonly idle: IdleWatch;
  /** Where the try's idle expiry goes once the body is being delivered. */
  setIdleHandler(fn: (err: TetherError) => void): void;
  /** Throws the response away (a retry will follow): frees the socket without reading the body. */
  discard(): void;
}

const TRY = Symbol('tether.try');
type WithTry = IncomingMessage & { [TRY]?: Try };

class Try {
  phase: Phase = 'before-request';
  request: ClientRequest | undefined;
  private settled = false;
  private readonly timers: Timer[] = [];
  readonly idle: IdleWatch;
  private readonly target: TryTarget;
  private readonly clock: Clock;
  private readonly limits: TryLimits;
  private readonly resolve: (r: UpstreamResponse) => void;
  private readonly reject: (e: TetherError) => void;
  private onIdleAfterHeaders: (err: TetherError) => void = () => undefined;

  constructor(
    target: TryTarget,
    limits: TryLimits,
    clock: Clock,
    resolve: (r: UpstreamResponse) => void,
    reject: (e: TetherError) => void,
  ) {
    this.target = target;
    this.limits = limits;
    this.clock = clock;
    this.resolve = resolve;
    this.reject = reject;
    this.idle = new IdleWatch(clock, limits.idleMs, () => {
      const err = new TetherError(
        'idle_timeout',
        `no bytes to or from upstream ${target.authority} for ${formatDuration(limits.idleMs ?? 0)} (timeouts.idle)`,
        { destination: target.authority, phase: this.phase },
      );
      if (this.settled) this.onIdleAfterHeaders(err);
      else this.fail(err);
    });
    if (limits.responseHeadersMs !== null) {
      const ms = limits.responseHeadersMs;
      this.timers.push(
        clock.setTimeout(
          () =>
            this.fail(
              new TetherError(
                'response_timeout',
                `upstream ${target.authority} sent no response headers within ${formatDuration(ms)} (timeouts.responseHeaders, per try)`,
                { destination: target.authority, phase: this.phase },
              ),
            ),
          ms,
        ),
      );
    }
  }

  onProxyReq(req: ClientRequest): void {
    this.request = req;
    req.path = this.target.path;
    const socket = req.socket;
    if (!socket) return;
    if (socket.connecting) {
      this.phase = 'connect';
      const ms = this.limits.connectMs;
      const timer = this.clock.setTimeout(
        () =>
          this.fail(
            new TetherError(
              'connect_timeout',
              `upstream ${this.target.authority} accepted no connection within ${formatDuration(ms)} (timeouts.connect)`,
              { destination: this.target.authority, phase: 'connect' },
            ),
          ),
        ms,
      );
      this.timers.push(timer);
      socket.once('connect', () => {
        timer.cancel();
        this.phase = 'request-sent';
        this.idle.touch();
      });
    } else {
      this.phase = 'request-sent';
    }
  }

  onResponse(res: IncomingMessage): void {
    if (this.settled) {
      res.destroy();
      return;
    }
    this.phase = 'response-headers';
    this.settled = true;
    for (const t of this.timers) t.cancel();
    this.idle.touch();
    const request = this.request;
    if (!request) throw new Error('unreachable: response without a request');
    const idle = this.idle;
    const upstream: UpstreamResponse = {
      response: res,
      request,
      idle,
      setIdleHandler: (fn) => {
        this.onIdleAfterHeaders = fn;
      },
      discard: () => {
        idle.stop();
        // Destroying frees the pool slot at once; reading a large error body to keep the socket is not worth the wait.
        res.destroy();
      },
    };
    this.resolve(upstream);
  }

  fail(err: unknown): void {
    if (this.settled) return;
    this.settled = true;
    for (const t of this.timers) t.cancel();
    this.idle.stop();
    this.request?.destroy();
    this.reject(classifyUpstreamError(err, this.target.authority, this.phase));
  }

  /** Request body bytes went out. */
  sent(bytes: number): void {
    this.idle.touch();
    this.target.countSent?.(bytes);
  }
}

/**
 * Sends one try. Resolves when response headers arrive; rejects with a TetherError naming the
 * failure. `signal` aborts the try with its reason (deadline, or the app went away).
 */
export class Forwarder {
  private readonly proxy: httpProxy;
  private readonly clock: Clock;

  constructor(clock: Clock) {
    this.clock = clock;
    this.proxy = httpProxy.createProxyServer({
      selfHandleResponse: true, // the retry loop decides whether a response goes to the app
      toProxy: true, // pass req.url through without url.parse
      prependPath: false,
      xfwd: false, // the app and upstream are in the same trust domain; Tether adds no forwarding headers
      changeOrigin: false, // Host is set by the identify stage
      ws: false,
    });
    this.proxy.on('proxyReq', (proxyReq, req) => (req as WithTry)[TRY]?.onProxyReq(proxyReq));
    this.proxy.on('proxyRes', (proxyRes, req) => (req as WithTry)[TRY]?.onResponse(proxyRes));
    // http-proxy swallows ECONNRESET once the app's socket is gone and calls no callback (see its createErrorHandler).
    this.proxy.on('econnreset', (err, req) => (req as WithTry)[TRY]?.fail(err));
    this.proxy.on('error', (err, req) => (req as WithTry)[TRY]?.fail(err));
  }

  send(
    req: IncomingMessage,
    res: ServerResponse,
    target: TryTarget,
    limits: TryLimits,
    signal: AbortSignal,
  ): Promise<UpstreamResponse> {
    return new Promise<UpstreamResponse>((resolve, reject) => {
      const onAbort = (): void => t.fail(signal.reason);
      const finish = (): void => {
        signal.removeEventListener('abort', onAbort);
        delete (req as WithTry)[TRY];
      };
      const t = new Try(
        target,
        limits,
        this.clock,
        (r) => {
          finish();
          resolve(r);
        },
        (e) => {
          finish();
          reject(e);
        },
      );
      if (signal.aborted) {
        t.fail(signal.reason);
        return;
      }
      signal.addEventListener('abort', onAbort, { once: true });
      (req as WithTry)[TRY] = t;
      let body: Readable | undefined;
      // A bodiless request (most GETs) needs no replay stream: http-proxy then pipes the app's
      // request, already drained, which ends the upstream request. Readable.from([]) per request
      // cost about a quarter of the proxy's CPU (async iteration garbage; bench/ab.ts, docs/adr).
      if (target.body !== undefined && target.body.length > 0) {
        body = Readable.from([target.body]);
        body.on('data', (c: Buffer) => t.sent(c.length));
      } else {
        req.on('data', (c: Buffer) => t.sent(c.length));
      }
      this.proxy.web(
        req,
        res,
        {
          target: { host: target.host, port: target.port },
          agent: target.agent,
          headers: target.headers,
          ...(body ? { buffer: body } : {}),
        },
        (err: Error) => t.fail(err),
      );
    });
  }
}
