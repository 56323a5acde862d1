import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { request } from 'undici';
import OpenAI from 'openai';
import type { FakeUpstream } from '../support/fake-upstream.js';
import { baseConfig, CLIENT_KEY, startGatewayWithUpstream, startTestGateway, UPSTREAM_KEY, withOneTry, type TestGateway } from '../support/gateway-harness.js';
import { rawRequest } from '../reliability/helpers.js';

let upstream: FakeUpstream;
let gw: TestGateway;
let stop: () => Promise<void>;

// One try per request: upstream errors are relayed as they came (retries: failover.test.ts).
beforeAll(async () => ({ upstream, gw, stop } = await startGatewayWithUpstream((url) => withOneTry(baseConfig(url)))));
afterAll(() => stop());

const auth = { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' };

async function post(path: string, body: string, headers: Record<string, string> = auth) {
  const res = await request(`${gw.url}${path}`, { method: 'POST', headers, body });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) as Record<string, any> };
}

describe('forwarding', () => {
  test('redirects the model and keeps every other field, in order and byte for byte', async () => {
    const body =
      '{"temperature":0.2,"model":"gpt-4","messages":[{"role":"user","content":"hi \\u00e9"}],"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],"max_tokens":12345678901234567890,"stream_options":null,"n":1.50}';
    const res = await post('/v1/chat/completions', body);
    expect(res.status).toBe(200);
    expect(res.json().model).toBe('gpt-4'); // answer_model: requested, the default
    expect(res.headers['x-apiproxy-upstream-model']).toBe('gpt-4o-2024-08-06');
    const seen = upstream.requests.at(-1)!;
    expect(seen.url).toBe('/v1/chat/completions');
    expect(seen.body.toString()).toBe(body.replace('"model":"gpt-4"', '"model":"gpt-4o-2024-08-06"'));
    expect(seen.headers['content-length']).toBe(String(seen.body.length));
  });

  test('injects the upstream key and never forwards the client key', async () => {
    await post('/v1/chat/completions', '{"model":"x"}');
    const seen = upstream.requests.at(-1)!;
    expect(seen.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
    expect(JSON.stringify(seen.headers)).not.toContain(CLIENT_KEY);
    expect(seen.headers['x-request-id']).toMatch(/.+/);
  });

  test.each(['/v1/completions', '/v1/embeddings', '/v1/responses', '/v1/some/new/endpoint?x=1'])('proxies %s', async (path) => {
    const res = await post(path, '{"model":"gpt-4","input":"a"}');
    expect(res.status).toBe(200);
    const seen = upstream.requests.at(-1)!;
    expect(seen.url).toBe(path);
    expect(JSON.parse(seen.body.toString()).model).toBe('gpt-4o-2024-08-06');
  });

  test("GET /v1/models is the upstream's list plus the gateway's aliases", async () => {
    const res = await request(`${gw.url}/v1/models`, { headers: { ...auth, 'accept-encoding': 'gzip' } });
    expect(res.statusCode).toBe(200);
    const list = (await res.body.json()) as { object: string; data: { id: string; owned_by: string }[] };
    expect(list.object).toBe('list');
    expect(list.data.map((m) => [m.id, m.owned_by])).toEqual([
      ['fake-model', 'fake'],
      ['gpt-4', 'api-proxy'],
    ]);
    expect(upstream.requests.at(-1)!.headers['accept-encoding']).toBe('identity');
    expect(res.headers['content-length']).toBeDefined();
  });

  test('GET /v1/models/<alias> is answered by the gateway; other ids are proxied', async () => {
    const alias = await request(`${gw.url}/v1/models/gpt-4`, { headers: auth });
    expect(await alias.body.json()).toEqual({ id: 'gpt-4', object: 'model', created: 0, owned_by: 'api-proxy' });
    const before = upstream.requests.length;
    const other = await request(`${gw.url}/v1/models/fake-model`, { headers: auth });
    expect(other.statusCode).toBe(200);
    await other.body.text();
    expect(upstream.requests.length).toBe(before + 1);
    expect(upstream.requests.at(-1)!.url).toBe('/v1/models/fake-model');
  });

  test('non-JSON bodies (multipart) pass through as bytes', async () => {
    const form = new FormData();
    form.set('model', 'whisper-1');
    form.set('file', new Blob([Buffer.from([0, 1, 2, 255])]), 'a.wav');
    const res = await fetch(`${gw.url}/v1/audio/transcriptions`, { method: 'POST', headers: { authorization: `Bearer ${CLIENT_KEY}` }, body: form });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    const seen = upstream.requests.at(-1)!;
    expect(seen.headers['content-type']).toMatch(/^multipart\/form-data; boundary=/);
    expect(seen.body.includes(Buffer.from([0, 1, 2, 255]))).toBe(true);
  });

  test('a streamed upload without a length (chunked from the client) reaches the upstream byte for byte, chunked', async () => {
    const pieces = [70_000, 131_072, 10, 200_000].map((size, index) => Buffer.alloc(size, index + 1));
    const res = await request(`${gw.url}/v1/audio/transcriptions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/octet-stream' },
      body: Readable.from(pieces),
    });
    expect(res.statusCode).toBe(200);
    await res.body.text();
    const seen = upstream.requests.at(-1)!;
    expect(seen.headers['content-length']).toBeUndefined();
    expect(seen.headers['transfer-encoding']).toBe('chunked');
    expect(seen.body.equals(Buffer.concat(pieces))).toBe(true);
  });

  test('relays upstream status and headers, keeps a correct content-length', async () => {
    const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: auth, body: '{"model":"gpt-4"}' });
    const text = await res.body.text();
    expect(res.headers['content-length']).toBe(String(Buffer.byteLength(text)));
    expect(res.headers['x-request-id']).toBeDefined();
  });
});

describe('hop-by-hop headers stay on their hop, both ways', () => {
  // Every header RFC 9110 7.6.1 (and RFC 9113 for HTTP2-Settings) ties to one connection, and one a Connection
  // header names; each value carries a marker, since the gateway's own hops have Connection and Keep-Alive headers too.
  const HOP =
    'keep-alive: timeout=77, hop-marker=1\r\nproxy-connection: hop-marker\r\nproxy-authenticate: Basic realm="hop-marker"\r\n' +
    'te: hop-marker\r\ntrailer: x-hop-marker\r\nupgrade: hop-marker/1\r\nhttp2-settings: hop-marker\r\nx-named-hop: hop-marker\r\n';

  /** What of the hop-by-hop headers got through: any header with the marker, or one the Connection header named. */
  const leaked = (headers: Record<string, unknown>): string[] =>
    Object.entries(headers).flatMap(([name, value]) =>
      name === 'x-named-hop' || JSON.stringify(value).includes('hop-marker') || JSON.stringify(value).toLowerCase().includes('x-named-hop') ? [name] : [],
    );

  test('client to upstream: none of them, nor Proxy-Authorization, reaches the upstream', async () => {
    const body = '{"model":"gpt-4"}';
    const raw = await rawRequest(
      gw.url,
      `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${CLIENT_KEY}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n` +
        `connection: X-Named-Hop\r\nproxy-authorization: Basic hop-marker\r\n${HOP}x-end-to-end: kept\r\n\r\n${body}`,
    );
    expect(raw.statuses).toEqual([200]);
    const seen = upstream.requests.at(-1)!.headers;
    expect(seen['x-end-to-end']).toBe('kept');
    expect(leaked(seen)).toEqual([]);
  });

  test.each([
    ['a length', (body: string) => `content-length: ${body.length}\r\n\r\n${body}`],
    ['chunked', (body: string) => `transfer-encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`],
  ])('upstream to client, body with %s: none of them reaches the client; the body arrives whole', async (_name, framed) => {
    const answer = '{"model":"m","object":"chat.completion"}';
    const raw = createNetServer((socket) => {
      socket.once('data', () => {
        socket.end(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: X-Named-Hop\r\n${HOP}x-end-to-end: kept\r\n${framed(answer)}`);
      });
    });
    await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
    const other = await startTestGateway(baseConfig(`http://127.0.0.1:${(raw.address() as AddressInfo).port}`));
    try {
      const res = await request(`${other.url}/v1/chat/completions`, { method: 'POST', headers: auth, body: '{"model":"m"}' });
      expect(await res.body.text()).toBe(answer);
      expect(res.statusCode).toBe(200);
      expect(res.headers['x-end-to-end']).toBe('kept');
      expect(leaked(res.headers)).toEqual([]);
    } finally {
      await other.stop();
      await new Promise<void>((resolve) => raw.close(() => resolve()));
    }
  });
});

describe('official openai SDK as a client', () => {
  const client = () => new OpenAI({ apiKey: CLIENT_KEY, baseURL: `${gw.url}/v1`, maxRetries: 0 });

  test('chat completion with redirect: the answer names the requested model', async () => {
    const completion = await client().chat.completions.create({ model: 'gpt-4', messages: [{ role: 'user', content: 'hi' }], temperature: 0.5 });
    expect(completion.model).toBe('gpt-4');
    expect(completion.choices[0]!.message.content).toBe('hello from gpt-4o-2024-08-06');
  });

  test('streamed completion arrives chunk by chunk, each naming the requested model', async () => {
    const stream = await client().chat.completions.create({ model: 'gpt-4', messages: [{ role: 'user', content: 'hi' }], stream: true });
    const parts: string[] = [];
    for await (const chunk of stream) {
      expect(chunk.model).toBe('gpt-4');
      parts.push(chunk.choices[0]!.delta.content ?? '');
    }
    expect(parts.join('')).toBe('tok0 tok1 tok2 tok3 tok4 ');
  });

  test('upstream 429 reaches the SDK as a RateLimitError, for stream and non-stream', async () => {
    const c = client();
    await expect(c.chat.completions.create({ model: 'gpt-4', messages: [] }, { headers: { 'x-fake-status': '429' } })).rejects.toMatchObject({ status: 429 });
    await expect(c.chat.completions.create({ model: 'gpt-4', messages: [], stream: true }, { headers: { 'x-fake-status': '429' } })).rejects.toMatchObject({
      status: 429,
    });
  });

  test('models.list() shows the aliases a client may use', async () => {
    const ids: string[] = [];
    for await (const model of client().models.list()) ids.push(model.id);
    expect(ids).toEqual(['fake-model', 'gpt-4']);
    expect((await client().models.retrieve('gpt-4')).owned_by).toBe('api-proxy');
  });

  test('a wrong key is a 401 AuthenticationError', async () => {
    const c = new OpenAI({ apiKey: 'sk-wrong', baseURL: `${gw.url}/v1`, maxRetries: 0 });
    await expect(c.models.list()).rejects.toMatchObject({ status: 401, code: 'invalid_api_key' });
  });
});

describe('upstream errors relayed', () => {
  test.each([400, 404, 429, 500, 503])('status %i, non-stream and stream, body verbatim', async (status) => {
    for (const stream of [false, true]) {
      const res = await post('/v1/chat/completions', JSON.stringify({ model: 'gpt-4', stream }), { ...auth, 'x-fake-status': String(status) });
      expect(res.status).toBe(status);
      expect(res.headers['content-type']).toBe('application/json');
      expect(res.json().error.code).toBe(`fake_${status}`);
      if (status === 429) expect(res.headers['retry-after']).toBe('7');
    }
  });
});

test('an upstream that echoes request headers in an error body never leaks its key to the client', async () => {
  for (const stream of [false, true]) {
    const res = await post('/v1/chat/completions', JSON.stringify({ model: 'gpt-4', stream }), { ...auth, 'x-fake-status': '400', 'x-fake-echo-headers': '1' });
    expect(res.status).toBe(400);
    expect(res.text).not.toContain(UPSTREAM_KEY);
    expect(res.text).toContain('Bearer [redacted]');
    // the mask is as long as the key, so the upstream's own Content-Length stays true
    expect(res.headers['content-length']).toBe(String(Buffer.byteLength(res.text)));
    expect(res.json().error.code).toBe('fake_400');
  }
});

describe('gateway errors are OpenAI-shaped', () => {
  test.each([
    ['bad JSON', '{"model":', 400, 'invalid_json'],
    ['not an object', '[1,2]', 400, 'invalid_body'],
    ['missing model', '{"messages":[]}', 400, 'missing_model'],
    ['non-string model', '{"model":42}', 400, 'missing_model'],
  ])('%s', async (_name, body, status, code) => {
    const res = await post('/v1/chat/completions', body);
    expect(res.status).toBe(status);
    expect(res.json()).toEqual({
      error: { message: expect.any(String), type: 'invalid_request_error', param: code === 'missing_model' ? 'model' : null, code },
    });
  });

  test('401 without a key and with an unknown key', async () => {
    expect((await post('/v1/chat/completions', '{"model":"a"}', { 'content-type': 'application/json' })).json().error.code).toBe('missing_api_key');
    const res = await post('/v1/chat/completions', '{"model":"a"}', { authorization: 'Bearer nope' });
    expect(res.status).toBe(401);
    expect(res.json().error.code).toBe('invalid_api_key');
  });

  test('404 unknown path, 405 wrong method', async () => {
    const notFound = await request(`${gw.url}/nope`);
    expect(notFound.statusCode).toBe(404);
    expect(((await notFound.body.json()) as any).error.code).toBe('not_found');
    const wrong = await request(`${gw.url}/v1/chat/completions`, { method: 'PUT', headers: auth, body: '{}' });
    expect(wrong.statusCode).toBe(405);
    expect(wrong.headers['allow']).toBe('GET, HEAD, POST, DELETE');
    expect(((await wrong.body.json()) as any).error.code).toBe('method_not_allowed');
    const upper = await request(`${gw.url}/V1/models`, { headers: auth });
    expect(upper.statusCode).toBe(404);
    expect(((await upper.body.json()) as any).error.code).toBe('not_found');
    const head = await request(`${gw.url}/v1/models`, { method: 'HEAD', headers: auth });
    expect(head.statusCode).toBe(200);
    expect(await head.body.text()).toBe('');
    const headUnauthenticated = await request(`${gw.url}/v1/models`, { method: 'HEAD' });
    expect(headUnauthenticated.statusCode).toBe(401);
    expect(await headUnauthenticated.body.text()).toBe('');
    const health = await request(`${gw.url}/health`, { method: 'POST', body: '' });
    expect(health.statusCode).toBe(405);
    await health.body.text();
  });
});

describe('keep-alive', () => {
  test('hundreds of redirected requests over kept-alive connections all succeed', async () => {
    const { Agent } = await import('undici');
    const agent = new Agent({ connections: 4 });
    const results = await Promise.all(
      Array.from({ length: 400 }, async () => {
        const res = await request(`${gw.url}/v1/chat/completions`, {
          method: 'POST',
          headers: auth,
          body: '{"model":"gpt-4","messages":[]}',
          dispatcher: agent,
        });
        const body = (await res.body.json()) as { model: string };
        return res.statusCode === 200 && body.model === 'gpt-4' && res.headers['x-apiproxy-upstream-model'] === 'gpt-4o-2024-08-06';
      }),
    );
    expect(results.every(Boolean)).toBe(true);
    await agent.close();
  });
});
