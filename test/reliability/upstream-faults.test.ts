/**
 * Upstream faults tried on purpose. Each one must give the documented answer
 * (status and code, or a clean end of the stream), be counted by the metrics
 * (apiproxy_upstream_errors_total{upstream,code}, apiproxy_requests_total,
 * the JSON error_count), and leave the gateway healthy: /health 200, nothing
 * in flight, and the next normal request succeeds.
 * (test/integration/faults.test.ts proves the statuses; this adds the
 * counting, the recovery, garbage, truncated bodies and bounded memory.)
 */
import { request } from 'undici';
import type { FakeUpstream } from '../support/fake-upstream.js';
import { baseConfig, CLIENT_KEY, startGatewayWithUpstream, startTestGateway, withOneTry, type TestGateway } from '../support/gateway-harness.js';
import { counters, expectIdleAndHealthy, movement, waitFor } from './helpers.js';

let upstream: FakeUpstream;
let gw: TestGateway;

// One try per request: these tests are about how one failure is answered and counted (retries: test/integration/failover.test.ts).
const fastTimeouts = (url: string) => {
  const config = withOneTry(baseConfig(url));
  const upstreams = config['upstreams'] as { default: Record<string, unknown> };
  upstreams.default['timeouts'] = { connect_ms: 1000, headers_ms: 700, idle_ms: 700 };
  return config;
};

let stop: () => Promise<void>;

beforeAll(async () => ({ upstream, gw, stop } = await startGatewayWithUpstream((url) => fastTimeouts(url))));
afterAll(() => stop());

const auth = { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' };
const streamBody = JSON.stringify({ model: 'gpt-4', stream: true, messages: [] });
const jsonBody = JSON.stringify({ model: 'gpt-4', messages: [] });

async function normalRequestSucceeds(url: string): Promise<void> {
  const res = await request(`${url}/v1/chat/completions`, { method: 'POST', headers: auth, body: jsonBody });
  expect(res.statusCode).toBe(200);
  expect(res.headers['x-apiproxy-upstream-model']).toBe('gpt-4o-2024-08-06');
  expect(((await res.body.json()) as { model: string }).model).toBe('gpt-4');
}

interface Delta {
  upstreamErrors: number | 'unchanged';
  requests: number | 'unchanged';
  errorCount: number;
}

/** Runs `act` and returns how the counters moved (for `code` and the chat route with `status`). */
async function measured(url: string, code: string, status: number, act: () => Promise<void>): Promise<Delta> {
  const before = await counters(url);
  await act();
  // the relay finishes its record right after the last byte: wait until nothing is in flight
  await expectIdleAndHealthy(url);
  const after = await counters(url);
  return {
    upstreamErrors: movement(before.prom, after.prom, 'apiproxy_upstream_errors_total', { upstream: 'default', code }),
    requests: movement(before.prom, after.prom, 'apiproxy_requests_total', { route: 'chat_completions', status: String(status) }),
    // every 4xx/5xx the gateway answered (the /metrics and /health polls in between are 200s)
    errorCount: after.json['error_count']! - before.json['error_count']!,
  };
}

test('connection refused: 502 upstream_unreachable, counted; the gateway stays healthy', async () => {
  // port 1 on loopback: nothing listens there
  const other = await startTestGateway(baseConfig('http://127.0.0.1:1'));
  try {
    const delta = await measured(other.url, 'upstream_unreachable', 502, async () => {
      for (let i = 0; i < 3; i++) {
        const res = await request(`${other.url}/v1/chat/completions`, { method: 'POST', headers: auth, body: jsonBody });
        expect(res.statusCode).toBe(502);
        // a connect failure is tried once more by default (retry.attempts 2), then answered
        expect(res.headers['x-apiproxy-attempts']).toBe('2');
        expect(((await res.body.json()) as any).error).toMatchObject({ code: 'upstream_unreachable', type: 'upstream_error' });
      }
    });
    expect(delta).toEqual({ upstreamErrors: 6, requests: 3, errorCount: 3 });
    // and once the upstream is configured to a live one, the same gateway serves normally
    other.writeConfig(baseConfig(upstream.url));
    await waitFor(
      async () => {
        const res = await request(`${other.url}/v1/chat/completions`, { method: 'POST', headers: auth, body: jsonBody });
        await res.body.text();
        return res.statusCode === 200;
      },
      3000,
      'the gateway serves once the upstream is reachable',
    );
    await normalRequestSucceeds(other.url);
  } finally {
    await other.stop();
  }
});

test('reset before headers: 502 upstream_reset, counted, healthy afterwards', async () => {
  const delta = await measured(gw.url, 'upstream_reset', 502, async () => {
    const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { ...auth, 'x-fake-reset': 'before-headers' }, body: jsonBody });
    expect(res.statusCode).toBe(502);
    expect(((await res.body.json()) as any).error.code).toBe('upstream_reset');
  });
  expect(delta).toEqual({ upstreamErrors: 1, requests: 1, errorCount: 1 });
  await normalRequestSucceeds(gw.url);
});

test('reset mid-stream: the stream ends with an upstream_reset error event; counted as an upstream error on a 200', async () => {
  const delta = await measured(gw.url, 'upstream_reset', 200, async () => {
    const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { ...auth, 'x-fake-reset': 'mid-stream' }, body: streamBody });
    expect(res.statusCode).toBe(200);
    const text = await res.body.text(); // ends cleanly: no client-side error
    expect(text).toContain('tok0');
    const last = text.trim().split('\n\n').at(-1)!;
    expect(JSON.parse(last.slice('data: '.length))).toEqual({ error: expect.objectContaining({ code: 'upstream_reset', type: 'upstream_error' }) });
  });
  // the status was already 200 when the upstream broke: error_count (4xx/5xx answers) does not move
  expect(delta).toEqual({ upstreamErrors: 1, requests: 1, errorCount: 0 });
  await normalRequestSucceeds(gw.url);
});

test('reset mid-body of a non-stream response: the client connection is cut (never a complete-looking body), counted', async () => {
  const size = 4 * 1024 * 1024;
  const before = await counters(gw.url);
  const res = await request(`${gw.url}/v1/files/f/content`, {
    headers: { authorization: `Bearer ${CLIENT_KEY}`, 'x-fake-size': String(size), 'x-fake-reset': 'mid-body' },
  });
  expect(res.statusCode).toBe(200);
  expect(res.headers['content-length']).toBe(String(size));
  await expect(res.body.arrayBuffer()).rejects.toThrow();
  await expectIdleAndHealthy(gw.url);
  const after = await counters(gw.url);
  const code = { upstream: 'default', code: 'upstream_reset' };
  expect(movement(before.prom, after.prom, 'apiproxy_upstream_errors_total', code)).toBe(1);
  await normalRequestSucceeds(gw.url);
});

test('headers that never come: 504 upstream_timeout after headers_ms, counted; the upstream request is abandoned', async () => {
  const seenBefore = upstream.requests.length;
  const delta = await measured(gw.url, 'upstream_timeout', 504, async () => {
    const started = Date.now();
    const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { ...auth, 'x-fake-headers-delay': '2500' }, body: jsonBody });
    expect(res.statusCode).toBe(504);
    expect(((await res.body.json()) as any).error.code).toBe('upstream_timeout');
    expect(Date.now() - started).toBeGreaterThanOrEqual(650);
    expect(Date.now() - started).toBeLessThan(3000);
  });
  expect(delta).toEqual({ upstreamErrors: 1, requests: 1, errorCount: 1 });
  await upstream.requests[seenBefore]!.closed; // the gateway closed that upstream connection
  await normalRequestSucceeds(gw.url);
});

test('a stalled stream: ends with an upstream_timeout event after idle_ms, counted', async () => {
  const delta = await measured(gw.url, 'upstream_timeout', 200, async () => {
    const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { ...auth, 'x-fake-stall': 'after-first' }, body: streamBody });
    const text = await res.body.text();
    expect(text).toContain('tok0');
    expect(text.trim().split('\n\n').at(-1)).toContain('"code":"upstream_timeout"');
  });
  expect(delta).toEqual({ upstreamErrors: 1, requests: 1, errorCount: 0 });
  await normalRequestSucceeds(gw.url);
});

test('garbage instead of SSE is relayed byte for byte; nothing breaks, nothing counted as an upstream error', async () => {
  const delta = await measured(gw.url, 'upstream_reset', 200, async () => {
    const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { ...auth, 'x-fake-garbage': '1' }, body: streamBody });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream');
    expect(Buffer.from(await res.body.arrayBuffer()).toString('latin1')).toBe('this is \0 not { server-sent events\n');
  });
  expect(delta).toEqual({ upstreamErrors: 'unchanged', requests: 1, errorCount: 0 });
  expect(gw.logs.lines.some((line) => line.includes('the gateway failed to handle the request'))).toBe(false);
  await normalRequestSucceeds(gw.url);
});

test.each([500, 502, 503, 429])(
  'upstream %i is relayed with its body (and Retry-After), counted in requests and error_count, not as an exchange failure',
  async (status) => {
    const before = await counters(gw.url);
    for (const stream of [false, true]) {
      const res = await request(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { ...auth, 'x-fake-status': String(status) },
        body: stream ? streamBody : jsonBody,
      });
      expect(res.statusCode).toBe(status);
      expect(((await res.body.json()) as any).error.code).toBe(`fake_${status}`);
      if (status === 429) expect(res.headers['retry-after']).toBe('7');
    }
    await expectIdleAndHealthy(gw.url);
    const after = await counters(gw.url);
    const labels = { route: 'chat_completions', status: String(status) };
    expect(movement(before.prom, after.prom, 'apiproxy_requests_total', labels)).toBe(2);
    expect(after.json['error_count']! - before.json['error_count']!).toBe(2);
    // an upstream that answered is not an upstream failure
    for (const code of ['upstream_reset', 'upstream_timeout', 'upstream_unreachable']) {
      expect({ code, moved: movement(before.prom, after.prom, 'apiproxy_upstream_errors_total', { upstream: 'default', code }) }).toEqual({
        code,
        moved: 'unchanged',
      });
    }
    await normalRequestSucceeds(gw.url);
  },
);

test('1 GiB streamed through: every byte arrives, the process RSS stays bounded', async () => {
  const size = 1024 * 1024 * 1024;
  global.gc?.();
  const baseline = process.memoryUsage().rss;
  let peak = baseline;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  try {
    const res = await request(`${gw.url}/v1/files/huge/content`, { headers: { authorization: `Bearer ${CLIENT_KEY}`, 'x-fake-size': String(size) } });
    expect(res.statusCode).toBe(200);
    let total = 0;
    for await (const chunk of res.body) total += (chunk as Buffer).length;
    expect(total).toBe(size);
  } finally {
    clearInterval(sampler);
  }
  // gateway, fake upstream and client share this process: 1 GiB through three hops
  // must not grow it by more than a small multiple of the socket buffers
  expect(peak - baseline).toBeLessThan(200 * 1024 * 1024);
  await expectIdleAndHealthy(gw.url);
  await normalRequestSucceeds(gw.url);
}, 120_000);
