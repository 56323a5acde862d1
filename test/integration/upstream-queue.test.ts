/**
 * No request waits unseen for an upstream. At the defaults there is no cap
 * on requests in flight (the old 256-connection pool made request 257 wait
 * for another stream to end, with nothing in the logs or metrics); with a cap
 * set, a request waits at most queue_timeout_ms, then gets 503
 * upstream_saturated with Retry-After, counted and logged once per episode.
 */
import { Agent, request } from 'undici';
import { baseConfig, CLIENT_KEY, startGatewayWithUpstream, type GatewayWithUpstream } from '../support/gateway-harness.js';
import { prometheus, series, waitFor } from '../reliability/helpers.js';

const agent = new Agent({ connections: null, pipelining: 0 });
afterAll(() => agent.close());

function streamRequest(url: string, extraHeaders: Record<string, string> = {}) {
  return request(`${url}/v1/chat/completions`, {
    method: 'POST',
    dispatcher: agent,
    headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json', ...extraHeaders },
    body: JSON.stringify({ model: 'gpt-4', stream: true, messages: [] }),
  });
}

function withUpstreamSettings(settings: Record<string, unknown>) {
  return (url: string) => {
    const config = baseConfig(url);
    const upstreams = config['upstreams'] as { default: Record<string, unknown> };
    Object.assign(upstreams.default, settings);
    return config;
  };
}

describe('at the defaults', () => {
  let env: GatewayWithUpstream;
  beforeAll(async () => (env = await startGatewayWithUpstream(withUpstreamSettings({ timeouts: { connect_ms: 2000, headers_ms: 10_000, idle_ms: 10_000 } }))));
  afterAll(() => env.stop());

  it('600 concurrent 4-second streams (more than the old 256 cap) all get their first event at once: nothing queues', async () => {
    const started = performance.now();
    const firstBytes: number[] = [];
    const streams = Array.from({ length: 600 }, async () => {
      const res = await streamRequest(env.gw.url, { 'x-fake-chunks': '5', 'x-fake-interval': '1000' });
      let first = true;
      let text = '';
      for await (const chunk of res.body) {
        if (first) firstBytes.push(performance.now() - started);
        first = false;
        text += (chunk as Buffer).toString();
      }
      return { status: res.statusCode, done: text.endsWith('data: [DONE]\n\n') };
    });
    // While they run: every one is in flight, none waits.
    await waitFor(() => firstBytes.length === 600, 15_000, 'a first event on all 600 streams');
    const during = await prometheus(env.gw.url);
    expect(series(during, 'apiproxy_upstream_in_flight', { upstream: 'default' })).toBe(600);
    expect(series(during, 'apiproxy_upstream_queued', { upstream: 'default' })).toBe(0);
    const results = await Promise.all(streams);
    expect(results.every((r) => r.status === 200 && r.done)).toBe(true);
    // Nothing waited for a slot: no queue-wait observations at all, and no queuing episode logged.
    const after = await prometheus(env.gw.url);
    expect(series(after, 'apiproxy_upstream_queue_wait_seconds_count', { upstream: 'default' })).toBe(0);
    expect(env.gw.logs.lines.some((line) => line.includes('requests are queuing'))).toBe(false);
    // Each stream lasts 4 s: a request queued behind another stream would wait at least that long after the
    // first ones began (the first streams' own start can be slow on a busy machine, so it is measured from there).
    expect(Math.max(...firstBytes) - Math.min(...firstBytes)).toBeLessThan(3_500);
  }, 60_000);
});

describe('with max_connections set', () => {
  let env: GatewayWithUpstream;
  beforeAll(async () => (env = await startGatewayWithUpstream(withUpstreamSettings({ max_connections: 2, queue_timeout_ms: 300 }))));
  afterAll(() => env.stop());

  it('a request past the cap waits queue_timeout_ms, then gets 503 upstream_saturated with Retry-After; counted, logged once per episode', async () => {
    const long = { 'x-fake-chunks': '3', 'x-fake-interval': '600' };
    const holders = [streamRequest(env.gw.url, long), streamRequest(env.gw.url, long)];
    await waitFor(() => env.upstream.requests.length === 2, 3000, 'the two streams reach the upstream');
    const started = performance.now();
    const refused = await Promise.all([streamRequest(env.gw.url), streamRequest(env.gw.url)]);
    const waitedMs = performance.now() - started;
    for (const res of refused) {
      expect(res.statusCode).toBe(503);
      expect(res.headers['retry-after']).toBe('1');
      const body = (await res.body.json()) as { error: { code: string; type: string } };
      expect(body.error.code).toBe('upstream_saturated');
    }
    expect(waitedMs).toBeGreaterThanOrEqual(280);
    expect(waitedMs).toBeLessThan(1_500);
    // the refused requests never reached the upstream
    expect(env.upstream.requests).toHaveLength(2);
    const metrics = await prometheus(env.gw.url);
    expect(series(metrics, 'apiproxy_upstream_saturated_total', { upstream: 'default' })).toBe(2);
    expect(series(metrics, 'apiproxy_upstream_queue_wait_seconds_count', { upstream: 'default' })).toBe(2);
    expect(series(metrics, 'apiproxy_upstream_in_flight', { upstream: 'default' })).toBe(2);
    for (const res of await Promise.all(holders)) {
      expect(res.statusCode).toBe(200);
      await res.body.text();
    }
    const entries = env.gw.logs.entries;
    expect(entries.filter((e) => e['msg'] === 'upstream at its max_connections: requests are queuing')).toHaveLength(1);
    expect(entries.filter((e) => e['msg'] === 'upstream queue drained')).toEqual([
      expect.objectContaining({ upstream: 'default', queued: 2, refused: 2, level: 'warn' }),
    ]);
    expect(entries.filter((e) => e['msg'] === 'request' && e['status'] === 503).map((e) => e['error'])).toEqual(['upstream_saturated', 'upstream_saturated']);
  });

  it('a queued request that gets a slot in time is answered normally', async () => {
    const short = { 'x-fake-chunks': '2', 'x-fake-interval': '100' };
    const results = await Promise.all([1, 2, 3].map(() => streamRequest(env.gw.url, short)));
    for (const res of results) {
      expect(res.statusCode).toBe(200);
      expect(await res.body.text()).toContain('data: [DONE]');
    }
    const metrics = await prometheus(env.gw.url);
    expect(series(metrics, 'apiproxy_upstream_queue_wait_seconds_count', { upstream: 'default' })).toBe(3);
    expect(series(metrics, 'apiproxy_upstream_saturated_total', { upstream: 'default' })).toBe(2);
    await waitFor(async () => series(await prometheus(env.gw.url), 'apiproxy_upstream_in_flight', { upstream: 'default' }) === 0, 2000, 'no request in flight');
  });
});
