import { mkdirSync, renameSync, symlinkSync, writeFileSync, unlinkSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { baseConfig, CLIENT_KEY, startTestGateway, UPSTREAM_KEY, type TestGateway } from '../support/gateway-harness.js';
import { startGateway } from '../../src/gateway.js';
import { LogCapture } from '../support/gateway-harness.js';
import { waitFor } from '../support/wait.js';

let upstream: FakeUpstream;
beforeAll(async () => {
  upstream = await startFakeUpstream();
});
afterAll(async () => {
  await upstream.close();
});

const auth = { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' };

async function modelSentFor(url: string, model: string): Promise<string> {
  const res = await request(`${url}/v1/chat/completions`, { method: 'POST', headers: auth, body: JSON.stringify({ model }) });
  const body = (await res.body.json()) as { model?: string; error?: { code: string } };
  // The answer names the requested model; the header names the one sent upstream when a route changed it.
  const sent = res.headers['x-apiproxy-upstream-model'];
  return typeof sent === 'string' ? sent : (body.model ?? `error:${body.error?.code}`);
}

/** `probe` reads `expected` within `timeoutMs` (a reload applies within a second: the README's promise); resolves with the ms it took. */
function eventually<T>(probe: () => T | Promise<T>, expected: T, timeoutMs = 1000): Promise<number> {
  return waitFor(async () => (await probe()) === expected, timeoutMs, `not ${String(expected)}`);
}

describe('hot reload', () => {
  let gw: TestGateway;
  beforeEach(async () => {
    gw = await startTestGateway(baseConfig(upstream.url));
  });
  afterEach(async () => {
    await gw.stop();
  });

  test('an in-place write applies within a second', async () => {
    expect(await modelSentFor(gw.url, 'gpt-4')).toBe('gpt-4o-2024-08-06');
    gw.writeConfig(baseConfig(upstream.url, { model_redirects: { 'gpt-4': 'written' } }));
    await eventually(() => modelSentFor(gw.url, 'gpt-4'), 'written');
  });

  test('write-then-rename applies within a second', async () => {
    const temp = join(gw.dir, 'config.json.tmp');
    writeFileSync(temp, JSON.stringify(baseConfig(upstream.url, { model_redirects: { 'gpt-4': 'renamed' } })));
    renameSync(temp, gw.configPath);
    await eventually(() => modelSentFor(gw.url, 'gpt-4'), 'renamed');
  });

  test('an invalid file keeps the last good config, is logged and counted', async () => {
    gw.writeConfig('{"upstreams": {"default": {"url": "not a url"}}}');
    await eventually(() => gw.logs.lines.some((line) => line.includes('config rejected')), true);
    const rejected = gw.logs.entries.find((entry) => entry['msg'] === 'config rejected; keeping the last good config')!;
    expect(JSON.stringify(rejected)).toContain('upstreams.default.url');
    expect(await modelSentFor(gw.url, 'gpt-4')).toBe('gpt-4o-2024-08-06');
    const prom = await (await request(`${gw.url}/metrics`, { headers: { accept: 'text/plain' } })).body.text();
    expect(prom).toMatch(/apiproxy_config_reloads_total\{source="file",result="failure"\} 1/);
    // deleted, truncated and unreadable files are kept out too
    unlinkSync(gw.configPath);
    await new Promise((resolve) => setTimeout(resolve, 1200));
    expect(await modelSentFor(gw.url, 'gpt-4')).toBe('gpt-4o-2024-08-06');
    gw.writeConfig('{"upstreams": {"def');
    await new Promise((resolve) => setTimeout(resolve, 1200));
    expect(await modelSentFor(gw.url, 'gpt-4')).toBe('gpt-4o-2024-08-06');
    gw.writeConfig(baseConfig(upstream.url, { model_redirects: { 'gpt-4': 'recovered' } }));
    await eventually(() => modelSentFor(gw.url, 'gpt-4'), 'recovered', 1500);
  });

  test('the key file of a mounted Secret is followed', async () => {
    const keyFile = join(gw.dir, 'client-key');
    writeFileSync(keyFile, 'sk-from-file-1\n');
    gw.writeConfig(baseConfig(upstream.url, { client_keys: [{ id: 'mounted', key_file: keyFile }] }));
    const status = async (key: string) => (await request(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } })).statusCode;
    await eventually(() => status('sk-from-file-1'), 200);
    expect(await status(CLIENT_KEY)).toBe(401);
    writeFileSync(keyFile, 'sk-from-file-2\n');
    await eventually(() => status('sk-from-file-2'), 200);
    expect(await status('sk-from-file-1')).toBe(401);
  });
});

test('a Kubernetes ConfigMap volume ..data symlink swap applies within a second', async () => {
  const { mkdtempSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const root = mkdtempSync(join(tmpdir(), 'api-proxy-cm-'));
  const publish = (version: string, model: string) => {
    const dir = join(root, `..${version}`);
    mkdirSync(dir);
    writeFileSync(join(dir, 'config.json'), JSON.stringify(baseConfig(upstream.url, { model_redirects: { 'gpt-4': model } })));
    symlinkSync(`..${version}`, join(root, '..data_tmp'));
    renameSync(join(root, '..data_tmp'), join(root, '..data'));
  };
  publish('2024_01', 'first');
  symlinkSync('..data/config.json', join(root, 'config.json'));
  const logs = new LogCapture();
  const gateway = await startGateway({ configPath: join(root, 'config.json'), env: {}, port: 0, host: '127.0.0.1', logDestination: logs });
  try {
    expect(await modelSentFor(gateway.url, 'gpt-4')).toBe('first');
    publish('2024_02', 'second');
    const ms = await eventually(() => modelSentFor(gateway.url, 'gpt-4'), 'second');
    expect(ms).toBeLessThan(1000);
  } finally {
    await gateway.shutdown();
  }
});

describe('logs', () => {
  test('one access line per request with ids; no client or upstream key anywhere', async () => {
    const gw = await startTestGateway(baseConfig(upstream.url));
    try {
      await modelSentFor(gw.url, 'gpt-4');
      await request(`${gw.url}/v1/models`, { headers: { authorization: 'Bearer sk-wrong-key-value' } }).then((r) => r.body.text());
      await request(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { ...auth, 'x-fake-status': '500', 'x-fake-echo-headers': '1' },
        body: '{"model":"a"}',
      }).then((r) => r.body.text());
      await gw.gateway.shutdown();
      const access = gw.logs.entries.filter((entry) => entry['msg'] === 'request');
      expect(access).toHaveLength(3);
      expect(access[0]).toMatchObject({
        key_id: 'team-a',
        model: 'gpt-4',
        target_model: 'gpt-4o-2024-08-06',
        upstream: 'default',
        status: 200,
        path: '/v1/chat/completions',
      });
      expect(access[0]!['req_id']).toEqual(expect.any(String));
      expect(access[0]!['latency_ms']).toEqual(expect.any(Number));
      expect(access[1]).toMatchObject({ key_id: null, status: 401, error: 'invalid_api_key' });
      const all = gw.logs.lines.join('\n');
      expect(all).not.toContain(CLIENT_KEY);
      expect(all).not.toContain(UPSTREAM_KEY);
      expect(all).not.toContain('sk-wrong-key-value');
    } finally {
      await gw.stop();
    }
  });
});

describe('health, readiness, metrics', () => {
  test('/health is the seed JSON; /health/ready is 200 when loaded', async () => {
    const gw = await startTestGateway(baseConfig(upstream.url));
    try {
      const health = (await (await request(`${gw.url}/health`)).body.json()) as { status: string; time: string };
      expect(health.status).toBe('healthy');
      expect(new Date(health.time).toISOString()).toBe(health.time);
      expect((await request(`${gw.url}/health/ready`)).statusCode).toBe(200);
    } finally {
      await gw.stop();
    }
  });

  test('/health/ready is 503 before a valid config, and the gateway answers 503 not_ready', async () => {
    const gw = await startTestGateway('{"upstreams": 5}');
    try {
      expect((await request(`${gw.url}/health/ready`)).statusCode).toBe(503);
      expect((await request(`${gw.url}/health`)).statusCode).toBe(200);
      const res = await request(`${gw.url}/v1/models`, { headers: auth });
      expect(res.statusCode).toBe(503);
      expect(((await res.body.json()) as any).error.code).toBe('not_ready');
      gw.writeConfig(baseConfig(upstream.url));
      await eventually(async () => (await request(`${gw.url}/health/ready`)).statusCode, 200, 1500);
    } finally {
      await gw.stop();
    }
  });

  test('/metrics: seed JSON by default, Prometheus text on request', async () => {
    const gw = await startTestGateway(baseConfig(upstream.url));
    try {
      await modelSentFor(gw.url, 'gpt-4');
      await request(`${gw.url}/v1/models`).then((r) => r.body.text()); // 401
      const json = (await (await request(`${gw.url}/metrics`)).body.json()) as Record<string, number>;
      expect(json).toMatchObject({ total_requests: 3, error_count: 1, model_redirects: 1, active_requests: 1 });
      for (const field of ['uptime_seconds', 'cpu_cores', 'event_loop_lag_p99_ms', 'heap_used_bytes', 'rss_bytes', 'active_streams']) {
        expect(typeof json[field]).toBe('number');
      }
      const res = await request(`${gw.url}/metrics`, { headers: { accept: 'application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5' } });
      expect(res.headers['content-type']).toMatch(/^text\/plain/);
      const text = await res.body.text();
      expect(text).toContain('apiproxy_requests_total{route="chat_completions",status="200"} 1');
      expect(text).toContain('apiproxy_requests_total{route="models",status="401"} 1');
      expect(text).toContain('apiproxy_key_requests_total{consumer="team-a",key_id="team-a",class="2xx"} 1');
      expect(text).not.toContain(CLIENT_KEY);
      expect(text).toMatch(/apiproxy_request_duration_seconds_bucket\{le="0.1",route="chat_completions"\} 1/);
      expect(text).toMatch(/apiproxy_upstream_ttfb_seconds_count\{upstream="default"\} 1/);
      expect(text).toContain('apiproxy_active_streams 0');
      expect(text).toContain('process_resident_memory_bytes');
    } finally {
      await gw.stop();
    }
  });
});

describe('graceful shutdown', () => {
  test('readiness goes 503 while draining and an open stream finishes', async () => {
    const gw = await startTestGateway(baseConfig(upstream.url, { shutdown: { drain_delay_ms: 300, timeout_ms: 5000 } }));
    const res = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { ...auth, 'x-fake-chunks': '30', 'x-fake-interval': '40' },
      body: JSON.stringify({ model: 'gpt-4', stream: true }),
    });
    const done = gw.gateway.shutdown();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect((await request(`${gw.url}/health/ready`)).statusCode).toBe(503);
    const text = await res.body.text();
    expect(text).toContain('tok29');
    expect(text).toContain('[DONE]');
    await done;
    await expect(request(`${gw.url}/health`)).rejects.toThrow();
    await gw.stop();
  });
});

test('an unreadable config file is kept out too', async () => {
  if (process.getuid?.() === 0) {
    // root reads anything: prove the same path with a directory in place of the file instead
    const gw = await startTestGateway(baseConfig(upstream.url));
    try {
      unlinkSync(gw.configPath);
      mkdirSync(gw.configPath);
      await eventually(() => gw.logs.lines.some((line) => line.includes('EISDIR')), true, 1500);
      expect(await modelSentFor(gw.url, 'gpt-4')).toBe('gpt-4o-2024-08-06');
    } finally {
      await gw.stop();
    }
    return;
  }
  const gw = await startTestGateway(baseConfig(upstream.url));
  try {
    chmodSync(gw.configPath, 0);
    await eventually(() => gw.logs.lines.some((line) => line.includes('EACCES')), true, 1500);
    expect(await modelSentFor(gw.url, 'gpt-4')).toBe('gpt-4o-2024-08-06');
  } finally {
    await gw.stop();
  }
});
