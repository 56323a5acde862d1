/**
 * Retries and fallbacks through a real gateway, in front of fake upstreams
 * that fail on demand (refuse, reset, hang, 429 with Retry-After, 503, 500 then
 * succeed), with the official openai SDK as the client and raw sockets where
 * bytes matter: the client gets one answer, from one upstream, and the answer
 * of the target that failed never reaches it.
 */
import OpenAI from 'openai';
import { request } from 'undici';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { CLIENT_KEY, startTestGateway, UPSTREAM_KEY, type TestGateway } from '../support/gateway-harness.js';
import { movement, prometheus, rawRequest, series, waitFor } from '../reliability/helpers.js';
import { freePort, sleep } from '../support/wait.js';

let a: FakeUpstream;
let b: FakeUpstream;
let deadPort: number;
let gw: TestGateway;

const RETRY = {
  attempts: 2,
  backoff: { base_ms: 0, max_ms: 0 }, // a retry of the same target as soon as a fallback: the fallback must still go first
  conditions: ['connect_failure', 'headers_timeout', 'reset', 429, 500, 502, 503, 504],
};
/** Outlier ejection off here, so that every test starts from the same state (ejection: outlier.test.ts). */
const NO_EJECTION = { consecutive_failures: 0 };

function upstream(url: string, key: string): Record<string, unknown> {
  return { url: `${url}/v1`, api_key: key, timeouts: { connect_ms: 500, headers_ms: 300, idle_ms: 2000 }, retry: RETRY, outlier: NO_EJECTION };
}

/** A route per test, so that a Retry-After one test provokes does not steer another: `<name>` -> a (priority 0), b (priority 1). */
const FALLBACK_ROUTES = ['refuse', 'reset', 'hang', 'limited', 'unavailable'].flatMap((name) => [name, `${name}-s`]);
const ROUTES = [
  ...FALLBACK_ROUTES,
  'stream',
  'exhausted',
  'exhausted-sdk',
  'held',
  'deadline',
  'deadline-short',
  'deadline-wait',
  'gone',
  'gone-wait',
  'waits',
];

function config(): Record<string, unknown> {
  return {
    upstreams: {
      default: upstream(a.url, UPSTREAM_KEY),
      b: upstream(b.url, 'sk-upstream-b-0123456789'),
      dead: upstream(`http://127.0.0.1:${deadPort}`, 'sk-dead'),
    },
    client_keys: [{ id: 'team-a', key: CLIENT_KEY }],
    routes: [
      ...ROUTES.map((name) => ({
        model: name,
        targets: [
          { model: `${name}-a`, upstream: name.startsWith('refuse') ? 'dead' : 'default' },
          { model: `${name}-b`, upstream: 'b', priority: 1 },
        ],
      })),
      { model: 'solo', targets: [{ model: 'solo-a' }] },
      {
        model: 'renamed',
        targets: [{ model: 'renamed-a' }, { model: 'renamed-b', upstream: 'b', priority: 1 }],
        answer_model: 'requested',
      },
    ],
    // Answers name the model their target was sent (the fake upstreams echo it), so that each test sees which target
    // answered; the route `renamed` has the default back (answer_model: requested).
    answer_model: 'upstream',
    retry_budget_ms: 5000,
    shutdown: { drain_delay_ms: 0, timeout_ms: 5000 },
  };
}

beforeAll(async () => {
  a = await startFakeUpstream({ name: 'a' });
  b = await startFakeUpstream({ name: 'b' });
  deadPort = await freePort();
  gw = await startTestGateway(config());
});

afterAll(async () => {
  await gw?.stop();
  await a?.close();
  await b?.close();
});

beforeEach(() => {
  a.script.length = 0;
  b.script.length = 0;
});

const client = (): OpenAI => new OpenAI({ apiKey: CLIENT_KEY, baseURL: `${gw.url}/v1`, maxRetries: 0 });
const messages = [{ role: 'user' as const, content: 'hi' }];

/** The access line of the request with this id. */
async function accessLine(requestId: string | null): Promise<Record<string, unknown>> {
  let line: Record<string, unknown> | undefined;
  await waitFor(() => (line = gw.logs.entries.find((e) => e['msg'] === 'request' && e['req_id'] === requestId)) !== undefined, 2000, 'the access line');
  return line!;
}

/** The chat completion, or the stream's chunks joined, with the answer's headers. */
async function complete(model: string, stream: boolean, headers: Record<string, string> = {}): Promise<{ model: string; text: string; headers: Headers }> {
  if (!stream) {
    const { data, response } = await client().chat.completions.create({ model, messages }, { headers }).withResponse();
    return { model: data.model, text: data.choices[0]!.message.content ?? '', headers: response.headers };
  }
  const { data, response } = await client().chat.completions.create({ model, messages, stream: true }, { headers }).withResponse();
  const models = new Set<string>();
  let text = '';
  for await (const chunk of data) {
    models.add(chunk.model);
    text += chunk.choices[0]?.delta.content ?? '';
  }
  expect(models.size).toBe(1); // every chunk from one upstream
  return { model: [...models][0]!, text, headers: response.headers };
}

describe('the first target fails, the fallback answers (openai SDK)', () => {
  const cases: [name: string, route: string, failure: Record<string, string> | null, outcome: string][] = [
    ['connection refused', 'refuse', null, 'connect_failure'],
    ['reset before any response byte', 'reset', { 'x-fake-reset': 'before-headers' }, 'reset'],
    ['no headers within headers_ms (a hang)', 'hang', { 'x-fake-headers-delay': '3000' }, 'timeout'],
    ['429 with Retry-After', 'limited', { 'x-fake-status': '429', 'x-fake-retry-after': '1' }, 'rate_limited'],
    ['503', 'unavailable', { 'x-fake-status': '503' }, 'server_error'],
  ];

  test.each(cases.flatMap(([name, route, failure, outcome]) => [false, true].map((stream) => [name, stream, route, failure, outcome] as const)))(
    '%s (stream: %s)',
    async (_name, stream, base, failure, outcome) => {
      const route = stream ? `${base}-s` : base; // a route each: a Retry-After one provokes must not steer the other
      const failedUpstream = base === 'refuse' ? 'dead' : 'default';
      const before = await prometheus(gw.url);
      const seenByA = a.requests.length;
      // A reset on a kept-alive connection would be taken for a stale one and sent again (stale-connection.test.ts).
      await a.closeConnections();
      if (failure !== null) a.script.push(failure);
      const answer = await complete(route, stream);
      expect(answer.model).toBe(`${route}-b`);
      expect(answer.text).toBe(stream ? 'tok0 tok1 tok2 tok3 tok4 ' : `hello from ${route}-b`);
      expect(answer.headers.get('x-fake-upstream')).toBe('b');
      expect(answer.headers.get('x-apiproxy-attempts')).toBe('2');
      if (failure !== null) {
        expect(a.requests.length).toBe(seenByA + 1);
        expect(JSON.parse(a.requests.at(-1)!.body.toString()).model).toBe(`${route}-a`);
      }
      expect(await accessLine(answer.headers.get('x-request-id'))).toMatchObject({
        model: route,
        upstream: 'b',
        target_model: `${route}-b`,
        attempts: 2,
        status: 200,
        error: null,
      });
      const after = await prometheus(gw.url);
      expect(movement(before, after, 'apiproxy_upstream_attempts_total', { upstream: failedUpstream, outcome })).toBe(1);
      expect(movement(before, after, 'apiproxy_fallbacks_total', { route })).toBe(1);
    },
  );

  test('500 then success: the same target is tried again after its backoff (no fallback needed)', async () => {
    a.script.push({ 'x-fake-status': '500' });
    const seenByB = b.requests.length;
    const answer = await complete('solo', false);
    expect(answer.model).toBe('solo-a');
    expect(answer.headers.get('x-apiproxy-attempts')).toBe('2');
    expect(b.requests.length).toBe(seenByB);
    expect(series(await prometheus(gw.url), 'apiproxy_upstream_attempts_total', { upstream: 'default', outcome: 'server_error' })).toBeGreaterThan(0);
  });
});

describe('the same failures through the undici transport (https, HTTP/2 and proxied upstreams use it)', () => {
  let viaUndici: TestGateway;
  beforeAll(async () => {
    viaUndici = await startTestGateway(config(), { env: { API_PROXY_TRANSPORT: 'undici' } });
  });
  afterAll(async () => {
    await viaUndici?.stop();
  });

  const cases: [name: string, route: string, failure: Record<string, string> | null][] = [
    ['connection refused', 'refuse', null],
    ['reset before any response byte', 'reset', { 'x-fake-reset': 'before-headers' }],
    ['no headers within headers_ms (a hang)', 'hang', { 'x-fake-headers-delay': '3000' }],
    ['503', 'unavailable', { 'x-fake-status': '503' }],
  ];

  test.each(cases)('%s: the fallback answers', async (_name, route, failure) => {
    await a.closeConnections();
    if (failure !== null) a.script.push(failure);
    const response = await request(`${viaUndici.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: route, messages }),
    });
    const answer = (await response.body.json()) as { model: string };
    expect([response.statusCode, answer.model]).toEqual([200, `${route}-b`]);
    expect(response.headers['x-fake-upstream']).toBe('b');
    expect(response.headers['x-apiproxy-attempts']).toBe('2');
  });
});

/** The body of a raw chunked answer, decoded. */
function dechunk(body: string): string {
  let out = '';
  let at = 0;
  for (;;) {
    const lineEnd = body.indexOf('\r\n', at);
    const size = parseInt(body.slice(at, lineEnd), 16);
    if (lineEnd === -1 || Number.isNaN(size)) throw new Error(`not chunked at ${at}: ${JSON.stringify(body.slice(at, at + 40))}`);
    if (size === 0) return out;
    out += body.slice(lineEnd + 2, lineEnd + 2 + size);
    at = lineEnd + 2 + size + 2;
  }
}

test('a stream that falls back is the second target’s stream, byte for byte, and nothing of the first answer', async () => {
  const body = JSON.stringify({ model: 'stream', stream: true, messages });
  const direct = await request(`${b.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: body.replace('"stream"', '"stream-b"'),
  });
  const directText = await direct.body.text();
  a.script.push({ 'x-fake-status': '503', 'x-fake-retry-after': 'none' });
  const raw = await rawRequest(
    gw.url,
    `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${CLIENT_KEY}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
  expect(raw.statuses).toEqual([200]); // one answer
  expect(raw.text).toContain('x-fake-upstream: b\r\n');
  expect(raw.text).toContain('x-apiproxy-attempts: 2\r\n');
  expect(raw.text).not.toContain('fake upstream a');
  expect(dechunk(raw.text.slice(raw.text.indexOf('\r\n\r\n') + 4))).toBe(directText);
});

test('answer_model: requested: an answer that fell back names the requested model; the header names the model the second target was sent', async () => {
  for (const stream of [false, true]) {
    a.script.push({ 'x-fake-status': '503', 'x-fake-retry-after': 'none' });
    const answer = await complete('renamed', stream);
    expect([stream, answer.model]).toEqual([stream, 'renamed']);
    expect(answer.headers.get('x-apiproxy-upstream-model')).toBe('renamed-b');
    expect(answer.headers.get('x-fake-upstream')).toBe('b');
    expect(answer.headers.get('x-apiproxy-attempts')).toBe('2');
  }
  // The second target never answers: the first target's 503, held, is relayed with that target's model in the header.
  a.script.push({ 'x-fake-status': '503', 'x-fake-retry-after': 'none' }, { 'x-fake-status': '503', 'x-fake-retry-after': 'none' });
  b.script.push({ 'x-fake-headers-delay': '3000' }, { 'x-fake-headers-delay': '3000' });
  const last = await request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'renamed', messages }),
  });
  await last.body.text();
  expect(last.statusCode).toBe(503);
  expect(last.headers['x-fake-upstream']).toBe('a');
  expect(last.headers['x-apiproxy-attempts']).toBe('4');
  expect(last.headers['x-apiproxy-upstream-model']).toBe('renamed-a');
});

test('no target left: the client gets the last upstream answer as it came (status, body, Retry-After)', async () => {
  // Both ask to wait longer than the budget (5 s): neither is tried again.
  a.script.push({ 'x-fake-status': '429', 'x-fake-retry-after': '600' });
  b.script.push({ 'x-fake-status': '503', 'x-fake-retry-after': '900' });
  const res = await request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'exhausted', messages }),
  });
  const text = await res.body.text();
  expect(res.statusCode).toBe(503);
  expect(res.headers['retry-after']).toBe('900');
  expect(res.headers['x-fake-upstream']).toBe('b');
  expect(res.headers['x-apiproxy-attempts']).toBe('2');
  expect(JSON.parse(text)).toEqual({ error: { message: 'fake upstream b error 503', type: 'upstream_fake', param: null, code: 'fake_503' } });
  expect(await accessLine(res.headers['x-request-id'] as string)).toMatchObject({ upstream: 'b', target_model: 'exhausted-b', attempts: 2, status: 503 });

  // The openai SDK sees the same: the upstream's error, not one the gateway made (four tries, the last a 504 whichever went last).
  a.script.push({ 'x-fake-status': '502' }, { 'x-fake-status': '504' });
  b.script.push({ 'x-fake-status': '504' }, { 'x-fake-status': '504' });
  const { response } = await client()
    .chat.completions.create({ model: 'exhausted-sdk', messages })
    .withResponse()
    .then(
      () => ({ response: null }),
      (error: unknown) => ({ response: error as { status: number; code: string; headers: Headers } }),
    );
  expect(response).toMatchObject({ status: 504, code: 'fake_504' });
  expect(response!.headers.get('x-apiproxy-attempts')).toBe('4');
});

test('an upstream answered, then every other attempt failed before answering: the client gets that answer, not a gateway error', async () => {
  await a.closeConnections(); // each reset on a fresh connection: no resend (stale-connection.test.ts)
  await b.closeConnections();
  a.script.push({ 'x-fake-status': '503', 'x-fake-retry-after': 'none', 'x-fake-marker': 'kept', 'x-fake-close': '1' }, { 'x-fake-reset': 'before-headers' });
  b.script.push({ 'x-fake-reset': 'before-headers' }, { 'x-fake-reset': 'before-headers' });
  const res = await request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'held', messages }),
  });
  expect(res.statusCode).toBe(503);
  expect(res.headers['x-fake-marker']).toBe('kept');
  expect(res.headers['x-apiproxy-attempts']).toBe('4');
  expect(((await res.body.json()) as { error: { code: string } }).error.code).toBe('fake_503');
  expect(await accessLine(res.headers['x-request-id'] as string)).toMatchObject({ upstream: 'default', target_model: 'held-a', attempts: 4, status: 503 });
});

test('every attempt fails before any answer: a gateway error, with the attempts made', async () => {
  await a.closeConnections(); // each reset is then on a fresh connection: no resend (stale-connection.test.ts)
  await b.closeConnections();
  a.script.push({ 'x-fake-reset': 'before-headers' }, { 'x-fake-reset': 'before-headers' });
  b.script.push({ 'x-fake-reset': 'before-headers' }, { 'x-fake-reset': 'before-headers' });
  const res = await request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'reset', messages }),
  });
  expect(res.statusCode).toBe(502);
  expect(res.headers['x-apiproxy-attempts']).toBe('4');
  expect(((await res.body.json()) as { error: { code: string } }).error.code).toBe('upstream_reset');
});

describe('the deadline', () => {
  // What a test scripted and its requests did not take must not answer the next test's.
  beforeEach(() => {
    a.script.length = 0;
    b.script.length = 0;
  });

  test('retries never outlast the client’s deadline (x-apiproxy-deadline-ms): the answer comes before it', async () => {
    a.script.push({ 'x-fake-headers-delay': '3000' });
    b.script.push({ 'x-fake-headers-delay': '3000' });
    const started = performance.now();
    // The SDK would give up at 1500 ms; the gateway answers by 600 ms, the deadline it was given.
    const sdk = new OpenAI({ apiKey: CLIENT_KEY, baseURL: `${gw.url}/v1`, maxRetries: 0, timeout: 1500 });
    const failure = await sdk.chat.completions.create({ model: 'deadline', messages }, { headers: { 'x-apiproxy-deadline-ms': '600' } }).then(
      () => null,
      (error: unknown) => error,
    );
    const elapsed = performance.now() - started;
    expect(failure).toMatchObject({ status: 504, code: 'upstream_timeout' });
    expect(elapsed).toBeGreaterThan(550);
    expect(elapsed).toBeLessThan(1000);
    // a tried for its 300 ms headers timeout, b for what was left
    expect(a.requests.at(-1)!.headers['x-apiproxy-deadline-ms']).toBeUndefined();
  });

  test('a deadline shorter than the headers timeout cuts the first attempt’s wait for headers', async () => {
    // a's attempt is cut at the deadline and b is not tried in the moment left: the attempt loop begins none with less
    // than 10 ms to go (before, b sometimes was, and answered 200 within 1 ms; seen in CI).
    await a.closeConnections();
    a.script.push({ 'x-fake-headers-delay': '3000' });
    const started = performance.now();
    const res = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json', 'x-apiproxy-deadline-ms': '120' },
      body: JSON.stringify({ model: 'deadline-short', messages }),
    });
    await res.body.text();
    const elapsed = performance.now() - started;
    expect(res.statusCode).toBe(504);
    expect(res.headers['x-apiproxy-attempts']).toBe('1');
    expect(elapsed).toBeGreaterThan(110);
    expect(elapsed).toBeLessThan(260); // a's own headers timeout is 300 ms
  });

  test('a Retry-After longer than what is left is not waited for: the 429 is answered at once', async () => {
    a.script.push({ 'x-fake-status': '429', 'x-fake-retry-after': '2' });
    b.script.push({ 'x-fake-status': '429', 'x-fake-retry-after': '2' });
    const started = performance.now();
    const res = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json', 'x-apiproxy-deadline-ms': '1000' },
      body: JSON.stringify({ model: 'deadline-wait', messages }),
    });
    await res.body.text();
    expect(res.statusCode).toBe(429);
    expect(res.headers['x-apiproxy-attempts']).toBe('2');
    expect(performance.now() - started).toBeLessThan(500);
  });

  test('a Retry-After within the budget is waited out, then the target is tried again', async () => {
    a.script.push({ 'x-fake-status': '503', 'x-fake-retry-after-ms': '400' });
    const started = performance.now();
    const answer = await complete('solo', false);
    expect(answer.model).toBe('solo-a');
    expect(answer.headers.get('x-apiproxy-attempts')).toBe('2');
    expect(performance.now() - started).toBeGreaterThan(390);
  });

  test('a deadline header that is not a number of milliseconds is refused', async () => {
    const res = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json', 'x-apiproxy-deadline-ms': '1e3' },
      body: JSON.stringify({ model: 'solo', messages }),
    });
    expect(res.statusCode).toBe(400);
    expect(((await res.body.json()) as { error: { code: string } }).error.code).toBe('invalid_deadline');
  });
});

describe('a client that disconnects stops the loop', () => {
  test('during an attempt: the upstream request is aborted, no fallback is sent', async () => {
    a.script.push({ 'x-fake-headers-delay': '250' });
    const seenByB = b.requests.length;
    const seenByA = a.requests.length;
    const controller = new AbortController();
    const pending = request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json', 'x-request-id': 'gone-during-attempt' },
      body: JSON.stringify({ model: 'gone', messages }),
      signal: controller.signal,
    });
    await waitFor(() => a.requests.length > seenByA, 2000, 'the first attempt reached a');
    controller.abort();
    await expect(pending).rejects.toThrow();
    await a.requests.at(-1)!.closed;
    await sleep(500); // past a's headers timeout, when a fallback would have gone
    expect(b.requests.length).toBe(seenByB);
    expect(await accessLine('gone-during-attempt')).toMatchObject({ status: 499, client_aborted: true, attempts: 1 });
  });

  test('while it waits to try again: no further attempt', async () => {
    // Both targets ask for 2 s: within the budget, so the loop waits to try again ...
    a.script.push({ 'x-fake-status': '503', 'x-fake-retry-after': '2' });
    b.script.push({ 'x-fake-status': '503', 'x-fake-retry-after': '2' });
    const before = a.requests.length + b.requests.length;
    const controller = new AbortController();
    const pending = request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json', 'x-request-id': 'gone-while-waiting' },
      body: JSON.stringify({ model: 'gone-wait', messages }),
      signal: controller.signal,
    });
    await waitFor(() => a.requests.length + b.requests.length === before + 2, 2000, 'both targets tried');
    await sleep(100);
    // ... unless the client has left by then.
    controller.abort();
    await expect(pending).rejects.toThrow();
    expect(await accessLine('gone-while-waiting')).toMatchObject({ status: 499, client_aborted: true, attempts: 2 });
    await sleep(2200);
    expect(a.requests.length + b.requests.length).toBe(before + 2);
  });
});

test('a 429 with Retry-After leaves that target alone in later requests until then; the fallback answers meanwhile', async () => {
  a.script.push({ 'x-fake-status': '429', 'x-fake-retry-after-ms': '700' });
  expect((await complete('waits', false)).model).toBe('waits-b');
  const seenByA = a.requests.length;
  for (let i = 0; i < 3; i++) {
    const answer = await complete('waits', false);
    expect(answer.model).toBe('waits-b');
    expect(answer.headers.get('x-apiproxy-attempts')).toBe('1');
  }
  expect(a.requests.length).toBe(seenByA);
  await sleep(750);
  expect((await complete('waits', false)).model).toBe('waits-a');
});
