/**
 * The limits on the path, scaled down: no client-side limit is a clock on an
 * answer (a stream outlives the head, request and keep-alive timeouts and the
 * upstream's head timeout), the upstream's idle timeout is the one that ends a
 * silent stream, and each limit that bites shows in a metric.
 */
import OpenAI from 'openai';
import { connect } from 'node:net';
import { request } from 'undici';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { baseConfig, CLIENT_KEY, startTestGateway, type TestGateway } from '../support/gateway-harness.js';
import { prometheus, series, waitFor } from './helpers.js';

let upstream: FakeUpstream;
let gw: TestGateway;

/** Every limit far shorter than the 3-second stream below, except the upstream's idle timeout. */
const SHORT = { headersTimeoutMs: 300, requestTimeoutMs: 500, keepAliveTimeoutMs: 200, connectionsCheckingIntervalMs: 50 };

beforeAll(async () => {
  upstream = await startFakeUpstream();
  const config = baseConfig(upstream.url);
  const upstreams = config['upstreams'] as { default: Record<string, unknown> };
  upstreams.default['timeouts'] = { connect_ms: 300, headers_ms: 500, idle_ms: 1_000 };
  gw = await startTestGateway(config, { serverLimits: SHORT });
});
afterAll(async () => {
  await gw.stop();
  await upstream.close();
});

const auth = { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' };

test('a 3-second stream outlives every client timeout and the upstream head timeout: it arrives whole', async () => {
  const client = new OpenAI({
    apiKey: CLIENT_KEY,
    baseURL: `${gw.url}/v1`,
    maxRetries: 0,
    defaultHeaders: { 'x-fake-chunks': '12', 'x-fake-interval': '250' },
  });
  const started = Date.now();
  const stream = await client.chat.completions.create({ model: 'gpt-4', messages: [], stream: true });
  const parts: string[] = [];
  for await (const part of stream) parts.push(part.choices[0]!.delta.content ?? '');
  expect(Date.now() - started).toBeGreaterThan(2_500);
  expect(parts).toEqual(Array.from({ length: 12 }, (_, i) => `tok${i} `));
});

test('a stream silent for longer than idle_ms ends with an upstream_timeout event, counted as phase idle', async () => {
  const before = series(await prometheus(gw.url), 'apiproxy_client_errors_total', { reason: 'request_timeout' });
  const res = await request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { ...auth, 'x-fake-stall': 'after-first' },
    body: JSON.stringify({ model: 'gpt-4', stream: true }),
  });
  const text = await res.body.text();
  expect(res.statusCode).toBe(200);
  expect(text).toContain('"code":"upstream_timeout"');
  const after = await prometheus(gw.url);
  expect(series(after, 'apiproxy_upstream_timeouts_total', { upstream: 'default', phase: 'idle' })).toBe(1);
  // the client was not the one timing out
  expect(series(after, 'apiproxy_client_errors_total', { reason: 'request_timeout' })).toBe(before);
});

test('an upstream head later than headers_ms: 504 upstream_timeout, counted as phase headers', async () => {
  const res = await request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { ...auth, 'x-fake-headers-delay': '900' },
    body: JSON.stringify({ model: 'gpt-4' }),
  });
  expect(res.statusCode).toBe(504);
  expect(((await res.body.json()) as { error: { code: string } }).error.code).toBe('upstream_timeout');
  expect(series(await prometheus(gw.url), 'apiproxy_upstream_timeouts_total', { upstream: 'default', phase: 'headers' })).toBe(1);
});

test('client limits that bite are counted by reason: a head over 16 KiB, a connection that sends nothing, a head never finished', async () => {
  const before = await prometheus(gw.url);
  const count = (text: string, reason: string): number => series(text, 'apiproxy_client_errors_total', { reason });
  /** Sends `bytes` (perhaps none) on a new connection and waits for the server to close it; then for `reason` to count it. */
  async function closedAndCounted(bytes: string, reason: string): Promise<void> {
    // Read, or the server's FIN may sit unseen in a paused socket and 'close' never comes.
    const socket = connect(gw.gateway.port, '127.0.0.1').resume();
    if (bytes !== '') socket.write(bytes);
    await new Promise<void>((resolve) => socket.on('close', () => resolve()).on('error', () => undefined));
    await waitFor(async () => count(await prometheus(gw.url), reason) === count(before, reason) + 1, 3_000, `counted as ${reason}`);
  }
  const overflow = await request(`${gw.url}/health`, { headers: { 'x-big': 'a'.repeat(20 * 1024) } });
  await overflow.body.text();
  expect(overflow.statusCode).toBe(431);
  await closedAndCounted('', 'silent_connection');
  // A head begun and never finished is closed by the same clock, and counted as too slow, not silent.
  await closedAndCounted('POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n', 'request_timeout');
  const after = await prometheus(gw.url);
  expect(count(after, 'header_overflow')).toBe(count(before, 'header_overflow') + 1);
  expect(count(after, 'silent_connection')).toBe(count(before, 'silent_connection') + 1);
});
