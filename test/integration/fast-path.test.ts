import type { IncomingMessage } from 'node:http';
import { request } from 'undici';
import { isFastPath } from '../../src/app.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { baseConfig, CLIENT_KEY, startTestGateway, type TestGateway } from '../support/gateway-harness.js';

/**
 * `/v1/*` requests skip Koa (app.ts). A spelling the fast path does not take
 * (`/V1/...`, which the case-insensitive router still routes to the proxy)
 * goes through Koa: both must answer the same.
 */
let upstream: FakeUpstream;
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  gw = await startTestGateway(baseConfig(upstream.url, { body_limit: 1024 }));
});
afterAll(async () => {
  await gw.stop();
  await upstream.close();
});

const auth = { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' };

async function call(path: string, method: 'GET' | 'POST' | 'HEAD', headers: Record<string, string>, body?: string) {
  const res = await request(`${gw.url}${path}`, { method, headers, body });
  const text = await res.body.text();
  const { date: _date, 'x-request-id': requestId, ...rest } = res.headers;
  return { status: res.statusCode, headers: rest, requestId, text };
}

describe('the /v1 fast path answers exactly as the Koa route does', () => {
  const cases: [string, 'GET' | 'POST' | 'HEAD', Record<string, string>, string | undefined][] = [
    ['missing key', 'POST', { 'content-type': 'application/json' }, '{"model":"gpt-4"}'],
    ['wrong key', 'GET', { authorization: 'Bearer nope' }, undefined],
    ['not Bearer', 'GET', { authorization: 'Basic abc' }, undefined],
    ['invalid JSON', 'POST', auth, '{"model":'],
    ['not an object', 'POST', auth, '[1]'],
    ['missing model', 'POST', auth, '{"messages":[]}'],
    ['body too large', 'POST', auth, `{"model":"gpt-4","pad":"${'x'.repeat(2000)}"}`],
    ['dot segments', 'GET', auth, undefined],
    ['HEAD with a bad key', 'HEAD', { authorization: 'Bearer nope' }, undefined],
    ['proxied', 'POST', auth, '{"model":"gpt-4"}'],
  ];
  test.each(cases)('%s', async (name, method, headers, body) => {
    const path = name === 'dot segments' ? '/v1/a/%2e%2e/models' : '/v1/chat/completions';
    const fast = await call(path, method, headers, body);
    const koa = await call(path.replace('/v1/', '/V1/'), method, headers, body);
    expect(fast.status).toBe(koa.status);
    expect(fast.text).toBe(koa.text);
    expect(fast.headers).toEqual(koa.headers);
    expect(fast.requestId).toEqual(expect.any(String));
    expect(koa.requestId).toEqual(expect.any(String));
  });

  test('both paths count requests and write one access line each', async () => {
    const before = gw.logs.entries.filter((entry) => entry['msg'] === 'request').length;
    await call('/v1/models', 'GET', { authorization: 'Bearer nope', 'x-request-id': 'fast-1' });
    await call('/V1/models', 'GET', { authorization: 'Bearer nope', 'x-request-id': 'koa-1' });
    await new Promise((resolve) => setTimeout(resolve, 50));
    gw.gateway.logger.flush();
    const lines = gw.logs.entries.filter((entry) => entry['msg'] === 'request').slice(before);
    const fast = lines.find((line) => line['req_id'] === 'fast-1');
    const koa = lines.find((line) => line['req_id'] === 'koa-1');
    expect(fast).toMatchObject({ status: 401, error: 'invalid_api_key', method: 'GET', path: '/v1/models', key_id: null });
    expect(koa).toMatchObject({ status: 401, error: 'invalid_api_key', method: 'GET', path: '/V1/models', key_id: null });
    expect(Object.keys(fast!).sort()).toEqual(Object.keys(koa!).sort());
    expect(gw.gateway.metrics.activeRequests).toBe(0);
  });
});

describe('isFastPath', () => {
  const req = (method: string, url: string) => ({ method, url }) as IncomingMessage;
  test('takes exactly GET, HEAD, POST and DELETE under /v1/', () => {
    for (const method of ['GET', 'HEAD', 'POST', 'DELETE']) expect(isFastPath(req(method, '/v1/chat/completions'))).toBe(true);
    expect(isFastPath(req('PUT', '/v1/files'))).toBe(false);
    expect(isFastPath(req('OPTIONS', '/v1/models'))).toBe(false);
    expect(isFastPath(req('GET', '/v1'))).toBe(false);
    expect(isFastPath(req('GET', '/V1/models'))).toBe(false);
    expect(isFastPath(req('GET', '/health'))).toBe(false);
    expect(isFastPath(req('GET', '/v10/models'))).toBe(false);
  });
});
