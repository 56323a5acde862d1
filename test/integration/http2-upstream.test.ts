/**
 * A real HTTP/2 upstream (node:http2 over TLS with a test CA, and h2c in the
 * clear) behind the gateway, with the openai SDK as the client: chat and
 * event streams over h2, many concurrent streams on one connection, and what
 * each `http2` setting negotiates.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import {
  createSecureServer,
  createServer as createH2cServer,
  type Http2Server,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type Http2SecureServer,
  type ServerHttp2Session,
} from 'node:http2';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { request } from 'undici';
import { makeTestCertificates, type TestCertificates } from '../support/real/index.js';
import { CLIENT_KEY, startTestGateway, UPSTREAM_KEY, type TestGateway } from '../support/gateway-harness.js';
import { sleep, waitFor } from '../support/wait.js';

interface Seen {
  httpVersion: string;
  path: string;
  authorization: string | undefined;
  body: Record<string, unknown>;
}

interface H2Upstream {
  url: string;
  seen: Seen[];
  /** HTTP/2 sessions (connections) the server accepted. */
  sessions: number;
  /** Streams open at once, at most. */
  maxOpenStreams: number;
  /** Streams the client closed (RST_STREAM) before the answer was complete. */
  abandonedStreams: number;
  close(): Promise<void>;
}

/** Answers like an OpenAI API: a chat completion, or with `"stream": true` `x-chunks` events `x-interval` ms apart. */
async function answer(req: Http2ServerRequest, res: Http2ServerResponse, upstream: H2Upstream): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const body = chunks.length === 0 ? {} : (JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>);
  upstream.seen.push({ httpVersion: req.httpVersion, path: req.url, authorization: req.headers.authorization, body });
  const model = typeof body['model'] === 'string' ? body['model'] : 'none';
  if (body['stream'] !== true) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        id: 'chatcmpl-h2',
        object: 'chat.completion',
        created: 0,
        model,
        choices: [{ index: 0, message: { role: 'assistant', content: `over ${req.httpVersion}` }, finish_reason: 'stop' }],
      }),
    );
    return;
  }
  const count = Number(req.headers['x-chunks'] ?? 5);
  const interval = Number(req.headers['x-interval'] ?? 5);
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  for (let i = 0; i < count; i++) {
    if (res.stream.destroyed || res.stream.closed) return;
    const chunk = {
      id: 'chatcmpl-h2',
      object: 'chat.completion.chunk',
      created: 0,
      model,
      choices: [{ index: 0, delta: { content: `t${i} ` }, finish_reason: null }],
    };
    res.write(`data: ${JSON.stringify(chunk)}\n\n`);
    await sleep(interval);
  }
  res.end('data: [DONE]\n\n');
}

async function listen(server: Http2SecureServer | Http2Server, scheme: 'https' | 'http'): Promise<H2Upstream> {
  let open = 0;
  const upstream: H2Upstream = {
    url: '',
    seen: [],
    sessions: 0,
    maxOpenStreams: 0,
    abandonedStreams: 0,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const session of sessions) session.destroy();
      }),
  };
  const sessions = new Set<ServerHttp2Session>();
  server.on('session', (session) => {
    upstream.sessions++;
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
  });
  server.on('stream', (stream) => {
    open++;
    upstream.maxOpenStreams = Math.max(upstream.maxOpenStreams, open);
    stream.on('close', () => open--);
    // The client reset the stream (RST_STREAM) before the answer ended.
    stream.on('aborted', () => upstream.abandonedStreams++);
  });
  server.on('request', (req: Http2ServerRequest, res: Http2ServerResponse) => void answer(req, res, upstream));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  upstream.url = `${scheme}://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return upstream;
}

let dir: string;
let certs: TestCertificates;
const started: { close(): Promise<void> }[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'api-proxy-h2-'));
  certs = makeTestCertificates(dir);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(async () => {
  for (const part of started.splice(0).reverse()) await part.close();
});

async function h2Upstream(): Promise<H2Upstream> {
  // allowHTTP1: the same server answers HTTP/1.1 clients, so a test can see which one the gateway chose.
  const upstream = await listen(createSecureServer({ key: certs.key, cert: certs.cert, allowHTTP1: true }), 'https');
  started.push(upstream);
  return upstream;
}

async function gatewayFor(url: string, upstream: Record<string, unknown>): Promise<TestGateway> {
  const gw = await startTestGateway({
    upstreams: { default: { url: `${url}/v1`, api_key: UPSTREAM_KEY, timeouts: { connect_ms: 2000, headers_ms: 5000, idle_ms: 5000 }, ...upstream } },
    client_keys: [{ id: 'team-a', key: CLIENT_KEY }],
    model_redirects: { 'gpt-4': 'gpt-4o-2024-08-06' },
    shutdown: { drain_delay_ms: 0, timeout_ms: 5000 },
  });
  started.push({ close: () => gw.stop() });
  return gw;
}

const sdk = (gw: TestGateway, headers: Record<string, string> = {}): OpenAI =>
  new OpenAI({ apiKey: CLIENT_KEY, baseURL: `${gw.url}/v1`, maxRetries: 0, defaultHeaders: headers });

describe('an https upstream that speaks HTTP/2', () => {
  test('http2: auto (the default): chat over h2, with the upstream key and the redirected model', async () => {
    const upstream = await h2Upstream();
    const gw = await gatewayFor(upstream.url, { tls: { ca_file: certs.caFile } });
    const completion = await sdk(gw).chat.completions.create({ model: 'gpt-4', messages: [{ role: 'user', content: 'hi' }] });
    expect(completion.choices[0]!.message.content).toBe('over 2.0');
    expect(completion.model).toBe('gpt-4'); // the name the client asked for (answer_model: requested)
    expect(upstream.seen).toEqual([
      {
        httpVersion: '2.0',
        path: '/v1/chat/completions',
        authorization: `Bearer ${UPSTREAM_KEY}`,
        body: { model: 'gpt-4o-2024-08-06', messages: [{ role: 'user', content: 'hi' }] },
      },
    ]);
  });

  test('an event stream over h2 arrives whole and in order', async () => {
    const upstream = await h2Upstream();
    const gw = await gatewayFor(upstream.url, { tls: { ca_file: certs.caFile } });
    const stream = await sdk(gw, { 'x-chunks': '40', 'x-interval': '1' }).chat.completions.create({ model: 'gpt-4', messages: [], stream: true });
    const parts: string[] = [];
    for await (const part of stream) parts.push(part.choices[0]!.delta.content ?? '');
    expect(parts).toEqual(Array.from({ length: 40 }, (_, i) => `t${i} `));
    expect(upstream.seen[0]!.httpVersion).toBe('2.0');
  });

  test('100 concurrent streams share ONE connection, most of them open at once', async () => {
    const upstream = await h2Upstream();
    const gw = await gatewayFor(upstream.url, { tls: { ca_file: certs.caFile } });
    const client = sdk(gw, { 'x-chunks': '20', 'x-interval': '50' });
    // The first request opens the connection; the rest find it warm (a cold burst would open one each while the
    // first handshake is under way, as undici does not know yet that the upstream multiplexes).
    await client.chat.completions.create({ model: 'gpt-4', messages: [] });
    const streams = await Promise.all(
      Array.from({ length: 100 }, async () => {
        const stream = await client.chat.completions.create({ model: 'gpt-4', messages: [], stream: true });
        let text = '';
        for await (const part of stream) text += part.choices[0]!.delta.content ?? '';
        return text;
      }),
    );
    expect(streams.every((text) => text === Array.from({ length: 20 }, (_, i) => `t${i} `).join(''))).toBe(true);
    expect(upstream.seen).toHaveLength(101);
    expect(upstream.sessions).toBe(1);
    // Streams of a second each, started together: they overlap (undici's ceiling is 100 streams per connection).
    expect(upstream.maxOpenStreams).toBeGreaterThanOrEqual(50);
  });

  test('a client that leaves mid-stream: the upstream stream is reset at once, the connection stays for others', async () => {
    const upstream = await h2Upstream();
    const gw = await gatewayFor(upstream.url, { tls: { ca_file: certs.caFile } });
    const res = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json', 'x-chunks': '1000', 'x-interval': '10' },
      body: JSON.stringify({ model: 'gpt-4', stream: true }),
    });
    const reader = res.body[Symbol.asyncIterator]();
    await reader.next();
    res.body.destroy();
    await waitFor(() => upstream.abandonedStreams === 1, 2000, 'the upstream stream reset');
    const completion = await sdk(gw).chat.completions.create({ model: 'gpt-4', messages: [] });
    expect(completion.choices[0]!.message.content).toBe('over 2.0');
    expect(upstream.sessions).toBe(1);
  });

  test('http2: off: the gateway speaks HTTP/1.1 to it', async () => {
    const upstream = await h2Upstream();
    const gw = await gatewayFor(upstream.url, { tls: { ca_file: certs.caFile }, http2: 'off' });
    const completion = await sdk(gw).chat.completions.create({ model: 'gpt-4', messages: [] });
    expect(completion.choices[0]!.message.content).toBe('over 1.1');
  });

  test('http2: on: h2 as with auto', async () => {
    const upstream = await h2Upstream();
    const gw = await gatewayFor(upstream.url, { tls: { ca_file: certs.caFile }, http2: 'on' });
    const completion = await sdk(gw).chat.completions.create({ model: 'gpt-4', messages: [] });
    expect(completion.choices[0]!.message.content).toBe('over 2.0');
  });
});

test('http2: on with an https upstream that only speaks HTTP/1.1: 502 upstream_http2_unavailable', async () => {
  const h1 = createHttpsServer({ key: certs.key, cert: certs.cert }, (_req, res) => res.end('{}'));
  await new Promise<void>((resolve) => h1.listen(0, '127.0.0.1', resolve));
  started.push({ close: () => new Promise<void>((resolve) => h1.close(() => resolve())) });
  const gw = await gatewayFor(`https://127.0.0.1:${(h1.address() as AddressInfo).port}`, { tls: { ca_file: certs.caFile }, http2: 'on' });
  const res = await request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
    body: '{"model":"gpt-4"}',
  });
  expect(res.statusCode).toBe(502);
  expect(((await res.body.json()) as { error: { code: string } }).error.code).toBe('upstream_http2_unavailable');
});

test('h2c: an http:// upstream with http2: on is spoken to in HTTP/2 with prior knowledge', async () => {
  const upstream = await listen(createH2cServer(), 'http');
  started.push(upstream);
  const gw = await gatewayFor(upstream.url, { http2: 'on' });
  const completion = await sdk(gw).chat.completions.create({ model: 'gpt-4', messages: [] });
  expect(completion.choices[0]!.message.content).toBe('over 2.0');
  const stream = await sdk(gw, { 'x-chunks': '3' }).chat.completions.create({ model: 'gpt-4', messages: [], stream: true });
  const parts: string[] = [];
  for await (const part of stream) parts.push(part.choices[0]!.delta.content ?? '');
  expect(parts).toEqual(['t0 ', 't1 ', 't2 ']);
  expect(upstream.sessions).toBe(1);
});
