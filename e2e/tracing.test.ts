// Tether's spans in a real Jaeger: the test's own span → Tether's request span → one span per try, with status codes, error words and breaker events, and context sent upstream.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import {
  POLICY_HEAD,
  startTestSidecar,
  viaProxy,
  type Reply,
  type TestSidecar,
} from '../test/support/sidecar.ts';
import { closedPort, startUpstream, type Upstream } from '../test/support/upstream.ts';
import { startJaeger, type Jaeger, type JaegerSpan, type JaegerTrace } from './lib/jaeger.ts';
import { assertBinaries, skipUnlessBinaries } from './lib/testbin.ts';

const SERVICE = 'tether-e2e';
const CLIENT_SERVICE = 'tracing-test-client';

type Span = JaegerSpan & { logs?: { timestamp: number; fields: { key: string; value: unknown }[] }[] };

const tag = (s: Span, key: string): unknown => s.tags.find((t) => t.key === key)?.value;
const parentOf = (s: Span): string | undefined => s.references?.find((r) => r.refType === 'CHILD_OF')?.spanID;
const events = (s: Span): Record<string, unknown>[] =>
  (s.logs ?? []).map((l) => Object.fromEntries(l.fields.map((f) => [f.key, f.value])));
const hex = (bytes: number): string => randomBytes(bytes).toString('hex');

/** The test's own span: its context goes to Tether as traceparent, and the span itself to Jaeger, so the tree has a real root. */
class ClientSpan {
  readonly traceId = hex(16);
  readonly spanId = hex(8);
  private readonly start = Date.now();
  readonly name: string;
  constructor(name: string) {
    this.name = name;
  }

  traceparent(sampled = true): string {
    return `00-${this.traceId}-${this.spanId}-${sampled ? '01' : '00'}`;
  }

  async end(jaeger: Jaeger): Promise<void> {
    const body = {
      resourceSpans: [
        {
          resource: { attributes: [{ key: 'service.name', value: { stringValue: CLIENT_SERVICE } }] },
          scopeSpans: [
            {
              scope: { name: 'e2e' },
              spans: [
                {
                  traceId: this.traceId,
                  spanId: this.spanId,
                  name: this.name,
                  kind: 1,
                  startTimeUnixNano: `${this.start}000000`,
                  endTimeUnixNano: `${Date.now()}000000`,
                },
              ],
            },
          ],
        },
      ],
    };
    const r = await fetch(jaeger.otlpTracesUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    assert.equal(r.status, 200, await r.text());
  }
}

describe('spans in a real Jaeger', { skip: skipUnlessBinaries(['jaeger']) }, () => {
  let jaeger: Jaeger;
  let shop: Upstream;
  let flaky: Upstream;
  let stingy: Upstream;
  let refused: number;
  let sc: TestSidecar;

  before(
    async () => {
      assertBinaries(['jaeger']);
      jaeger = await startJaeger();
      shop = await startUpstream();
      flaky = await startUpstream();
      stingy = await startUpstream();
      refused = await closedPort();
      sc = await startTestSidecar(
        POLICY_HEAD +
          `spec:
  destinations:
    - name: shop
      match: { host: 127.0.0.1, port: ${shop.port} }
      retries: { attempts: 2, on: ["503"], backoff: { base: 10ms, max: 20ms } }
    - name: gone
      match: { host: 127.0.0.1, port: ${refused} }
      retries: { attempts: 1, on: [connect-failure], backoff: { base: 5ms, max: 5ms } }
    - name: flaky
      match: { host: 127.0.0.1, port: ${flaky.port} }
      circuitBreaker: { failureRatio: 0.5, minimumRequests: 2, window: 10s, openFor: 30s }
    - name: stingy
      match: { host: 127.0.0.1, port: ${stingy.port} }
      retries: { attempts: 2, on: ["503"], budget: { ratio: 0, minPerSecond: 0 } }
`,
        [
          '--otlp-endpoint',
          jaeger.otlpHttpEndpoint,
          '--service-name',
          SERVICE,
          '--pod-name',
          'shop-7d4b9-x2k4q',
          '--namespace',
          'shop',
        ],
      );
      assert.ok(sc.tracing, 'tracing is on with an OTLP endpoint');
    },
    { timeout: 90_000 },
  );
  after(async () => {
    await sc?.close();
    await shop?.close();
    await flaky?.close();
    await stingy?.close();
    await jaeger?.stop();
  });

  /** Sends one request as a child of a fresh client span and returns the trace once Jaeger has `spans` spans of it. */
  async function traced(
    url: string,
    spans: number,
    opts: Parameters<typeof viaProxy>[2] = {},
  ): Promise<{ reply: Reply; trace: JaegerTrace; root: ClientSpan }> {
    const root = new ClientSpan(`call ${url}`);
    const reply = await viaProxy(sc.egress.port, url, {
      ...opts,
      headers: { ...opts.headers, traceparent: root.traceparent() },
    });
    await root.end(jaeger);
    await sc.tracing?.flush();
    const deadline = Date.now() + 15_000;
    for (;;) {
      const trace = await jaeger.getTrace(root.traceId);
      if (trace && trace.spans.length >= spans) return { reply, trace, root };
      if (Date.now() > deadline)
        throw new Error(`trace ${root.traceId} has ${trace?.spans.length ?? 0} spans, want ${spans}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** The tree below the client span: Tether's request span and its try spans in order. */
  function tree(trace: JaegerTrace, root: ClientSpan): { request: Span; tries: Span[] } {
    const spans = trace.spans as Span[];
    const client = spans.find((s) => s.spanID === root.spanId);
    assert.ok(client, 'the client span is in the trace');
    assert.equal(trace.processes[client.processID]?.serviceName, CLIENT_SERVICE);
    const requests = spans.filter((s) => parentOf(s) === root.spanId);
    assert.equal(requests.length, 1, 'exactly one Tether span is a child of the app span');
    const request = requests[0] as Span;
    assert.equal(trace.processes[request.processID]?.serviceName, SERVICE);
    const tries = spans
      .filter((s) => parentOf(s) === request.spanID)
      .sort((a, b) => a.startTime - b.startTime);
    return { request, tries };
  }

  test('healthy call: test span → GET (client) → one try, with the semantic-convention attributes, and the try’s context upstream', async () => {
    const { reply, trace, root } = await traced(`http://${shop.authority}/echo?token=s3cret`, 3);
    assert.equal(reply.status, 200);
    const { request, tries } = tree(trace, root);
    assert.equal(request.operationName, 'GET');
    assert.equal(tag(request, 'span.kind'), 'client');
    assert.equal(tag(request, 'http.request.method'), 'GET');
    assert.equal(tag(request, 'server.address'), '127.0.0.1');
    assert.equal(tag(request, 'server.port'), shop.port);
    assert.equal(tag(request, 'url.full'), `http://${shop.authority}/echo`, 'no query string in the span');
    assert.equal(tag(request, 'http.response.status_code'), 200);
    assert.equal(tag(request, 'tether.destination'), 'shop');
    assert.equal(tag(request, 'tether.attempts'), 1);
    assert.equal(tag(request, 'error.type'), undefined);
    assert.equal(tries.length, 1);
    const [only] = tries as [Span];
    assert.equal(only.operationName, 'GET try 1');
    assert.equal(tag(only, 'http.response.status_code'), 200);
    assert.equal(tag(only, 'http.request.resend_count'), undefined, 'the first try is not a resend');
    // The upstream saw Tether's try span as its parent, in the same trace.
    const seen = (JSON.parse(reply.body) as { headers: Record<string, string> }).headers.traceparent;
    assert.equal(seen, `00-${root.traceId}-${only.spanID}-01`);
    // Resource attributes from the pod (the injector sets them from the downward API).
    const resource = Object.fromEntries(
      (trace.processes[request.processID]?.tags ?? []).map((t) => [t.key, t.value]),
    );
    assert.equal(resource['k8s.pod.name'], 'shop-7d4b9-x2k4q');
    assert.equal(resource['k8s.namespace.name'], 'shop');
  });

  test('retried call: one span per try with resend_count, the 503 as error.type, a backoff event with delay and reason', async () => {
    const key = hex(4);
    const { reply, trace, root } = await traced(`http://${shop.authority}/seq/503,503,200?key=${key}`, 5);
    assert.equal(reply.status, 200);
    const { request, tries } = tree(trace, root);
    assert.equal(tag(request, 'http.response.status_code'), 200);
    assert.equal(tag(request, 'tether.attempts'), 3);
    assert.equal(tag(request, 'error.type'), undefined, 'the request succeeded in the end');
    assert.deepEqual(
      tries.map((t) => [
        t.operationName,
        tag(t, 'http.response.status_code'),
        tag(t, 'error.type'),
        tag(t, 'http.request.resend_count'),
      ]),
      [
        ['GET try 1', 503, '503', undefined],
        ['GET try 2', 503, '503', 1],
        ['GET try 3', 200, undefined, 2],
      ],
    );
    const backoffs = events(request).filter((e) => e.event === 'tether.backoff');
    assert.equal(backoffs.length, 2);
    for (const b of backoffs) {
      assert.equal(b['tether.retry.reason'], '503');
      assert.ok(Number(b['tether.backoff.ms']) >= 0 && Number(b['tether.backoff.ms']) <= 20);
    }
  });

  test('failing call: connection_refused on the request span and on every try, status 502, span status error', async () => {
    const { reply, trace, root } = await traced(`http://127.0.0.1:${refused}/x`, 4);
    assert.equal(reply.status, 502);
    const { request, tries } = tree(trace, root);
    assert.equal(tag(request, 'error.type'), 'connection_refused');
    assert.equal(tag(request, 'http.response.status_code'), 502);
    assert.equal(tag(request, 'otel.status_code'), 'ERROR');
    assert.match(String(tag(request, 'otel.status_description')), /refused/);
    assert.equal(tag(request, 'tether.destination'), 'gone');
    assert.deepEqual(
      tries.map((t) => tag(t, 'error.type')),
      ['connection_refused', 'connection_refused'],
    );
  });

  test('breaker rejection: circuit_open on the span, a breaker-rejected event, and no try spans', async () => {
    for (let i = 0; i < 2; i++)
      assert.equal((await viaProxy(sc.egress.port, `http://${flaky.authority}/status/500`)).status, 500);
    const { reply, trace, root } = await traced(`http://${flaky.authority}/ok`, 2);
    assert.equal(reply.status, 503);
    assert.equal(reply.headers['x-tether-error'], 'circuit_open');
    // Give any (wrong) try span a moment to arrive before asserting there is none.
    await sc.tracing?.flush();
    const full = (await jaeger.getTrace(root.traceId)) ?? trace;
    const { request, tries } = tree(full, root);
    assert.equal(tag(request, 'error.type'), 'circuit_open');
    assert.equal(tag(request, 'http.response.status_code'), 503);
    assert.equal(tag(request, 'tether.attempts'), 0);
    assert.deepEqual(
      events(request)
        .filter((e) => e.event === 'tether.breaker_rejected')
        .map((e) => e['error.type']),
      ['circuit_open'],
    );
    assert.equal(tries.length, 0, 'a rejected request never reached the upstream');
  });

  test('an unsampled app trace is passed on unsampled and never exported', async () => {
    const root = new ClientSpan('unsampled');
    const reply = await viaProxy(sc.egress.port, `http://${shop.authority}/echo`, {
      headers: { traceparent: root.traceparent(false) },
    });
    const seen = (JSON.parse(reply.body) as { headers: Record<string, string> }).headers.traceparent ?? '';
    assert.match(seen, new RegExp(`^00-${root.traceId}-[0-9a-f]{16}-00$`), 'same trace, flagged unsampled');
    assert.notEqual(seen.split('-')[2], root.spanId, "Tether's span id, not the app's");
    // A sampled request after it proves the pipeline is flushed; the unsampled trace must still be absent.
    await traced(`http://${shop.authority}/ok`, 3);
    assert.equal(await jaeger.getTrace(root.traceId), undefined);
  });

  test('a request without traceparent starts its own trace under the sidecar’s service name', async () => {
    const reply = await viaProxy(sc.egress.port, `http://${shop.authority}/echo`);
    const seen = (JSON.parse(reply.body) as { headers: Record<string, string> }).headers.traceparent ?? '';
    const traceId = /^00-([0-9a-f]{32})-[0-9a-f]{16}-01$/.exec(seen)?.[1];
    assert.ok(traceId, `upstream saw ${seen}`);
    await sc.tracing?.flush();
    const traces = await jaeger.waitForTraces(SERVICE, (ts) =>
      ts.some((t) => t.traceID === traceId && t.spans.length === 2),
    );
    const t = traces.find((x) => x.traceID === traceId);
    const request = t?.spans.find((s) => (s.references ?? []).length === 0);
    assert.equal(request?.operationName, 'GET');
  });

  test('a retry the budget does not allow is a retry-skipped event with the reason', async () => {
    const { reply, trace, root } = await traced(`http://${stingy.authority}/status/503`, 3);
    assert.equal(reply.status, 503);
    const { request, tries } = tree(trace, root);
    assert.equal(tries.length, 1);
    assert.equal(tag(request, 'error.type'), '503');
    const skipped = events(request).filter((e) => e.event === 'tether.retry_skipped');
    assert.equal(skipped.length, 1);
    assert.match(String(skipped[0]?.['tether.retry.skipped_reason']), /retry budget exhausted.*after 503/);
    assert.equal(events(request).filter((e) => e.event === 'tether.backoff').length, 0);
  });

  test('an opaque CONNECT tunnel is one CONNECT span with its destination and bytes', async () => {
    const socket = connect({ host: '127.0.0.1', port: sc.egress.port });
    socket.write(`CONNECT ${shop.authority} HTTP/1.1\r\nHost: ${shop.authority}\r\n\r\n`);
    const [established] = (await once(socket, 'data')) as [Buffer];
    assert.match(established.toString(), /^HTTP\/1\.1 200/);
    // A TLS record header: not HTTP, so the tunnel stays opaque; the HTTP upstream answers 400 and closes it.
    socket.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]));
    socket.resume();
    await once(socket, 'close');
    // The sidecar ends the span once both sides closed, a moment after this client saw its side close.
    const isTunnel = (x: JaegerSpan): boolean =>
      x.operationName === 'CONNECT' && tag(x, 'server.port') === shop.port;
    let span: Span | undefined;
    for (let i = 0; i < 50 && !span; i++) {
      await sc.tracing?.flush();
      span = (await jaeger.findTraces(SERVICE)).flatMap((t) => t.spans as Span[]).find(isTunnel);
      if (!span) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(span);
    assert.equal(tag(span, 'span.kind'), 'client');
    assert.equal(tag(span, 'server.address'), '127.0.0.1');
    assert.equal(tag(span, 'tether.destination'), 'shop');
    assert.equal(tag(span, 'tether.attempts'), 1);
    assert.equal(tag(span, 'http.response.status_code'), 200);
    assert.equal(tag(span, 'http.request.body.size'), 10);
    assert.ok(
      Number(tag(span, 'http.response.body.size')) > 0,
      'the upstream answer went back through the tunnel',
    );
    assert.equal(tag(span, 'url.full'), undefined, 'a tunnel has no URL');
  });

  test('a request refused before any destination was known still shows in the app’s trace, with bad_request', async () => {
    const { reply, trace, root } = await traced('http://@/charge?card=4111', 2);
    assert.equal(reply.status, 400);
    const { request, tries } = tree(trace, root);
    assert.equal(tag(request, 'error.type'), 'bad_request');
    assert.equal(tag(request, 'http.response.status_code'), 400);
    assert.equal(tag(request, 'tether.attempts'), 0);
    assert.doesNotMatch(
      String(tag(request, 'otel.status_description')),
      /4111/,
      'the query never reaches the span',
    );
    assert.equal(tries.length, 0);
  });
});
