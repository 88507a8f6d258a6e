// The data path, in order: every request Tether proxies passes these stages top to bottom.
//
//   accept (listener.ts) → identify → decide (policy lookup) → observe start (span)
//   → breaker + concurrency cap → retry loop → try with timeouts → forward (http-proxy)
//   → deliver → rescue (the one error → response mapping) → observe end (span, metrics, access log)

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { asTetherError, respondWithError, statusOf } from '../errors/respond.ts';
import { TetherError } from '../errors/words.ts';
import { formatDuration } from '../policy/duration.ts';
import type { PolicyStore } from '../policy/store.ts';
import type { Clock, Timer } from '../resilience/clock.ts';
import type { Destinations, DestinationRuntime } from './destinations.ts';
import type { Observer, RequestRecord } from './observer.ts';
import { readReplayableBody } from './stages/body.ts';
import { decide, type RequestPlan } from './stages/decide.ts';
import { deliver } from './stages/deliver.ts';
import { prepareRequestHeaders } from './stages/headers.ts';
import { identify, tunnelTarget, type Destination } from './stages/identify.ts';
import { retryLoop } from './stages/retry.ts';
import type { Forwarder, UpstreamResponse } from './upstream/forward.ts';
import { openTunnel } from './upstream/tunnel.ts';

export interface StackDeps {
  clock: Clock;
  policy: PolicyStore;
  destinations: Destinations;
  forwarder: Forwarder;
  observer: Required<Observer>;
  /** The egress listener's own address: a request to it would loop forever. */
  self: () => { host: string; port: number } | undefined;
  random?: () => number;
}

function newRecord(method: string, clock: Clock, tunnel: boolean): RequestRecord {
  return {
    method,
    startedAtWall: Date.now(),
    startedAt: clock.now(),
    attempts: 0,
    bytesIn: 0,
    bytesOut: 0,
    tunnel,
    slots: new Map(),
  };
}

/** Aborts with `client_closed` if the app goes away, and with `deadline_exceeded` when the plan's deadline passes. */
class Lifetime {
  readonly controller = new AbortController();
  private timer: Timer | undefined;
  deadlineAt: number | null = null;

  arm(plan: RequestPlan, record: RequestRecord, clock: Clock): void {
    if (plan.deadlineMs === null) return;
    this.deadlineAt = record.startedAt + plan.deadlineMs;
    const ms = plan.deadlineMs;
    this.timer = clock.setTimeout(
      () =>
        this.controller.abort(
          new TetherError(
            'deadline_exceeded',
            `request to ${plan.destination.authority} did not complete within ${formatDuration(ms)} including retries and backoff (${plan.deadlineFrom ?? 'timeouts.total'})`,
            { destination: plan.destination.authority, phase: 'request-sent' },
          ),
        ),
      Math.max(0, this.deadlineAt - clock.now()),
    );
  }

  clientGone(what: string): void {
    this.controller.abort(new TetherError('client_closed', `the app closed the connection ${what}`));
  }

  end(): void {
    this.timer?.cancel();
  }
}

function isSelf(d: Destination, self: { host: string; port: number } | undefined): boolean {
  if (!self || d.port !== self.port) return false;
  return d.host === self.host || d.host === 'localhost' || /^127\./.test(d.host) || d.host === '::1';
}

function assertNotSelf(d: Destination, deps: StackDeps): void {
  if (isSelf(d, deps.self())) {
    throw new TetherError(
      'bad_request',
      `${d.authority} is Tether's own egress listener: the request would loop; is NO_PROXY missing localhost?`,
    );
  }
}

function runtimeFor(plan: RequestPlan, deps: StackDeps): DestinationRuntime {
  return deps.destinations.get(plan.key, plan.name, plan.settings, plan.rule?.critical ?? false);
}

/** One HTTP request from the app: absolute-form, Host-routed, or inside a plaintext CONNECT tunnel. */
export async function serveHttp(
  deps: StackDeps,
  req: IncomingMessage,
  res: ServerResponse,
  tunnel: string | undefined,
): Promise<void> {
  const { clock, observer } = deps;
  const record = newRecord(req.method ?? 'GET', clock, false);
  record.headers = req.headers; // read-only for observers: the app's trace context
  const life = new Lifetime();
  const onClose = (): void => {
    if (!res.writableFinished)
      life.clientGone(res.headersSent ? 'during the response' : 'before the response');
  };
  res.on('close', onClose);
  observer.requestStarted(record);
  let rt: DestinationRuntime | undefined;
  let upstream: UpstreamResponse | undefined;
  try {
    const destination = identify(req, tunnel); // 1. where to
    assertNotSelf(destination, deps);
    const plan = decide(destination, record.method, req.headers, deps.policy.current()); // 2. policy decides
    record.plan = plan;
    life.arm(plan, record, clock);
    observer.planned(record); // 3. span starts
    prepareRequestHeaders(
      req.headers,
      destination.via === 'absolute-uri'
        ? hostHeader(destination)
        : (req.headers.host ?? hostHeader(destination)),
    );
    rt = runtimeFor(plan, deps);
    rt.inFlight++;
    const body = await readReplayableBody(req, plan.body, life.controller.signal);
    const target = {
      host: destination.host,
      port: destination.port,
      authority: destination.authority,
      path: destination.path,
      agent: rt.agent,
      countSent: (n: number) => (record.bytesOut += n),
    };
    const budget = rt.budget;
    upstream = await rt.breaker.run(
      // 4. breaker + concurrency cap, around 5. the retry loop of tries with timeouts
      () =>
        retryLoop({
          req,
          res,
          record,
          plan: plan.retry,
          target,
          limits: plan.perTry,
          body,
          deadlineAt: life.deadlineAt,
          signal: life.controller.signal,
          budget,
          clock,
          forwarder: deps.forwarder,
          observer,
          ...(deps.random ? { random: deps.random } : {}),
        }),
      (r) => (r.response.statusCode ?? 0) >= 500,
    );
    await deliver(res, upstream, record, destination.authority, life.controller.signal); // 6. to the app
  } catch (err) {
    rescue(res, record, err, observer); // 7. the one error → response mapping
  } finally {
    life.end();
    res.off('close', onClose);
    if (rt) rt.inFlight--;
    record.endedAt = clock.now();
    observer.requestEnded(record); // 8. span end, metrics, access log
  }
}

function hostHeader(d: Destination): string {
  if (d.port !== 80) return d.authority;
  return d.host.includes(':') ? `[${d.host}]` : d.host;
}

function rescue(
  res: ServerResponse,
  record: RequestRecord,
  err: unknown,
  observer: Required<Observer>,
): void {
  const e = asTetherError(err, record.plan?.destination.authority);
  if (e.word === 'circuit_open' || e.word === 'overloaded') {
    record.attempts = 0;
    observer.rejected(record, e.word);
  }
  record.error = e.word;
  record.errorMessage = e.message;
  if (!res.headersSent) record.status = statusOf(e.word);
  respondWithError(res, e, record.attempts);
}

/**
 * A CONNECT tunnel that turned out not to carry HTTP (TLS, usually): one request in telemetry.
 * Tether already answered 200 to look at the first bytes, so failures can only close the tunnel;
 * their word still reaches the span, metric and log.
 */
export async function serveOpaqueTunnel(
  deps: StackDeps,
  client: Socket,
  authority: string,
  firstBytes: Buffer,
): Promise<void> {
  const { clock, observer } = deps;
  const record = newRecord('CONNECT', clock, true);
  observer.requestStarted(record);
  const life = new Lifetime();
  const onClientClose = (): void => life.clientGone('before the tunnel opened');
  client.once('close', onClientClose);
  client.on('error', () => undefined); // reported through 'close'; an unhandled error would crash the process
  let rt: DestinationRuntime | undefined;
  try {
    const destination: Destination = { ...tunnelTarget(authority), path: '', via: 'connect-tunnel' };
    assertNotSelf(destination, deps);
    const plan = decide(destination, 'CONNECT', {}, deps.policy.current());
    record.plan = plan;
    observer.planned(record);
    rt = runtimeFor(plan, deps);
    rt.inFlight++;
    record.attempts = 1;
    const upstream = await rt.breaker.run(
      () =>
        openTunnel(
          destination.host,
          destination.port,
          destination.authority,
          plan.perTry.connectMs,
          clock,
          life.controller.signal,
        ),
      () => false,
    );
    client.off('close', onClientClose);
    record.status = 200;
    await splice(client, upstream, firstBytes, record, plan, clock);
  } catch (err) {
    const e = asTetherError(err, authority);
    if (e.word === 'circuit_open' || e.word === 'overloaded') observer.rejected(record, e.word);
    record.error = e.word;
    record.errorMessage = e.message;
    record.status ??= e.word === 'client_closed' ? statusOf('client_closed') : statusOf(e.word);
    client.destroy();
  } finally {
    client.off('close', onClientClose);
    if (rt) rt.inFlight--;
    record.endedAt = clock.now();
    observer.requestEnded(record);
  }
}

/** Pipes bytes both ways until either side ends; the idle timeout is the only bound on a healthy tunnel. */
function splice(
  client: Socket,
  upstream: Socket,
  first: Buffer,
  record: RequestRecord,
  plan: RequestPlan,
  clock: Clock,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let idle: Timer | undefined;
    const idleMs = plan.perTry.idleMs;
    let failed: TetherError | undefined;
    const touch = (): void => {
      if (idleMs === null) return;
      idle?.cancel();
      idle = clock.setTimeout(() => {
        failed = new TetherError(
          'idle_timeout',
          `no bytes through the tunnel to ${plan.destination.authority} for ${formatDuration(idleMs)} (timeouts.idle)`,
          {
            destination: plan.destination.authority,
            phase: 'response-body',
          },
        );
        client.destroy();
        upstream.destroy();
      }, idleMs);
    };
    touch();
    let closed = 0;
    const onClose = (): void => {
      if (++closed < 2) {
        // Half-close is legal, but once one side is gone for good there is nothing left to carry.
        client.destroy();
        upstream.destroy();
        return;
      }
      idle?.cancel();
      if (failed) reject(failed);
      else resolve();
    };
    upstream.on('error', (err) => {
      failed ??= err instanceof TetherError ? err : classifyReset(err, plan.destination.authority);
    });
    client.on('error', () => undefined);
    upstream.on('close', onClose);
    client.on('close', onClose);
    upstream.on('data', (c: Buffer) => {
      record.bytesIn += c.length;
      touch();
    });
    client.on('data', (c: Buffer) => {
      record.bytesOut += c.length;
      touch();
    });
    if (first.length > 0) {
      record.bytesOut += first.length;
      upstream.write(first);
    }
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
  });
}

function classifyReset(err: Error, authority: string): TetherError {
  return new TetherError(
    'connection_reset',
    `upstream ${authority} reset the tunnel (${(err as NodeJS.ErrnoException).code ?? err.message})`,
    {
      destination: authority,
      phase: 'response-body',
      cause: err,
    },
  );
}
