/**
 * Authentication tried on purpose: missing and malformed headers, scheme
 * spelling, whitespace, a trailing newline, no timing signal by key prefix,
 * and keys (client and upstream) never showing up in logs, metrics or error
 * bodies, even when an upstream echoes the request headers back.
 * A key removed from a watched Secret stops working at once: proven against a
 * real API server in test/k8s/gateway.test.ts ("client-key Secrets: ... revoke").
 */
import { request } from 'undici';
import { keyDigest } from '../../src/config/key-digest.js';
import type { RoutingSnapshot } from '../../src/config/snapshot.js';
import { authenticate } from '../../src/pipeline/authenticate.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { baseConfig, CLIENT_KEY, startGatewayWithUpstream, startTestGateway, UPSTREAM_KEY, withOneTry, type TestGateway } from '../support/gateway-harness.js';
import { waitFor } from '../support/wait.js';
import { bodyMask } from '../../src/pipeline/redact.js';
import { lastBody, metricsJson, movement, prometheus, rawRequest } from '../reliability/helpers.js';

let gwUpstream: FakeUpstream;
let gw: TestGateway;
let stop: () => Promise<void>;

// One try per request: a 429 with Retry-After would otherwise be waited out and tried again (test/integration/failover.test.ts).
beforeAll(async () => ({ upstream: gwUpstream, gw, stop } = await startGatewayWithUpstream((url) => withOneTry(baseConfig(url)))));
afterAll(() => stop());

async function statusWith(authorization: string | undefined): Promise<{ status: number; code?: string }> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (authorization !== undefined) headers['authorization'] = authorization;
  const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers, body: '{"model":"gpt-4"}' });
  const body = (await res.body.json()) as { error?: { code: string } };
  return { status: res.statusCode, code: body.error?.code };
}

describe('the Authorization header', () => {
  test.each([
    ['missing', undefined, 401, 'missing_api_key'],
    ['empty', '', 401, 'missing_api_key'],
    ['scheme only', 'Bearer', 401, 'invalid_api_key'],
    ['Basic', `Basic ${Buffer.from(`u:${CLIENT_KEY}`).toString('base64')}`, 401, 'invalid_api_key'],
    ['Token scheme', `Token ${CLIENT_KEY}`, 401, 'invalid_api_key'],
    ['the key alone', CLIENT_KEY, 401, 'invalid_api_key'],
    ['two keys', `Bearer ${CLIENT_KEY} ${CLIENT_KEY}`, 401, 'invalid_api_key'],
    ['a tab instead of a space', `Bearer\t${CLIENT_KEY}`, 401, 'invalid_api_key'],
    ['a key prefix', `Bearer ${CLIENT_KEY.slice(0, -1)}`, 401, 'invalid_api_key'],
    ['a key with one more character', `Bearer ${CLIENT_KEY}x`, 401, 'invalid_api_key'],
    ['the key in another case', `Bearer ${CLIENT_KEY.toUpperCase()}`, 401, 'invalid_api_key'],
    ['the upstream key', `Bearer ${UPSTREAM_KEY}`, 401, 'invalid_api_key'],
  ])('%s: 401', async (_name, header, status, code) => {
    expect(await statusWith(header)).toEqual({ status, code });
  });

  test.each([
    ['lowercase bearer (schemes are case-insensitive, RFC 9110 11.1)', `bearer ${CLIENT_KEY}`],
    ['uppercase BEARER', `BEARER ${CLIENT_KEY}`],
    ['several spaces after the scheme', `Bearer    ${CLIENT_KEY}`],
    ['trailing spaces (Node trims header values)', `Bearer ${CLIENT_KEY}   `],
  ])('%s: accepted', async (_name, header) => {
    expect((await statusWith(header)).status).toBe(200);
  });

  test('a valid key with a trailing newline is not the key', () => {
    const snapshot = { keys: new Map([[keyDigest(CLIENT_KEY), 'team-a']]) } as unknown as RoutingSnapshot;
    expect(authenticate(`Bearer ${CLIENT_KEY}`, snapshot)).toBe('team-a');
    for (const suffix of ['\n', '\r', '\r\n', '\0', '\u00a0', '\u2028']) {
      expect(() => authenticate(`Bearer ${CLIENT_KEY}${suffix}`, snapshot)).toThrow(expect.objectContaining({ code: 'invalid_api_key' }));
    }
  });

  test("on the wire: a bare LF, a CR or a NUL after the key is refused by Node's parser (400): never a key with a line break", async () => {
    const head = (auth: string) =>
      `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: ${auth}\r\ncontent-type: application/json\r\ncontent-length: 17\r\nconnection: close\r\n\r\n{"model":"gpt-4"}`;
    const before = gwUpstream.requests.length;
    for (const bad of [`Bearer ${CLIENT_KEY}\n`, `Bearer ${CLIENT_KEY}\r`, `Bearer ${CLIENT_KEY}\0`, 'Bearer sk-wrong\n']) {
      const raw = await rawRequest(gw.url, head(bad));
      expect({ bad, statuses: raw.statuses }).toEqual({ bad, statuses: [400] });
    }
    expect(gwUpstream.requests.length).toBe(before);
  });
});

describe('no client keys configured: auth fails closed', () => {
  let upstream: FakeUpstream;
  let open: TestGateway;
  beforeAll(async () => {
    upstream = await startFakeUpstream();
    const { client_keys: _none, ...config } = baseConfig(upstream.url);
    open = await startTestGateway(config);
  });
  afterAll(async () => {
    await open.stop();
    await upstream.close();
  });

  const tries: [string, string, Record<string, string>, string | undefined][] = [
    ['POST', '/v1/chat/completions', { authorization: 'Bearer sk-anything' }, '{"model":"gpt-4"}'],
    ['POST', '/v1/chat/completions', { authorization: `Bearer ${CLIENT_KEY}` }, '{"model":"gpt-4"}'],
    ['POST', '/v1/chat/completions', { authorization: `Bearer ${UPSTREAM_KEY}` }, '{"model":"gpt-4"}'],
    ['POST', '/v1/embeddings', { authorization: 'bearer x' }, '{"model":"m","input":"a"}'],
    ['GET', '/v1/models', { authorization: 'Bearer sk-anything' }, undefined],
    ['GET', '/v1/models/gpt-4', { authorization: 'Bearer sk-anything' }, undefined],
    ['DELETE', '/v1/files/file-1', { authorization: 'Bearer sk-anything' }, undefined],
    ['POST', '/v1/chat/completions', {}, '{"model":"gpt-4"}'],
  ];

  test.each(tries)('%s %s %j: 401, and nothing reaches the upstream', async (method, path, headers, body) => {
    const res = await request(`${open.url}${path}`, {
      method: method as 'GET' | 'POST' | 'DELETE',
      headers: { 'content-type': 'application/json', ...headers },
      ...(body === undefined ? {} : { body }),
    });
    const answer = (await res.body.json()) as { error: { code: string } };
    expect({ status: res.statusCode, code: answer.error.code }).toEqual({
      status: 401,
      code: headers['authorization'] === undefined ? 'missing_api_key' : 'invalid_api_key',
    });
    expect(upstream.requests).toEqual([]);
  });

  test('a key added by a reload opens the door for that key only; removing the last key closes it again', async () => {
    const send = async (key: string): Promise<number> => {
      const res = await request(`${open.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: '{"model":"gpt-4"}',
      });
      await res.body.text();
      return res.statusCode;
    };
    const { client_keys: _none, ...config } = baseConfig(upstream.url);
    open.writeConfig(baseConfig(upstream.url));
    await waitFor(async () => (await send(CLIENT_KEY)) === 200, 5000, 'the reloaded key accepted');
    expect(await send('sk-anything')).toBe(401);
    open.writeConfig(config);
    await waitFor(async () => (await send(CLIENT_KEY)) === 401, 5000, 'the removed key refused');
    expect(await send('sk-anything')).toBe(401);
  });
});

describe("every configured secret, not only the answering upstream's key", () => {
  const OTHER_KEY = 'sk-other-upstream-key-5555';
  const LONGER = `${UPSTREAM_KEY}-rotated`;
  let upstream: FakeUpstream;
  let several: TestGateway;
  beforeAll(async () => {
    upstream = await startFakeUpstream();
    const config = baseConfig(upstream.url);
    const url = `${upstream.url}/v1`;
    config['upstreams'] = {
      ...(config['upstreams'] as Record<string, unknown>),
      other: { url, api_key: OTHER_KEY },
      next: { url, api_key: LONGER },
      vllm: { url, api_key: 'EMPTY' },
    };
    several = await startTestGateway(config);
  });
  afterAll(async () => {
    await several.stop();
    await upstream.close();
  });

  test.each([false, true])(
    "an answer carrying another upstream's key, or a longer key that holds its own: masked whole (stream: %s); a too-short key is no secret",
    async (stream) => {
      const res = await request(`${several.url}/v1/chat/completions`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${CLIENT_KEY}`,
          'content-type': 'application/json',
          'x-fake-status': '400',
          'x-fake-echo-headers': '1',
          'x-a': OTHER_KEY,
          'x-b': LONGER,
          'x-c': 'EMPTY',
        },
        body: JSON.stringify({ model: 'gpt-4', stream }),
      });
      const text = await res.body.text();
      expect(res.statusCode).toBe(400);
      const echoed = JSON.parse((JSON.parse(text) as { error: { message: string } }).error.message.slice('echo: '.length)) as Record<string, string>;
      expect(echoed).toEqual(
        expect.objectContaining({
          authorization: `Bearer ${bodyMask(UPSTREAM_KEY.length).toString()}`,
          'x-a': bodyMask(OTHER_KEY.length).toString(),
          'x-b': bodyMask(LONGER.length).toString(),
          'x-c': 'EMPTY',
        }),
      );
    },
  );
});

describe('no timing signal by key prefix', () => {
  test('authenticate(): wrong keys sharing all but the last character with a valid key take as long as random wrong keys', () => {
    const valid = 'sk-' + 'a1b2c3d4'.repeat(8); // 67 characters
    const snapshot = { keys: new Map([[keyDigest(valid), 'team']]) } as unknown as RoutingSnapshot;
    const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
    const random = (n: number) => Array.from({ length: n }, () => alphabet[Math.floor(Math.random() * alphabet.length)]).join('');
    const batch = 500;
    const nearMisses = Array.from(
      { length: batch },
      (_, i) => `Bearer ${valid.slice(0, -1)}${alphabet[i % alphabet.length] === valid.at(-1) ? 'z' : alphabet[i % alphabet.length]}`,
    );
    const strangers = Array.from({ length: batch }, () => `Bearer sk-${random(valid.length - 3)}`);
    const time = (headers: string[]): number => {
      const started = process.hrtime.bigint();
      for (const header of headers) {
        try {
          authenticate(header, snapshot);
        } catch {
          // every one is wrong
        }
      }
      return Number(process.hrtime.bigint() - started) / headers.length;
    };
    for (let i = 0; i < 20; i++) time(i % 2 === 0 ? nearMisses : strangers); // warm up the JIT
    const near: number[] = [];
    const far: number[] = [];
    for (let round = 0; round < 60; round++) {
      // interleaved, order alternating, so drift on a busy machine hits both alike
      if (round % 2 === 0) {
        near.push(time(nearMisses));
        far.push(time(strangers));
      } else {
        far.push(time(strangers));
        near.push(time(nearMisses));
      }
    }
    const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
    const ratio = median(near) / median(far);
    // a byte-by-byte compare would make near misses ~60x slower per key; a digest lookup is flat
    expect(ratio).toBeGreaterThan(0.67);
    expect(ratio).toBeLessThan(1.5);
  });
});

describe('keys never leak', () => {
  const WRONG = `${CLIENT_KEY.slice(0, -3)}zzz`;

  test('not in logs, metrics (labels or values) or any response, across successes, auth failures, and upstream errors that echo request headers', async () => {
    const responses: string[] = [];
    const collect = async (res: Awaited<ReturnType<typeof request>>) => {
      responses.push(JSON.stringify(res.headers) + (await res.body.text()));
    };
    const good = { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' };
    await collect(await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: good, body: '{"model":"gpt-4"}' }));
    await collect(
      await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { ...good, authorization: `Bearer ${WRONG}` }, body: '{"model":"gpt-4"}' }),
    );
    await collect(
      await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { ...good, authorization: `Basic ${WRONG}` }, body: '{"model":"gpt-4"}' }),
    );
    for (const status of [400, 401, 403, 429, 500, 503]) {
      for (const stream of [false, true]) {
        const res = await request(`${gw.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { ...good, 'x-fake-status': String(status), 'x-fake-echo-headers': '1' },
          body: JSON.stringify({ model: 'gpt-4', stream }),
        });
        expect(res.statusCode).toBe(status);
        const text = await res.body.text();
        responses.push(JSON.stringify(res.headers) + text);
        expect(text).toContain('echo:'); // the upstream really echoed its request headers
        expect(text).toContain('[redacted]');
      }
    }
    // the request id the client sets is echoed: a key put there must not pass (it is not a safe id anyway)
    await collect(await request(`${gw.url}/v1/models`, { headers: { ...good, 'x-request-id': `Bearer ${CLIENT_KEY}` } }));
    const raw = await rawRequest(gw.url, `GET /v1/models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${WRONG}\r\nconnection: close\r\n\r\n`);
    responses.push(raw.text, lastBody(raw));
    const prom = await prometheus(gw.url);
    const json = JSON.stringify(await metricsJson(gw.url));
    const logs = gw.logs.lines.join('\n');
    for (const [where, text] of [
      ['responses', responses.join('\n')],
      ['prometheus', prom],
      ['metrics JSON', json],
      ['logs', logs],
    ] as const) {
      for (const secret of [CLIENT_KEY, UPSTREAM_KEY, WRONG, keyDigest(CLIENT_KEY)]) {
        expect({ where, leaked: text.includes(secret) }).toEqual({ where, leaked: false });
      }
    }
    // ids, not keys, identify the client
    expect(logs).toContain('"key_id":"team-a"');
  });

  test.each([
    ['a 200 answer', 200, false],
    ['a 200 event stream', 200, true],
    ['a 404', 404, false],
    ['a 500 event stream', 500, true],
  ])("not in a response header that echoes the upstream request's Authorization: %s", async (_name, status, stream) => {
    const res = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json', 'x-fake-echo-auth': '1', 'x-fake-status': String(status) },
      body: JSON.stringify({ model: 'gpt-4', stream }),
    });
    await res.body.text();
    expect(res.statusCode).toBe(status);
    // the upstream did echo it: the header is there, with the key taken out
    expect(res.headers['x-echo-authorization']).toBe('Bearer [redacted]');
  });

  test.each([
    ['a 200 JSON answer', false],
    ['a 200 event stream, the key cut across two reads', true],
  ])("not in a body that echoes the upstream request's Authorization: %s; counted and logged with the upstream", async (_name, stream) => {
    const before = await prometheus(gw.url);
    const res = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json', 'x-fake-echo-auth-body': '1' },
      body: JSON.stringify({ model: 'gpt-4', stream }),
    });
    const text = await res.body.text();
    expect(res.statusCode).toBe(200);
    expect(text).not.toContain(UPSTREAM_KEY);
    expect(text).toContain(`echo Bearer ${bodyMask(UPSTREAM_KEY.length).toString()}`);
    if (!stream) expect(res.headers['content-length']).toBe(String(Buffer.byteLength(text)));
    else expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
    expect(movement(before, await prometheus(gw.url), 'apiproxy_redactions_total', { upstream: 'default', where: 'body' })).toBe(1);
    expect(
      gw.logs.entries.filter((e) => e['msg'] === "the upstream's answer carried a configured secret; redacted" && e['req_id'] === res.headers['x-request-id']),
    ).toEqual([expect.objectContaining({ upstream: 'default', where: 'body', level: 'warn' })]);
  });
});
