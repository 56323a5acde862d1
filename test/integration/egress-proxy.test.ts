/**
 * Upstreams behind a real forward proxy, squid and tinyproxy (Debian's, on
 * free loopback ports, with basic auth): an https upstream through CONNECT, an
 * http upstream through a forwarded request, the proxy's credentials from a
 * watched file, the process's HTTPS_PROXY/HTTP_PROXY/NO_PROXY, and each way a
 * proxy fails as the client sees it (a 502 with a code of its own).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { request } from 'undici';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { CLIENT_KEY, startTestGateway, UPSTREAM_KEY, type TestGateway } from '../support/gateway-harness.js';
import { makeTestCertificates, startSquid, startTinyproxy } from '../support/real/index.js';
import { freePort, sleep, waitFor } from '../support/wait.js';

/** What the tests need of either proxy. */
interface Proxy {
  readonly url: string;
  readonly user: string;
  readonly password: string;
  /** Its log so far (squid writes a tunnel's line when the tunnel closes: stop the gateway first). */
  log(): string[];
  stop(): Promise<void>;
}

// 0.0.0.0 reaches this machine's listeners but is outside 127.0.0.0/8, the only destinations the test proxies allow.
const REFUSED_HOST = '0.0.0.0';

const proxies: [string, () => Promise<Proxy>][] = [
  [
    'squid',
    async () => {
      const squid = await startSquid({ users: { alice: 'squid-secret-1' } });
      return { url: squid.url, user: 'alice', password: 'squid-secret-1', log: () => squid.accessLog(), stop: () => squid.stop() };
    },
  ],
  [
    'tinyproxy',
    async () => {
      const proxy = await startTinyproxy({ basicAuth: { user: 'bob', password: 'tiny-secret-2' } });
      return { url: proxy.url, user: 'bob', password: 'tiny-secret-2', log: () => proxy.log(), stop: () => proxy.stop() };
    },
  ],
];

let dir: string;
let caFile: string;
let httpsUpstream: FakeUpstream;
let httpUpstream: FakeUpstream;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'api-proxy-egress-'));
  const certs = makeTestCertificates(dir);
  caFile = certs.caFile;
  httpsUpstream = await startFakeUpstream({ tls: { key: certs.key, cert: certs.cert } });
  httpUpstream = await startFakeUpstream();
});
afterAll(async () => {
  await httpsUpstream.close();
  await httpUpstream.close();
  rmSync(dir, { recursive: true, force: true });
});

const gateways: TestGateway[] = [];
afterEach(async () => {
  for (const gw of gateways.splice(0)) await gw.stop();
});

/** A gateway whose default upstream is `url` (https ones trust the test CA), with `upstream` settings merged in. */
async function gateway(url: string, upstream: Record<string, unknown>, env: Record<string, string> = {}): Promise<TestGateway> {
  const gw = await startTestGateway(
    {
      upstreams: {
        default: {
          url: `${url}/v1`,
          api_key: UPSTREAM_KEY,
          timeouts: { connect_ms: 2000, headers_ms: 5000, idle_ms: 5000 },
          ...(url.startsWith('https:') ? { tls: { ca_file: caFile } } : {}),
          ...upstream,
        },
      },
      client_keys: [{ id: 'team-a', key: CLIENT_KEY }],
      model_redirects: { 'gpt-4': 'gpt-4o-2024-08-06' },
      shutdown: { drain_delay_ms: 0, timeout_ms: 5000 },
    },
    { env },
  );
  gateways.push(gw);
  return gw;
}

/** Stops the gateway (its tunnels close with it, so squid logs them). */
async function stop(gw: TestGateway): Promise<void> {
  gateways.splice(gateways.indexOf(gw), 1);
  await gw.stop();
}

async function chat(gw: TestGateway): Promise<{ status: number; body: { model?: string; error?: { code: string; message: string } } }> {
  const res = await request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
    body: '{"model":"gpt-4"}',
  });
  return { status: res.statusCode, body: (await res.body.json()) as { model?: string; error?: { code: string; message: string } } };
}

function passwordFile(name: string, password: string): string {
  const file = join(dir, name);
  writeFileSync(file, `${password}\n`);
  return file;
}

describe.each(proxies)('through %s', (name, startProxy) => {
  let proxy: Proxy;
  beforeAll(async () => {
    proxy = await startProxy();
  });
  afterAll(() => proxy.stop());

  const withCredentials = (file: string): Record<string, unknown> => ({ proxy: { url: proxy.url, username: proxy.user, password_file: file } });

  test('an https upstream through CONNECT, the proxy password from a file: chat and a stream', async () => {
    const gw = await gateway(httpsUpstream.url, withCredentials(passwordFile(`${name}-ok`, proxy.password)));
    const client = new OpenAI({ apiKey: CLIENT_KEY, baseURL: `${gw.url}/v1`, maxRetries: 0, defaultHeaders: { 'x-fake-chunks': '3', 'x-fake-interval': '0' } });
    const completion = await client.chat.completions.create({ model: 'gpt-4', messages: [] });
    expect(completion.model).toBe('gpt-4'); // the name the client asked for (answer_model: requested)
    const parts: string[] = [];
    for await (const part of await client.chat.completions.create({ model: 'gpt-4', messages: [], stream: true }))
      parts.push(part.choices[0]!.delta.content ?? '');
    expect(parts).toEqual(['tok0 ', 'tok1 ', 'tok2 ']);
    const seen = httpsUpstream.requests.slice(-2);
    expect(seen.map((r) => r.headers.authorization)).toEqual([`Bearer ${UPSTREAM_KEY}`, `Bearer ${UPSTREAM_KEY}`]);
    expect(seen.map((r) => (JSON.parse(r.body.toString()) as { model: string }).model)).toEqual(['gpt-4o-2024-08-06', 'gpt-4o-2024-08-06']);
    await stop(gw);
    await waitFor(() => proxy.log().some((line) => line.includes(`CONNECT 127.0.0.1:${httpsUpstream.port}`)), 5000, 'the tunnel in the proxy log');
    // The password reaches neither the upstream nor the gateway's log.
    expect(JSON.stringify(seen.map((r) => r.headers))).not.toContain('proxy-authorization');
    expect(gw.logs.lines.join('\n')).not.toContain(proxy.password);
  });

  test('an http upstream through a forwarded request (no tunnel)', async () => {
    const gw = await gateway(httpUpstream.url, withCredentials(passwordFile(`${name}-ok`, proxy.password)));
    const res = await chat(gw);
    expect(res.status).toBe(200);
    const seen = httpUpstream.requests.at(-1)!;
    expect(seen.headers.via).toMatch(name === 'squid' ? /squid/ : /tinyproxy/);
    expect(seen.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
    expect(seen.headers['proxy-authorization']).toBeUndefined();
  });

  test.each([
    ['https', 'no credentials', () => ({ proxy: { url: proxy.url } })],
    ['https', 'a wrong password', () => withCredentials(passwordFile(`${name}-wrong`, 'not-the-password'))],
    ['http', 'no credentials', () => ({ proxy: { url: proxy.url } })],
  ])('an %s upstream, %s: the proxy refuses (407) and the client gets 502 upstream_proxy_auth', async (scheme, _what, settings) => {
    const gw = await gateway(scheme === 'https' ? httpsUpstream.url : httpUpstream.url, settings());
    const res = await chat(gw);
    expect(res.status).toBe(502);
    expect(res.body.error!.code).toBe('upstream_proxy_auth');
  });

  test('an http upstream, a wrong password: squid says 407 (upstream_proxy_auth); tinyproxy says 401, relayed as the answer', async () => {
    const gw = await gateway(httpUpstream.url, withCredentials(passwordFile(`${name}-wrong`, 'not-the-password')));
    const res = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
      body: '{"model":"gpt-4"}',
    });
    const text = await res.body.text();
    if (name === 'squid') {
      expect(res.statusCode).toBe(502);
      expect((JSON.parse(text) as { error: { code: string } }).error.code).toBe('upstream_proxy_auth');
    } else {
      // A forwarded request's answer is the proxy's or the upstream's, and a 401 could be either (README).
      expect(res.statusCode).toBe(401);
      expect(res.headers['server']).toMatch(/tinyproxy/);
    }
  });

  test('the password file is watched: fixing it lets the next request through', async () => {
    const file = passwordFile(`${name}-rotated`, 'not-yet');
    const gw = await gateway(httpsUpstream.url, withCredentials(file));
    expect((await chat(gw)).body.error!.code).toBe('upstream_proxy_auth');
    // Past the file source's first poll, which re-reads every file once whether it is watched or not.
    await sleep(1_500);
    expect((await chat(gw)).body.error!.code).toBe('upstream_proxy_auth');
    writeFileSync(file, proxy.password);
    await waitFor(async () => (await chat(gw)).status === 200, 5000, 'the rotated password in use');
  });

  test('the proxy refuses the destination (403 to CONNECT): 502 upstream_proxy_refused, with its status', async () => {
    const gw = await gateway(`https://${REFUSED_HOST}:${httpsUpstream.port}`, {
      ...withCredentials(passwordFile(`${name}-ok`, proxy.password)),
      tls: { insecure_skip_verify: true },
    });
    const res = await chat(gw);
    expect(res.status).toBe(502);
    expect(res.body.error!.code).toBe('upstream_proxy_refused');
    expect(res.body.error!.message).toContain('(403)');
  });

  test('the upstream is down behind the proxy: 502, not a hang', async () => {
    const gw = await gateway(`https://127.0.0.1:${await freePort()}`, withCredentials(passwordFile(`${name}-ok`, proxy.password)));
    const res = await chat(gw);
    expect(res.status).toBe(502);
    expect(['upstream_unreachable', 'upstream_proxy_refused']).toContain(res.body.error!.code);
  });

  test('HTTPS_PROXY (credentials in its URL) serves an upstream without a proxy of its own; NO_PROXY exempts a host', async () => {
    const withAuth = proxy.url.replace('http://', `http://${proxy.user}:${proxy.password}@`);
    const tunnels = (): number => proxy.log().filter((line) => line.includes(`CONNECT 127.0.0.1:${httpsUpstream.port}`)).length;
    const earlier = tunnels();
    const viaEnv = await gateway(httpsUpstream.url, {}, { HTTPS_PROXY: withAuth });
    expect((await chat(viaEnv)).status).toBe(200);
    await stop(viaEnv);
    await waitFor(() => tunnels() > earlier, 5000, 'the tunnel in the proxy log');
    const before = tunnels();

    const exempt = await gateway(httpsUpstream.url, {}, { HTTPS_PROXY: withAuth, NO_PROXY: 'localhost,127.0.0.1' });
    const requests = httpsUpstream.requests.length;
    expect((await chat(exempt)).status).toBe(200);
    expect(httpsUpstream.requests).toHaveLength(requests + 1);
    await stop(exempt);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(tunnels()).toBe(before);
  });

  test('HTTP_PROXY serves a plain-http upstream (forwarded); its 407 is upstream_proxy_auth too', async () => {
    const withAuth = proxy.url.replace('http://', `http://${proxy.user}:${proxy.password}@`);
    const gw = await gateway(httpUpstream.url, {}, { HTTP_PROXY: withAuth });
    expect((await chat(gw)).status).toBe(200);
    expect(httpUpstream.requests.at(-1)!.headers.via).toMatch(name === 'squid' ? /squid/ : /tinyproxy/);
    const noAuth = await gateway(httpUpstream.url, {}, { HTTP_PROXY: proxy.url });
    expect((await chat(noAuth)).body.error!.code).toBe('upstream_proxy_auth');
  });
});

test.each(['https', 'http'])('the proxy is down: an %s upstream gets 502 upstream_proxy_unreachable', async (scheme) => {
  const down = `http://127.0.0.1:${await freePort()}`;
  const gw = await gateway(scheme === 'https' ? httpsUpstream.url : httpUpstream.url, { proxy: { url: down } });
  const res = await chat(gw);
  expect(res.status).toBe(502);
  expect(res.body.error!.code).toBe('upstream_proxy_unreachable');
});

test('the process proxy is down: 502 upstream_proxy_unreachable as well', async () => {
  const gw = await gateway(httpsUpstream.url, {}, { HTTPS_PROXY: `http://127.0.0.1:${await freePort()}` });
  expect((await chat(gw)).body.error!.code).toBe('upstream_proxy_unreachable');
});
