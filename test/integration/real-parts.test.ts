/**
 * Smoke tests of the real programs the coming features are tested against (test/support/real/):
 * each starts, serves what those tests will ask of it, and stops. A missing program fails here
 * (RealPartError REAL_PART_MISSING), it never skips.
 */
import { createClient, defineScript } from '@redis/client';
import type { RedisArgument } from '@redis/client';
import { request as httpRequest } from 'node:http';
import { ProxyAgent, request } from 'undici';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startFakeUpstream } from '../support/fake-upstream.js';
import type { FakeUpstream } from '../support/fake-upstream.js';
import { waitFor } from '../support/wait.js';
import { JAEGER_START_TIMEOUT_MS, makeTestCertificates, runPython, startJaeger, startRedis, startSquid, startTinyproxy } from '../support/real/index.js';
import type { JaegerHandle, RedisHandle, SquidHandle, TinyproxyHandle } from '../support/real/index.js';

/** The shape of the limiter's scripts: one atomic round trip that counts and sets a window. */
const countInWindow = defineScript({
  SCRIPT: `
    local n = redis.call('INCR', KEYS[1])
    if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
    return n`,
  NUMBER_OF_KEYS: 1,
  parseCommand(parser, key: RedisArgument, windowMs: number) {
    parser.pushKey(key);
    parser.push(String(windowMs));
  },
  transformReply: (reply: unknown): number => Number(reply),
});

function redisClient(redis: RedisHandle, password = redis.password) {
  return createClient({
    url: redis.url.replace(/\/\/[^@]*@/, '//'),
    password,
    socket: redis.ca === undefined ? { reconnectStrategy: 50 } : { tls: true, ca: redis.ca, reconnectStrategy: 50 },
    // Commands fail at once while disconnected instead of queueing without bound.
    disableOfflineQueue: true,
    scripts: { countInWindow },
  });
}

/** "calls" of one command from INFO commandstats (0 when never called). */
async function commandCalls(client: ReturnType<typeof redisClient>, command: string): Promise<number> {
  const info = await client.info('commandstats');
  const match = new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(info);
  return match ? Number(match[1]) : 0;
}

/** A plain proxied request (absolute URI in the request line) sent to the proxy on `proxyPort`. */
function viaProxy(proxyPort: number, url: string, headers: Record<string, string> = {}): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: proxyPort, path: url, headers }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('error', reject);
    req.end();
  });
}

// 0.0.0.0 reaches this machine's loopback listeners, but is outside 127.0.0.0/8: the proxies must
// refuse it as they would any other destination (their only allowed targets are loopback ones).
const OUTSIDE_LOOPBACK_RANGE = '0.0.0.0';

describe('Redis (redis-server through @redis/client)', () => {
  let redis: RedisHandle;
  beforeAll(async () => {
    redis = await startRedis({ password: 'pw-smoke' });
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('SET/GET, and a Lua script runs by EVALSHA after one EVAL', async () => {
    const client = redisClient(redis);
    await client.connect();
    try {
      await client.set('greeting', 'hello');
      expect(await client.get('greeting')).toBe('hello');

      await client.scriptFlush();
      expect(await client.countInWindow('limit:a', 60_000)).toBe(1);
      expect(await client.countInWindow('limit:a', 60_000)).toBe(2);
      expect(await client.countInWindow('limit:a', 60_000)).toBe(3);
      expect(await client.pTTL('limit:a')).toBeGreaterThan(59_000);
      // node-redis sends EVALSHA, falls back to EVAL once on NOSCRIPT, then EVALSHA again.
      expect(await commandCalls(client, 'eval')).toBe(1);
      expect(await commandCalls(client, 'evalsha')).toBe(3);
    } finally {
      client.destroy();
    }
  });

  it('requires the password (requirepass)', async () => {
    const client = createClient({ url: redis.url.replace(/\/\/[^@]*@/, '//'), password: 'wrong', socket: { reconnectStrategy: false } });
    const errors: Error[] = [];
    client.on('error', (err: Error) => errors.push(err));
    await expect(client.connect()).rejects.toThrow(/WRONGPASS/);
    expect(errors.map((err) => err.message)).toEqual([expect.stringMatching(/WRONGPASS/)]);
    client.destroy();
  });

  it('kill() drops clients at once, restart() comes back on the same port with the same password, empty', async () => {
    const client = redisClient(redis);
    client.on('error', () => {
      // reconnect attempts while Redis is down
    });
    await client.connect();
    try {
      await client.set('before-kill', '1');
      await redis.kill();
      // SIGKILL: no graceful shutdown (which would log "ready to exit").
      expect(redis.log()).not.toMatch(/ready to exit/);
      await waitFor(() => !client.isReady, 5000, 'client notices the dead Redis');
      // disableOfflineQueue: rejected at once instead of waiting for a reconnect.
      await expect(client.get('before-kill')).rejects.toThrow(/offline/i);

      await redis.restart();
      await waitFor(() => client.isReady, 10_000, 'client reconnects to the restarted Redis');
      expect(await client.get('before-kill')).toBeNull();
      expect(await client.countInWindow('limit:b', 1000)).toBe(1);
    } finally {
      client.destroy();
    }
  });
});

describe('Redis over TLS', () => {
  let redis: RedisHandle;
  beforeAll(async () => {
    redis = await startRedis({ password: 'pw-tls', tls: true });
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('serves rediss:// to a client that trusts the test CA', async () => {
    expect(redis.url).toMatch(/^rediss:\/\/:pw-tls@127\.0\.0\.1:\d+$/);
    const client = redisClient(redis);
    await client.connect();
    try {
      expect(await client.countInWindow('limit:tls', 1000)).toBe(1);
    } finally {
      client.destroy();
    }
  });

  it('rejects a client that does not trust the CA', async () => {
    const client = createClient({ url: redis.url, socket: { tls: true, reconnectStrategy: false } });
    client.on('error', () => {
      // the failed handshake is also emitted
    });
    await expect(client.connect()).rejects.toThrow(/self-signed|unable to verify|certificate/i);
    client.destroy();
  });
});

describe('squid (HTTP forward proxy with basic auth)', () => {
  let squid: SquidHandle;
  let upstream: FakeUpstream;
  let ca: string;
  let certDir: string;
  beforeAll(async () => {
    certDir = mkdtempSync(join(tmpdir(), 'api-proxy-real-parts-'));
    const certs = makeTestCertificates(certDir);
    ca = certs.ca;
    upstream = await startFakeUpstream({ tls: { key: certs.key, cert: certs.cert } });
    squid = await startSquid({ users: { alice: 's3cret' } });
  });
  afterAll(async () => {
    await squid?.stop();
    await upstream?.close();
    rmSync(certDir, { recursive: true, force: true });
  });

  it('tunnels an https request with CONNECT to a non-443 port, and logs it with the user', async () => {
    const agent = new ProxyAgent({ uri: squid.url, token: `Basic ${Buffer.from('alice:s3cret').toString('base64')}`, requestTls: { ca } });
    try {
      const res = await request(`${upstream.url}/v1/models`, { dispatcher: agent });
      expect(res.statusCode).toBe(200);
      expect(await res.body.json()).toMatchObject({ object: 'list' });
    } finally {
      await agent.close();
    }
    expect(upstream.requests.map((r) => r.url)).toEqual(['/v1/models']);
    // Squid logs a tunnel when it closes.
    await waitFor(() => squid.accessLog().some((line) => line.includes(`CONNECT 127.0.0.1:${upstream.port} alice`)), 5000, 'CONNECT in access.log');
    expect(squid.accessLog().find((line) => line.includes('CONNECT'))).toMatch(/TCP_TUNNEL\/200/);
  });

  it('answers 407 to a CONNECT without credentials', async () => {
    const res = await new Promise<{ status: number | undefined; challenge: string | string[] | undefined }>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: squid.port, method: 'CONNECT', path: `127.0.0.1:${upstream.port}` });
      req.on('connect', (response, socket) => {
        socket.destroy();
        resolve({ status: response.statusCode, challenge: response.headers['proxy-authenticate'] });
      });
      req.on('error', reject);
      req.end();
    });
    expect(res.status).toBe(407);
    expect(String(res.challenge)).toMatch(/^Basic realm="api-proxy-test"/);
  });

  it('refuses destinations outside 127.0.0.0/8 (403), even authenticated', async () => {
    const seen = upstream.requests.length;
    const auth = { 'proxy-authorization': `Basic ${Buffer.from('alice:s3cret').toString('base64')}` };
    expect(await viaProxy(squid.port, `http://${OUTSIDE_LOOPBACK_RANGE}:${upstream.port}/v1/models`, auth)).toBe(403);
    expect(upstream.requests).toHaveLength(seen);
  });
});

describe('tinyproxy (HTTP forward proxy)', () => {
  let proxy: TinyproxyHandle;
  let upstream: FakeUpstream;
  beforeAll(async () => {
    upstream = await startFakeUpstream();
    proxy = await startTinyproxy({ basicAuth: { user: 'bob', password: 'hunter2' } });
  });
  afterAll(async () => {
    await proxy?.stop();
    await upstream?.close();
  });

  it('forwards a plain http request (absolute URI, no tunnel) and logs it', async () => {
    const agent = new ProxyAgent({ uri: proxy.url, token: `Basic ${Buffer.from('bob:hunter2').toString('base64')}`, proxyTunnel: false });
    try {
      const res = await request(`${upstream.url}/v1/models`, { dispatcher: agent });
      expect(res.statusCode).toBe(200);
      await res.body.json();
    } finally {
      await agent.close();
    }
    expect(upstream.requests.map((r) => `${r.method} ${r.url} via=${r.headers.via ?? ''}`)).toEqual([
      expect.stringMatching(/^GET \/v1\/models via=.*tinyproxy/),
    ]);
    expect(proxy.log().some((line) => line.includes(`Request (file descriptor`) && line.includes(`GET ${upstream.url}/v1/models`))).toBe(true);
  });

  it('answers 407 without credentials, and nothing reaches the upstream', async () => {
    const seen = upstream.requests.length;
    expect(await viaProxy(proxy.port, `${upstream.url}/v1/models`)).toBe(407);
    expect(upstream.requests).toHaveLength(seen);
  });

  it('refuses destinations outside 127.0.0.0/8 (403), even authenticated', async () => {
    const seen = upstream.requests.length;
    const auth = { 'proxy-authorization': `Basic ${Buffer.from('bob:hunter2').toString('base64')}` };
    expect(await viaProxy(proxy.port, `http://${OUTSIDE_LOOPBACK_RANGE}:${upstream.port}/v1/models`, auth)).toBe(403);
    expect(upstream.requests).toHaveLength(seen);
  });
});

describe('Jaeger v2 (OTLP in, query API out)', () => {
  let jaeger: JaegerHandle;
  beforeAll(async () => {
    jaeger = await startJaeger();
  }, JAEGER_START_TIMEOUT_MS);
  afterAll(async () => {
    await jaeger?.stop();
  });

  it('stores a span exported with OTLP/HTTP JSON and returns it from the query API', async () => {
    const traceId = randomBytes(16).toString('hex');
    const spanId = randomBytes(8).toString('hex');
    const nowNs = BigInt(Date.now()) * 1_000_000n;
    const res = await fetch(`${jaeger.otlpHttpUrl}/v1/traces`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        resourceSpans: [
          {
            resource: { attributes: [{ key: 'service.name', value: { stringValue: 'api-proxy-smoke' } }] },
            scopeSpans: [
              {
                scope: { name: 'real-parts.test' },
                spans: [
                  {
                    traceId,
                    spanId,
                    name: 'POST /v1/chat/completions',
                    kind: 2,
                    startTimeUnixNano: String(nowNs - 5_000_000n),
                    endTimeUnixNano: String(nowNs),
                    attributes: [{ key: 'http.response.status_code', value: { intValue: '200' } }],
                  },
                ],
              },
            ],
          },
        ],
      }),
    });
    expect(res.status).toBe(200);
    await res.text();

    const trace = await jaeger.trace(traceId);
    expect(trace.traceID).toBe(traceId);
    expect(trace.spans).toHaveLength(1);
    const span = trace.spans[0]!;
    expect(span).toMatchObject({ spanID: spanId, operationName: 'POST /v1/chat/completions', duration: 5000 });
    expect(span.tags).toContainEqual(expect.objectContaining({ key: 'http.response.status_code', value: 200 }));
    expect(trace.processes[span.processID]?.serviceName).toBe('api-proxy-smoke');
  });

  it('trace() fails with REAL_PART_NO_TRACE for a trace that never arrives', async () => {
    await expect(jaeger.trace(randomBytes(16).toString('hex'), { timeoutMs: 300 })).rejects.toMatchObject({ code: 'REAL_PART_NO_TRACE' });
  });
});

describe('python3', () => {
  it('imports urllib.request and fetches from a server in this process', async () => {
    const upstream = await startFakeUpstream();
    try {
      const result = await runPython('import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())', [
        `${upstream.url}/v1/models`,
      ]);
      expect(result.stderr).toBe('');
      expect(result.status).toBe(0);
      expect(JSON.parse(result.stdout)).toMatchObject({ object: 'list' });
      expect(upstream.requests[0]?.headers['user-agent']).toMatch(/^Python-urllib\//);
    } finally {
      await upstream.close();
    }
  });
});
