/**
 * Tracing against a real trace backend: Jaeger v2 (test/support/real/jaeger.ts) takes the gateway's
 * OTLP; the traces are read back from its query API. The fake upstream records the traceparent it
 * got, which is how an inference server would continue the trace.
 */
import { jest } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import OpenAI from 'openai';
import { request } from 'undici';
import { startFakeUpstream, type FakeUpstream, type SeenRequest } from '../support/fake-upstream.js';
import { baseConfig, CLIENT_KEY, startTestGateway, UPSTREAM_KEY, type TestGateway } from '../support/gateway-harness.js';
import { JAEGER_START_TIMEOUT_MS, startJaeger, type JaegerHandle, type JaegerSpan, type JaegerTrace } from '../support/real/jaeger.js';
import { freePort } from '../support/wait.js';
import { series } from '../reliability/helpers.js';

jest.setTimeout(60_000);

let jaeger: JaegerHandle;
let upstream: FakeUpstream;

beforeAll(async () => {
  jaeger = await startJaeger();
  upstream = await startFakeUpstream();
}, JAEGER_START_TIMEOUT_MS);

afterAll(async () => {
  await upstream?.close();
  await jaeger?.stop();
});

const hex = (bytes: number): string => randomBytes(bytes).toString('hex');

function tracingConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { enabled: true, endpoint: jaeger.otlpHttpUrl, schedule_delay_ms: 50, service_name: 'api-proxy-test', ...extra };
}

async function gatewayWithTracing(
  tracing: Record<string, unknown>,
  env: Record<string, string> = {},
  extra: Record<string, unknown> = {},
): Promise<TestGateway> {
  return startTestGateway(baseConfig(upstream.url, { tracing, ...extra }), { env });
}

async function chat(gw: TestGateway, body: object, headers: Record<string, string> = {}): Promise<{ status: number; text: string }> {
  const res = await request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.statusCode, text: await res.body.text() };
}

/** The request the fake upstream saw with this marker header. */
function seen(marker: string): SeenRequest {
  const found = upstream.requests.find((r) => r.headers['x-test-marker'] === marker);
  if (found === undefined) throw new Error(`the upstream saw no request marked ${marker}`);
  return found;
}

function tag(span: JaegerSpan, key: string): unknown {
  return span.tags.find((t) => t.key === key)?.value;
}

function spanOfKind(trace: JaegerTrace, kind: 'server' | 'client'): JaegerSpan[] {
  return trace.spans.filter((span) => tag(span, 'span.kind') === kind);
}

function parentOf(span: JaegerSpan): string | null {
  return span.references.find((r) => r.refType === 'CHILD_OF')?.spanID ?? null;
}

/** traceparent `00-<trace>-<span>-<flags>` */
function parts(traceparent: string | null): { traceId: string; spanId: string; flags: string } {
  const [, traceId = '', spanId = '', flags = ''] = (traceparent ?? '').split('-');
  return { traceId, spanId, flags };
}

test("continues the client's trace: server span under the client's, a client span per attempt under it, the upstream gets the attempt as parent", async () => {
  const gw = await gatewayWithTracing(tracingConfig());
  try {
    const traceId = hex(16);
    const clientSpan = hex(8);
    const { status } = await chat(
      gw,
      { model: 'gpt-4', messages: [{ role: 'user', content: 'a secret prompt' }] },
      { traceparent: `00-${traceId}-${clientSpan}-01`, tracestate: 'vendor=abc', 'x-test-marker': 'continue' },
    );
    expect(status).toBe(200);

    const upstreamSaw = parts(seen('continue').traceparent);
    expect(upstreamSaw.traceId).toBe(traceId);
    expect(upstreamSaw.spanId).not.toBe(clientSpan);
    expect(upstreamSaw.flags).toBe('01');
    expect(seen('continue').tracestate).toBe('vendor=abc');

    const trace = await jaeger.trace(traceId, { minSpans: 2 });
    const [server] = spanOfKind(trace, 'server');
    const [client] = spanOfKind(trace, 'client');
    expect(trace.spans).toHaveLength(2);
    expect(trace.processes[server!.processID]!.serviceName).toBe('api-proxy-test');

    expect(parentOf(server!)).toBe(clientSpan);
    expect(server!.operationName).toBe('chat gpt-4');
    expect(tag(server!, 'gen_ai.operation.name')).toBe('chat');
    expect(tag(server!, 'gen_ai.request.model')).toBe('gpt-4');
    expect(tag(server!, 'apiproxy.key_id')).toBe('team-a');
    expect(tag(server!, 'apiproxy.route')).toBe('chat_completions');
    expect(tag(server!, 'apiproxy.upstream')).toBe('default');
    expect(tag(server!, 'apiproxy.target_model')).toBe('gpt-4o-2024-08-06');
    expect(tag(server!, 'http.request.method')).toBe('POST');
    expect(tag(server!, 'http.route')).toBe('/v1/chat/completions');
    expect(tag(server!, 'http.response.status_code')).toBe(200);
    expect(tag(server!, 'error.type')).toBeUndefined();
    // The usage the answer reported (the fake upstream's 7 prompt and 3 completion tokens), read by the usage meter.
    expect(tag(server!, 'gen_ai.usage.input_tokens')).toBe(7);
    expect(tag(server!, 'gen_ai.usage.output_tokens')).toBe(3);
    // The model the answer named, read from it only for a trace (or a request that named none).
    expect(tag(server!, 'gen_ai.response.model')).toBe('gpt-4o-2024-08-06');

    expect(parentOf(client!)).toBe(server!.spanID);
    expect(client!.spanID).toBe(upstreamSaw.spanId);
    expect(client!.operationName).toBe('chat gpt-4o-2024-08-06');
    expect(tag(client!, 'gen_ai.request.model')).toBe('gpt-4o-2024-08-06');
    expect(tag(client!, 'server.address')).toBe('127.0.0.1');
    expect(tag(client!, 'server.port')).toBe(upstream.port);
    expect(tag(client!, 'url.full')).toBe(`${upstream.url}/v1/chat/completions`);
    expect(tag(client!, 'http.response.status_code')).toBe(200);
    expect(tag(client!, 'apiproxy.upstream')).toBe('default');

    // Never a key, never the prompt or the completion.
    const everything = JSON.stringify(trace);
    for (const secret of [CLIENT_KEY, UPSTREAM_KEY, 'a secret prompt', 'hello from']) expect(everything).not.toContain(secret);
  } finally {
    await gw.stop();
  }
});

test('a fallback: a client span per attempt under the server span, the failed one with its status, each upstream given its own attempt as parent', async () => {
  const second = await startFakeUpstream({ name: 'second' });
  const gw = await gatewayWithTracing(
    tracingConfig(),
    {},
    {
      upstreams: {
        default: { url: `${upstream.url}/v1`, api_key: UPSTREAM_KEY },
        second: { url: `${second.url}/v1`, api_key: 'sk-upstream-second-0123456789' },
      },
      // answer_model: upstream, so that the answer names the target that sent it.
      routes: [
        { model: 'fallback', targets: [{ model: 'fallback-first' }, { model: 'fallback-second', upstream: 'second', priority: 1 }], answer_model: 'upstream' },
      ],
    },
  );
  try {
    const traceId = hex(16);
    upstream.script.push({ 'x-fake-status': '503' });
    const { status, text } = await chat(gw, { model: 'fallback', messages: [] }, { traceparent: `00-${traceId}-${hex(8)}-01`, 'x-test-marker': 'fallback' });
    expect(status).toBe(200);
    expect(JSON.parse(text).model).toBe('fallback-second');
    const trace = await jaeger.trace(traceId, { minSpans: 3 });
    expect(trace.spans).toHaveLength(3);
    const [server] = spanOfKind(trace, 'server');
    const clients = spanOfKind(trace, 'client').sort((a, b) => a.startTime - b.startTime);
    expect(clients.map((span) => [tag(span, 'apiproxy.upstream'), tag(span, 'http.response.status_code'), tag(span, 'error.type')])).toEqual([
      ['default', 503, '503'],
      ['second', 200, undefined],
    ]);
    for (const client of clients) expect(parentOf(client)).toBe(server!.spanID);
    expect(parts(seen('fallback').traceparent).spanId).toBe(clients[0]!.spanID);
    expect(parts(second.requests.find((r) => r.headers['x-test-marker'] === 'fallback')!.traceparent).spanId).toBe(clients[1]!.spanID);
    expect(tag(server!, 'apiproxy.upstream')).toBe('second');
    expect(tag(server!, 'apiproxy.target_model')).toBe('fallback-second');
    expect(tag(server!, 'error.type')).toBeUndefined();
  } finally {
    await gw.stop();
    await second.close();
  }
});

test('a request without a traceparent starts a trace; a malformed one is ignored with its tracestate', async () => {
  const gw = await gatewayWithTracing(tracingConfig());
  try {
    expect((await chat(gw, { model: 'gpt-4', messages: [] }, { 'x-test-marker': 'fresh' })).status).toBe(200);
    expect(
      (await chat(gw, { model: 'gpt-4', messages: [] }, { traceparent: '00-zz-not-a-trace-01', tracestate: 'vendor=x', 'x-test-marker': 'malformed' })).status,
    ).toBe(200);
    for (const marker of ['fresh', 'malformed']) {
      const { traceId, flags } = parts(seen(marker).traceparent);
      expect(traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(flags).toBe('01');
      const trace = await jaeger.trace(traceId, { minSpans: 2 });
      const [server] = spanOfKind(trace, 'server');
      expect(parentOf(server!)).toBeNull();
    }
    expect(seen('malformed').tracestate).toBeNull();
  } finally {
    await gw.stop();
  }
});

test('a stream, with the openai SDK as client: time to first token is an event on the attempt', async () => {
  const gw = await gatewayWithTracing(tracingConfig());
  try {
    const traceId = hex(16);
    const client = new OpenAI({
      apiKey: CLIENT_KEY,
      baseURL: `${gw.url}/v1`,
      defaultHeaders: { traceparent: `00-${traceId}-${hex(8)}-01`, 'x-test-marker': 'stream', 'x-fake-chunks': '3', 'x-fake-interval': '20' },
    });
    const stream = await client.chat.completions.create({ model: 'gpt-4', messages: [{ role: 'user', content: 'hi' }], stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    expect(text).toBe('tok0 tok1 tok2 ');

    const trace = await jaeger.trace(traceId, { minSpans: 2 });
    const [server] = spanOfKind(trace, 'server');
    const [attempt] = spanOfKind(trace, 'client');
    expect(tag(server!, 'apiproxy.stream')).toBe(true);
    expect(tag(attempt!, 'apiproxy.stream')).toBe(true);
    // The stream's usage, which the gateway asked for (include_usage) and took out of what the client got: one completion token a chunk.
    expect(tag(server!, 'gen_ai.usage.input_tokens')).toBe(7);
    expect(tag(server!, 'gen_ai.usage.output_tokens')).toBe(3);
    const firstToken = attempt!.logs.find((log) => log.fields.some((f) => f.key === 'event' && f.value === 'apiproxy.first_token'));
    expect(firstToken).toBeDefined();
    const ttft = firstToken!.fields.find((f) => f.key === 'apiproxy.time_to_first_token_s')?.value as number;
    expect(ttft).toBeGreaterThan(0);
    // The event lies inside the attempt, before its end (the stream runs on for two more 20 ms chunks).
    expect(firstToken!.timestamp).toBeGreaterThanOrEqual(attempt!.startTime);
    expect(firstToken!.timestamp).toBeLessThan(attempt!.startTime + attempt!.duration);
  } finally {
    await gw.stop();
  }
});

test("span status and error.type follow the gateway's error codes", async () => {
  const deadPort = await freePort();
  const gw = await gatewayWithTracing(
    tracingConfig(),
    {},
    {
      upstreams: {
        default: { url: `${upstream.url}/v1`, api_key: UPSTREAM_KEY, timeouts: { connect_ms: 1000, headers_ms: 2000, idle_ms: 2000 } },
        dead: { url: `http://127.0.0.1:${deadPort}/v1`, timeouts: { connect_ms: 500, headers_ms: 1000, idle_ms: 1000 } },
      },
      routes: [{ model: 'nowhere', targets: [{ model: 'nowhere', upstream: 'dead' }] }],
    },
  );
  try {
    const traced = async (body: object, headers: Record<string, string>, status: number): Promise<JaegerTrace> => {
      const traceId = hex(16);
      const answer = await chat(gw, body, { traceparent: `00-${traceId}-${hex(8)}-01`, ...headers });
      expect(answer.status).toBe(status);
      return jaeger.trace(traceId, { minSpans: 1 });
    };

    // The gateway's own 5xx: both spans in error, error.type the code.
    const unreachable = await traced({ model: 'nowhere', messages: [] }, {}, 502);
    await expect(jaeger.trace(unreachable.traceID, { minSpans: 2 })).resolves.toBeDefined();
    const unreachableFull = await jaeger.trace(unreachable.traceID, { minSpans: 2 });
    const [server502] = spanOfKind(unreachableFull, 'server');
    const [client502] = spanOfKind(unreachableFull, 'client');
    expect(tag(server502!, 'error.type')).toBe('upstream_unreachable');
    expect(tag(server502!, 'otel.status_code')).toBe('ERROR');
    expect(tag(server502!, 'otel.status_description')).toBe('The upstream could not be reached.');
    expect(tag(client502!, 'error.type')).toBe('upstream_unreachable');
    expect(tag(client502!, 'otel.status_code')).toBe('ERROR');
    expect(tag(client502!, 'apiproxy.upstream')).toBe('dead');

    // A 4xx of the gateway's: error.type set, but the server span is not an error (the client's doing).
    const badKey = await traced({ model: 'gpt-4', messages: [] }, { authorization: 'Bearer sk-wrong' }, 401);
    const [server401] = spanOfKind(badKey, 'server');
    expect(badKey.spans).toHaveLength(1);
    expect(tag(server401!, 'error.type')).toBe('invalid_api_key');
    expect(tag(server401!, 'otel.status_code')).toBeUndefined();
    expect(tag(server401!, 'apiproxy.key_id')).toBeUndefined();

    // An upstream's 503, relayed as it came: error.type is the status on both spans.
    const relayed = await traced({ model: 'gpt-4', messages: [] }, { 'x-fake-status': '503' }, 503);
    const relayedFull = await jaeger.trace(relayed.traceID, { minSpans: 2 });
    const [server503] = spanOfKind(relayedFull, 'server');
    const [client503] = spanOfKind(relayedFull, 'client');
    expect(tag(server503!, 'error.type')).toBe('503');
    expect(tag(server503!, 'otel.status_code')).toBe('ERROR');
    expect(tag(client503!, 'error.type')).toBe('503');
    expect(tag(client503!, 'http.response.status_code')).toBe(503);
  } finally {
    await gw.stop();
  }
});

test('OTLP over gRPC, configured by the spec environment variables', async () => {
  const gw = await startTestGateway(baseConfig(upstream.url, { tracing: { enabled: true, schedule_delay_ms: 50 } }), {
    env: { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_EXPORTER_OTLP_ENDPOINT: jaeger.otlpGrpcUrl, OTEL_SERVICE_NAME: 'api-proxy-grpc' },
  });
  try {
    const traceId = hex(16);
    expect((await chat(gw, { model: 'gpt-4', messages: [] }, { traceparent: `00-${traceId}-${hex(8)}-01` })).status).toBe(200);
    const trace = await jaeger.trace(traceId, { minSpans: 2 });
    expect(Object.values(trace.processes).map((p) => p.serviceName)).toEqual(['api-proxy-grpc']);
    expect(gw.logs.entries.find((e) => e['msg'] === 'tracing on')).toMatchObject({ protocol: 'grpc', url: jaeger.otlpGrpcUrl });
  } finally {
    await gw.stop();
  }
});

test("sampling: a ratio from OTEL_TRACES_SAMPLER_ARG for new traces; a client's decision is kept (parentbased)", async () => {
  const gw = await gatewayWithTracing(tracingConfig(), { OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.25' });
  try {
    const count = 200;
    for (let i = 0; i < count; i++) expect((await chat(gw, { model: 'gpt-4', messages: [] }, { 'x-test-marker': `ratio-${i}` })).status).toBe(200);
    const decisions = Array.from({ length: count }, (_, i) => parts(seen(`ratio-${i}`).traceparent));
    const sampled = decisions.filter((d) => d.flags === '01');
    const unsampled = decisions.filter((d) => d.flags === '00');
    expect(sampled.length + unsampled.length).toBe(count);
    // Binomial(200, 0.25): mean 50, standard deviation 6.1; four of them either side.
    expect(sampled.length).toBeGreaterThanOrEqual(25);
    expect(sampled.length).toBeLessThanOrEqual(75);
    // Every sampled trace reached Jaeger; an unsampled one did not (checked after the sampled ones arrived).
    for (const decision of sampled) await jaeger.trace(decision.traceId, { minSpans: 2 });
    for (const decision of unsampled.slice(0, 10)) {
      const res = await request(`${jaeger.queryUrl}/api/traces/${decision.traceId}`);
      await res.body.dump();
      expect(res.statusCode).toBe(404);
    }

    // The client sampled it: traced whatever the ratio; the client did not: not traced, and the upstream is told so.
    const keptTrace = hex(16);
    expect((await chat(gw, { model: 'gpt-4', messages: [] }, { traceparent: `00-${keptTrace}-${hex(8)}-01`, 'x-test-marker': 'kept' })).status).toBe(200);
    const droppedTrace = hex(16);
    expect((await chat(gw, { model: 'gpt-4', messages: [] }, { traceparent: `00-${droppedTrace}-${hex(8)}-00`, 'x-test-marker': 'dropped' })).status).toBe(200);
    expect(parts(seen('kept').traceparent)).toMatchObject({ traceId: keptTrace, flags: '01' });
    expect(parts(seen('dropped').traceparent)).toMatchObject({ traceId: droppedTrace, flags: '00' });
    await jaeger.trace(keptTrace, { minSpans: 2 });
  } finally {
    await gw.stop();
  }
});

/** A collector that accepts connections and never answers. */
async function silentCollector(): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.resume();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

async function metricsText(gw: TestGateway): Promise<string> {
  const res = await request(`${gw.url}/metrics`, { headers: { accept: 'text/plain' } });
  return res.body.text();
}

/** Sequential requests' latencies, ms. */
async function latencies(gw: TestGateway, count: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    expect((await chat(gw, { model: 'gpt-4', messages: [] })).status).toBe(200);
    out.push(performance.now() - started);
  }
  return out;
}

test('collector down: requests are served as usual, the spans are dropped and counted', async () => {
  const gw = await gatewayWithTracing(tracingConfig({ endpoint: `http://127.0.0.1:${await freePort()}`, timeout_ms: 300 }));
  try {
    const took = await latencies(gw, 50);
    // Each export is refused at once and tried again for up to 300 ms: a request that waited for it would show.
    expect(Math.max(...took)).toBeLessThan(1000);
    let dropped = 0;
    const deadline = Date.now() + 10_000;
    while (dropped < 100 && Date.now() < deadline) {
      dropped = series(await metricsText(gw), 'apiproxy_tracing_spans_dropped_total', { reason: 'export_failed' });
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(dropped).toBe(100); // 50 requests, two spans each
    expect(series(await metricsText(gw), 'apiproxy_tracing_spans_exported_total')).toBe(0);
    expect(gw.logs.entries.filter((e) => String(e['msg']).startsWith('tracing: the collector did not take spans'))).toHaveLength(1);
  } finally {
    await gw.stop();
  }
});

test('collector slow: requests do not wait for it; a full queue drops spans (counted); shutdown waits no longer than its deadline', async () => {
  const collector = await silentCollector();
  const gw = await gatewayWithTracing(
    tracingConfig({ endpoint: collector.url, timeout_ms: 5000, export_timeout_ms: 5000, max_queue_size: 20, max_export_batch_size: 10 }),
    {},
    {
      shutdown: { drain_delay_ms: 0, timeout_ms: 1500 },
    },
  );
  try {
    const took = await latencies(gw, 60);
    // An export that held requests would hold them for the exporter's 5 s.
    expect(Math.max(...took)).toBeLessThan(2000);
    const text = await metricsText(gw);
    expect(series(text, 'apiproxy_tracing_spans_dropped_total', { reason: 'queue_full' })).toBeGreaterThan(0);
    expect(series(text, 'apiproxy_tracing_queue_spans')).toBeLessThanOrEqual(20);
    expect(gw.logs.entries.filter((e) => String(e['msg']).startsWith('tracing: the export queue is full'))).toHaveLength(1);
  } finally {
    const started = Date.now();
    await gw.stop();
    // The 1.5 s shutdown deadline (at least a second for the flush), not the exporter's 5 s.
    expect(Date.now() - started).toBeLessThan(4000);
    expect(gw.logs.entries.some((e) => e['msg'] === 'tracing: spans still queued at the shutdown deadline were dropped')).toBe(true);
    await collector.close();
  }
});

test('shutdown exports the spans still queued', async () => {
  const gw = await gatewayWithTracing(tracingConfig({ schedule_delay_ms: 600_000 }));
  const traceId = hex(16);
  try {
    expect((await chat(gw, { model: 'gpt-4', messages: [] }, { traceparent: `00-${traceId}-${hex(8)}-01` })).status).toBe(200);
  } finally {
    await gw.stop();
  }
  const trace = await jaeger.trace(traceId, { minSpans: 2, timeoutMs: 3000 });
  expect(trace.spans).toHaveLength(2);
});

test("tracing off: the client's trace context passes through untouched and no tracing series exist", async () => {
  const gw = await startTestGateway(baseConfig(upstream.url));
  try {
    const traceparent = `00-${hex(16)}-${hex(8)}-01`;
    expect((await chat(gw, { model: 'gpt-4', messages: [] }, { traceparent, tracestate: 'vendor=abc', 'x-test-marker': 'off' })).status).toBe(200);
    expect(seen('off').traceparent).toBe(traceparent);
    expect(seen('off').tracestate).toBe('vendor=abc');
    expect(await metricsText(gw)).not.toContain('apiproxy_tracing_');
  } finally {
    await gw.stop();
  }
});
