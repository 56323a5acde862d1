/**
 * Hostile input, sent on raw sockets where real clients would refuse to send
 * it: broken bodies, request smuggling, path traversal, header injection,
 * oversized headers. Every answer is a well-formed status (gateway errors in
 * the OpenAI shape); nothing smuggled or traversed reaches the upstream.
 * (test/integration/proxy.test.ts has the happy-path versions of the body errors.)
 */
import { request } from 'undici';
import { parseConfigText, ConfigError } from '../../src/config/load-file.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { baseConfig, CLIENT_KEY, startTestGateway, type TestGateway } from '../support/gateway-harness.js';
import { expectIdleAndHealthy, lastBody, rawRequest } from '../reliability/helpers.js';

const LIMIT = 64 * 1024;
let upstream: FakeUpstream;
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  gw = await startTestGateway(baseConfig(upstream.url, { body_limit: LIMIT }));
});
afterAll(async () => {
  const unhandled = gw.logs.lines.filter((line) => line.includes('the gateway failed to handle the request'));
  await gw.stop();
  await upstream.close();
  expect(unhandled).toEqual([]);
});

function post(body: string | Buffer, extraHeaders = '', path = '/v1/chat/completions'): string | Buffer {
  const head = `POST ${path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${CLIENT_KEY}\r\ncontent-type: application/json\r\n${extraHeaders}content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n`;
  return typeof body === 'string' ? head + body : Buffer.concat([Buffer.from(head), body]);
}

function expectOpenAiError(body: string, code: string): void {
  expect(JSON.parse(body)).toEqual({
    error: { message: expect.any(String), type: expect.any(String), param: code === 'missing_model' ? 'model' : null, code },
  });
}

describe('bodies', () => {
  test.each([
    ['invalid JSON', '{"model": "a",', 400, 'invalid_json'],
    ['trailing garbage', '{"model":"a"} x', 400, 'invalid_json'],
    ['empty object', '{}', 400, 'missing_model'],
    ['JSON null', 'null', 400, 'invalid_body'],
    ['JSON string', '"model"', 400, 'invalid_body'],
    ['JSON number', '42', 400, 'invalid_body'],
    ['JSON array', '[{"model":"a"}]', 400, 'invalid_body'],
    ['model missing', '{"messages":[]}', 400, 'missing_model'],
    ['model null', '{"model":null}', 400, 'missing_model'],
    ['model number', '{"model":1}', 400, 'missing_model'],
    ['model object', '{"model":{"toString":"x"}}', 400, 'missing_model'],
    ['model array', '{"model":["a"]}', 400, 'missing_model'],
    ['model empty', '{"model":""}', 400, 'missing_model'],
    ['model only in __proto__', '{"__proto__":{"model":"a"}}', 400, 'missing_model'],
    ['model only in constructor.prototype', '{"constructor":{"prototype":{"model":"a"}}}', 400, 'missing_model'],
  ])('%s: %j is %i %s, nothing forwarded', async (_name, body, status, code) => {
    const before = upstream.requests.length;
    const raw = await rawRequest(gw.url, post(body));
    expect(raw.statuses).toEqual([status]);
    expectOpenAiError(lastBody(raw), code);
    expect(upstream.requests.length).toBe(before);
  });

  test('__proto__ and constructor keys next to a model are forwarded byte for byte and pollute nothing', async () => {
    const body = '{"__proto__":{"polluted":true,"model":"evil"},"constructor":{"prototype":{"polluted":true}},"model":"gpt-4"}';
    const raw = await rawRequest(gw.url, post(body));
    expect(raw.statuses).toEqual([200]);
    expect(upstream.requests.at(-1)!.body.toString()).toBe(body.replace('"model":"gpt-4"}', '"model":"gpt-4o-2024-08-06"}'));
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty('polluted');
  });

  test('invalid UTF-8 is 400 invalid_utf8; overlong encodings and lone surrogates too', async () => {
    for (const bad of [Buffer.from([0xff, 0xfe]), Buffer.from([0xc0, 0xaf]), Buffer.from([0xed, 0xa0, 0x80])]) {
      const body = Buffer.concat([Buffer.from('{"model":"'), bad, Buffer.from('"}')]);
      const raw = await rawRequest(gw.url, post(body));
      expect(raw.statuses).toEqual([400]);
      expectOpenAiError(lastBody(raw), 'invalid_utf8');
    }
  });

  test('a body just under body_limit is forwarded; just over is 413 and the connection closes', async () => {
    const pad = (size: number) => {
      const head = '{"model":"gpt-4","p":"';
      return head + 'a'.repeat(size - head.length - 2) + '"}';
    };
    const under = await rawRequest(gw.url, post(pad(LIMIT)));
    expect(under.statuses).toEqual([200]);
    expect(upstream.requests.at(-1)!.body.length).toBe(LIMIT + 'gpt-4o-2024-08-06'.length - 'gpt-4'.length);
    const over = await rawRequest(gw.url, post(pad(LIMIT + 1)));
    expect(over.statuses).toEqual([413]);
    expect(over.closed).toBe(true);
    expectOpenAiError(lastBody(over), 'body_too_large');
  });

  test('deeply nested JSON (30k levels) is answered, not a stack overflow', async () => {
    const deep = '{"model":"gpt-4","x":' + '['.repeat(30_000) + ']'.repeat(30_000) + '}';
    const raw = await rawRequest(gw.url, post(deep));
    expect(raw.statuses).toEqual([200]);
    const broken = '{"model":"gpt-4","x":' + '['.repeat(60_000) + '}';
    const rawBroken = await rawRequest(gw.url, post(broken));
    expect(rawBroken.statuses).toEqual([400]);
    expectOpenAiError(lastBody(rawBroken), 'invalid_json');
    // and with a redirect the model is rewritten past the nesting
    const nestedFirst = '{"x":' + '['.repeat(20_000) + ']'.repeat(20_000) + ',"model":"gpt-4"}';
    expect((await rawRequest(gw.url, post(nestedFirst))).statuses).toEqual([200]);
    expect(upstream.requests.at(-1)!.body.toString().endsWith('"model":"gpt-4o-2024-08-06"}')).toBe(true);
  });

  test('wrong or missing Content-Type: JSON bodies are still validated; raw upload types stream through unparsed', async () => {
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=latin1', '']) {
      const head = `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${CLIENT_KEY}\r\n${type === '' ? '' : `content-type: ${type}\r\n`}content-length: 9\r\nconnection: close\r\n\r\nnot json!`;
      const raw = await rawRequest(gw.url, head);
      expect(raw.statuses).toEqual([400]);
      expectOpenAiError(lastBody(raw), 'invalid_json');
    }
    const raw = await rawRequest(
      gw.url,
      post('not json!', '', '/v1/audio/transcriptions').toString().replace('content-type: application/json', 'content-type: application/octet-stream'),
    );
    expect(raw.statuses).toEqual([200]);
    expect(upstream.requests.at(-1)!.body.toString()).toBe('not json!');
  });
});

describe('request smuggling', () => {
  const smuggled = `GET /v1/models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${CLIENT_KEY}\r\nx-smuggled: 1\r\n\r\n`;
  const body = '{"model":"gpt-4"}';
  const cases: [string, string][] = [
    [
      'Content-Length and Transfer-Encoding',
      `content-length: ${body.length}\r\ntransfer-encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n${smuggled}`,
    ],
    [
      'Transfer-Encoding then Content-Length',
      `transfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n${smuggled}`,
    ],
    ['two different Content-Lengths', `content-length: ${body.length}\r\ncontent-length: ${body.length + smuggled.length}\r\n\r\n${body}${smuggled}`],
    ['a Content-Length list', `content-length: ${body.length}, ${body.length + smuggled.length}\r\n\r\n${body}${smuggled}`],
    ['an obfuscated Transfer-Encoding', `transfer-encoding: xchunked\r\ncontent-length: ${body.length}\r\n\r\n${body}${smuggled}`],
    ['Transfer-Encoding: chunked, identity', `transfer-encoding: chunked, identity\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n${smuggled}`],
    ['a space before the colon', `transfer-encoding : chunked\r\ncontent-length: ${body.length}\r\n\r\n${body}${smuggled}`],
    ['a bare LF line ending in the chunk size', `transfer-encoding: chunked\r\n\r\n${body.length.toString(16)}\n${body}\r\n0\r\n\r\n${smuggled}`],
    ['a negative Content-Length', `content-length: -1\r\n\r\n${body}${smuggled}`],
  ];
  test.each(cases)('%s: 400, and no second request reaches the upstream', async (_name, rest) => {
    const before = upstream.requests.length;
    const raw = await rawRequest(
      gw.url,
      `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${CLIENT_KEY}\r\ncontent-type: application/json\r\n${rest}`,
    );
    expect(raw.statuses[0]).toBe(400);
    expect(raw.statuses).toHaveLength(1);
    expect(raw.closed).toBe(true);
    expect(upstream.requests.slice(before).filter((r) => r.headers['x-smuggled'] !== undefined)).toEqual([]);
    expect(upstream.requests.length).toBe(before);
  });

  test('a pipelined second request on a clean connection is a normal second request (control)', async () => {
    const before = upstream.requests.length;
    const raw = await rawRequest(
      gw.url,
      `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${CLIENT_KEY}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}${smuggled}`,
    );
    expect(raw.statuses).toEqual([200, 200]);
    expect(upstream.requests.length).toBe(before + 2);
  });
});

describe('path traversal', () => {
  test.each([
    '/v1/../health',
    '/v1/../metrics',
    '/v1/%2e%2e/health',
    '/v1/%2E%2E/metrics',
    '/v1/..%2fhealth',
    '/v1/chat/..%2F..%2Fhealth',
    '/v1/.%2e/health',
    '/v1/chat/%2e/completions',
    '/v1/..\\health',
    '/v1/chat\\..\\..\\health',
    '/v1/%5c..%5chealth',
    '/v1/./chat/completions',
  ])('%s never reaches the upstream nor a system endpoint', async (path) => {
    const before = upstream.requests.length;
    const raw = await rawRequest(gw.url, `GET ${path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${CLIENT_KEY}\r\nconnection: close\r\n\r\n`);
    expect(raw.statuses).toEqual([404]);
    expect(raw.text).not.toContain('"healthy"');
    expect(raw.text).not.toContain('total_requests');
    expectOpenAiError(lastBody(raw), 'not_found');
    expect(upstream.requests.length).toBe(before);
  });

  test('without a key the same paths are 401 (auth first: nothing is revealed about paths)', async () => {
    const raw = await rawRequest(gw.url, 'GET /v1/../health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    expect(raw.statuses).toEqual([401]);
  });

  test('an absolute-form request target cannot pick another host', async () => {
    const before = upstream.requests.length;
    const raw = await rawRequest(
      gw.url,
      `GET http://169.254.169.254/v1/models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${CLIENT_KEY}\r\nconnection: close\r\n\r\n`,
    );
    expect(raw.statuses[0]).toBe(404);
    expect(upstream.requests.length).toBe(before);
  });
});

describe('header injection', () => {
  test('CRLF in a model name stays JSON-escaped in the body and never becomes a header, upstream or in the log', async () => {
    const body = JSON.stringify({ model: 'evil\r\nx-injected: 1\r\n\r\nGET /admin HTTP/1.1' });
    const raw = await rawRequest(gw.url, post(body));
    expect(raw.statuses).toEqual([200]);
    expect(raw.text.toLowerCase()).not.toContain('\r\nx-injected');
    const seen = upstream.requests.at(-1)!;
    expect(seen.headers['x-injected']).toBeUndefined();
    expect(seen.body.toString()).toBe(body);
    const access = gw.logs.lines.filter((line) => line.includes('x-injected'));
    expect(access.length).toBeGreaterThan(0);
    for (const line of access) expect(JSON.parse(line)['model']).toBe('evil\r\nx-injected: 1\r\n\r\nGET /admin HTTP/1.1');
  });

  test('a redirect target with CRLF is rejected by the config schema (it would land in a JSON string anyway)', () => {
    expect(() => parseConfigText(JSON.stringify({ model_redirects: { a: 'b\r\nx: y' } }), 'c.json')).toThrow(ConfigError);
  });

  test.each(['team\r\nx-injected: 1', 'team a', 'team:a', 'tëam', '', 'a'.repeat(64), '-team'])(
    'key id %j is rejected by the config schema, naming the field',
    (id) => {
      expect(() => parseConfigText(JSON.stringify({ client_keys: [{ id, key: 'k' }] }), 'c.json')).toThrow(/client_keys/);
    },
  );

  test('CR/LF or NUL inside a header value is refused by the parser (400), nothing forwarded', async () => {
    for (const header of ['x-a: 1\rx-injected: 2', 'x-a: 1\0', 'x-a: \x7f\x01']) {
      const before = upstream.requests.length;
      const raw = await rawRequest(
        gw.url,
        `GET /v1/models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${CLIENT_KEY}\r\n${header}\r\nconnection: close\r\n\r\n`,
      );
      expect(raw.statuses).toEqual([400]);
      expect(upstream.requests.length).toBe(before);
    }
  });

  test('an unsafe x-request-id is replaced, never echoed into headers or logs', async () => {
    const hostile = 'id"with spaces<script>' + 'x'.repeat(200);
    const res = await request(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${CLIENT_KEY}`, 'x-request-id': hostile } });
    await res.body.text();
    expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(upstream.requests.at(-1)!.headers['x-request-id']).toBe(res.headers['x-request-id']);
    expect(gw.logs.lines.join('\n')).not.toContain('<script>');
  });
});

describe('oversized headers', () => {
  test('headers over 16 KiB are 431 and the connection closes; nothing forwarded', async () => {
    const before = upstream.requests.length;
    const raw = await rawRequest(
      gw.url,
      `GET /v1/models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${CLIENT_KEY}\r\nx-big: ${'a'.repeat(17 * 1024)}\r\n\r\n`,
    );
    expect(raw.statuses).toEqual([431]);
    expect(raw.closed).toBe(true);
    expect(upstream.requests.length).toBe(before);
  });

  test('many small headers over 16 KiB in total are 431 too; an Authorization of 15 KiB is a plain 401', async () => {
    const many = Array.from({ length: 2000 }, (_, i) => `x-h${i}: v\r\n`).join('');
    expect((await rawRequest(gw.url, `GET /v1/models HTTP/1.1\r\nhost: x\r\n${many}\r\n`)).statuses).toEqual([431]);
    const long = await rawRequest(gw.url, `GET /v1/models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${'k'.repeat(15 * 1024)}\r\nconnection: close\r\n\r\n`);
    expect(long.statuses).toEqual([401]);
  });

  test('after all of it the gateway is healthy with nothing in flight', async () => {
    await expectIdleAndHealthy(gw.url);
  });
});
