import { request } from 'undici';
import { connect } from 'node:net';
import { Readable } from 'node:stream';
import type { FakeUpstream } from '../support/fake-upstream.js';
import { baseConfig, CLIENT_KEY, startGatewayWithUpstream, startTestGateway, type TestGateway } from '../support/gateway-harness.js';
import { waitFor } from '../support/wait.js';

let upstream: FakeUpstream;
let gw: TestGateway;
let stop: () => Promise<void>;

beforeAll(async () => ({ upstream, gw, stop } = await startGatewayWithUpstream((url) => baseConfig(url, { body_limit: '1MiB' }))));
afterAll(() => stop());

const auth = { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' };
const streamBody = JSON.stringify({ model: 'gpt-4', stream: true, messages: [] });

test('a client that disconnects mid-stream aborts the upstream request at once', async () => {
  const controller = new AbortController();
  const before = upstream.requests.length;
  const res = await request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { ...auth, 'x-fake-chunks': '1000', 'x-fake-interval': '20' },
    body: streamBody,
    signal: controller.signal,
  });
  expect(res.statusCode).toBe(200);
  expect(res.headers['content-type']).toBe('text/event-stream');
  for await (const chunk of res.body) {
    expect(String(chunk)).toContain('tok0');
    break;
  }
  controller.abort();
  const seen = upstream.requests[before]!;
  const started = Date.now();
  await seen.closed;
  expect(Date.now() - started).toBeLessThan(500);
  await waitFor(() => gw.gateway.metrics.activeStreams === 0 && gw.gateway.metrics.activeRequests === 0);
});

test('a client that disconnects before the upstream answers aborts it too', async () => {
  const controller = new AbortController();
  const before = upstream.requests.length;
  const pending = request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { ...auth, 'x-fake-headers-delay': '1500' },
    body: '{"model":"gpt-4"}',
    signal: controller.signal,
  }).catch(() => undefined);
  await waitFor(() => upstream.requests.length > before);
  controller.abort();
  await pending;
  await upstream.requests[before]!.closed;
  await waitFor(() => gw.gateway.metrics.activeRequests === 0);
});

test('upstream unreachable is a 502', async () => {
  // Port 1 on loopback: nothing listens there (a just-closed ephemeral port could be reused by the gateway itself).
  const other = await startTestGateway(baseConfig('http://127.0.0.1:1'));
  try {
    const res = await request(`${other.url}/v1/chat/completions`, { method: 'POST', headers: auth, body: '{"model":"a"}' });
    expect(res.statusCode).toBe(502);
    expect(((await res.body.json()) as any).error.code).toBe('upstream_unreachable');
  } finally {
    await other.stop();
  }
});

test('upstream reset before headers is a 502', async () => {
  const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { ...auth, 'x-fake-reset': 'before-headers' }, body: '{"model":"a"}' });
  expect(res.statusCode).toBe(502);
  expect(((await res.body.json()) as any).error.code).toBe('upstream_reset');
});

test('headers that never come are a 504 after headers_ms', async () => {
  const started = Date.now();
  const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { ...auth, 'x-fake-headers-delay': '5000' }, body: '{"model":"a"}' });
  expect(res.statusCode).toBe(504);
  expect(((await res.body.json()) as any).error.code).toBe('upstream_timeout');
  expect(Date.now() - started).toBeLessThan(4000);
});

test('a stalled stream ends with an error event after idle_ms, not a total-time cap', async () => {
  const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { ...auth, 'x-fake-stall': 'after-first' }, body: streamBody });
  expect(res.statusCode).toBe(200);
  const text = await res.body.text();
  expect(text).toContain('tok0');
  expect(text).toContain('"code":"upstream_timeout"');
});

test('a stream longer than idle_ms overall, but never idle that long, completes', async () => {
  // 60 chunks 50 ms apart = 3 s, above idle_ms (2 s)
  const res = await request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { ...auth, 'x-fake-chunks': '60', 'x-fake-interval': '50' },
    body: streamBody,
  });
  const text = await res.body.text();
  expect(text).toContain('tok59');
  expect(text.trim().endsWith('data: [DONE]')).toBe(true);
});

test('reset mid-stream ends the stream with an error event', async () => {
  const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { ...auth, 'x-fake-reset': 'mid-stream' }, body: streamBody });
  const text = await res.body.text();
  expect(text).toContain('tok0');
  expect(text).toContain('"code":"upstream_reset"');
});

test('413 for a body over the limit, declared (64 MiB) or chunked, without reading it all', async () => {
  const big = Buffer.alloc(64 * 1024 * 1024, 'a');
  const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: auth, body: big }).catch((error: Error) => error);
  if (res instanceof Error) throw res;
  expect(res.statusCode).toBe(413);
  expect(((await res.body.json()) as any).error.code).toBe('body_too_large');

  function* chunks() {
    for (let i = 0; i < 64; i++) yield Buffer.alloc(64 * 1024, 'b');
  }
  const chunked = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: auth, body: Readable.from(chunks()) }).catch(
    (error: Error) => error,
  );
  if (chunked instanceof Error) throw chunked;
  expect(chunked.statusCode).toBe(413);
  await chunked.body.text();
});

test('a 413 on a raw socket arrives before the body is sent and the socket closes', async () => {
  const url = new URL(gw.url);
  const socket = connect(Number(url.port), url.hostname);
  const received: Buffer[] = [];
  socket.on('data', (chunk) => received.push(chunk));
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  socket.write(
    `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${CLIENT_KEY}\r\ncontent-type: application/json\r\ncontent-length: ${64 * 1024 * 1024}\r\n\r\n{"model":`,
  );
  await closed;
  expect(Buffer.concat(received).toString()).toMatch(/^HTTP\/1.1 413/);
});

test('a large upstream response streams through without being buffered', async () => {
  const size = 200 * 1024 * 1024;
  const before = upstream.requests.length;
  // Buffers alive, not RSS: this jest process's RSS has slack from its start that a held body fits in unseen.
  const baseline = process.memoryUsage().arrayBuffers;
  const res = await request(`${gw.url}/v1/files/big/content`, { headers: { authorization: `Bearer ${CLIENT_KEY}`, 'x-fake-size': String(size) } });
  let total = 0;
  let peakBuffers = baseline;
  let upstreamSentAtFirstByte = -1;
  for await (const chunk of res.body) {
    if (upstreamSentAtFirstByte === -1) upstreamSentAtFirstByte = upstream.requests[before]!.bytesSent;
    total += (chunk as Buffer).length;
    peakBuffers = Math.max(peakBuffers, process.memoryUsage().arrayBuffers);
  }
  expect(total).toBe(size);
  expect(res.headers['content-length']).toBe(String(size));
  // The first bytes reached the client while the upstream was still sending; a held body would keep at
  // least its whole size in live buffers (garbage between collections stays well under that).
  expect(upstreamSentAtFirstByte).toBeLessThan(size / 2);
  expect(peakBuffers - baseline).toBeLessThan(size);
});
