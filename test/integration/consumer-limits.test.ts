/**
 * A file consumer's policy limits, enforced through the gateway with the
 * openai SDK as the client: the Principal authenticate returns carries its
 * consumer's policy to the limits stage, so a `per: consumer` budget is one
 * budget for all of the consumer's keys; and with failover a client request
 * is charged once (one request, the tokens of the one answer relayed),
 * however many attempts it took.
 */
import OpenAI, { RateLimitError } from 'openai';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { CLIENT_KEY, startTestGateway, UPSTREAM_KEY, type TestGateway } from '../support/gateway-harness.js';
import { movement, prometheus } from '../reliability/helpers.js';
import { waitFor } from '../support/wait.js';

const SHARED_KEY_1 = 'sk-shared-one-0123456789';
const SHARED_KEY_2 = 'sk-shared-two-0123456789';
const FAILOVER_KEY = 'sk-failover-0123456789';

let a: FakeUpstream;
let b: FakeUpstream;
let gw: TestGateway;

function upstream(url: string, key: string): Record<string, unknown> {
  return {
    url: `${url}/v1`,
    api_key: key,
    timeouts: { connect_ms: 1000, headers_ms: 2000, idle_ms: 2000 },
    retry: { attempts: 2, backoff: { base_ms: 0, max_ms: 0 }, conditions: [503] },
    outlier: { consecutive_failures: 0 },
  };
}

beforeAll(async () => {
  a = await startFakeUpstream({ name: 'a' });
  b = await startFakeUpstream({ name: 'b' });
  gw = await startTestGateway({
    upstreams: { default: upstream(a.url, UPSTREAM_KEY), b: upstream(b.url, 'sk-upstream-b-0123456789') },
    client_keys: [{ id: 'free', key: CLIENT_KEY }],
    consumers: [
      {
        name: 'shared',
        keys: [
          { id: 'one', key: SHARED_KEY_1 },
          { id: 'two', key: SHARED_KEY_2 },
        ],
        // 3 a minute refill one every 20 s: the test never sees a refill.
        policy: { limits: { requests_per_minute: { limit: 3, per: 'consumer' } } },
      },
      {
        name: 'failover',
        keys: [{ id: 'f', key: FAILOVER_KEY }],
        policy: { limits: { requests_per_minute: { limit: 3, per: 'key' }, tokens_per_minute: { limit: 1000, per: 'key' } } },
      },
    ],
    routes: [
      {
        model: 'fallback',
        targets: [
          { model: 'fallback-a', upstream: 'default' },
          { model: 'fallback-b', upstream: 'b', priority: 1 },
        ],
      },
    ],
    shutdown: { drain_delay_ms: 0, timeout_ms: 5000 },
  });
});

afterAll(async () => {
  await gw?.stop();
  await a?.close();
  await b?.close();
});

const sdk = (apiKey: string): OpenAI => new OpenAI({ apiKey, baseURL: `${gw.url}/v1`, maxRetries: 0 });
const messages = [{ role: 'user' as const, content: 'hi' }];

async function chat(apiKey: string, model = 'gpt-4o-mini'): Promise<Headers> {
  const { response } = await sdk(apiKey).chat.completions.create({ model, messages }).withResponse();
  return response.headers;
}

const requestBudget = (headers: Headers): [string | null, string | null] => [
  headers.get('x-ratelimit-limit-requests'),
  headers.get('x-ratelimit-remaining-requests'),
];

test("requests_per_minute per consumer: the consumer's two keys share one budget; the fourth request is 429 rate_limit_exceeded before any upstream", async () => {
  expect(requestBudget(await chat(SHARED_KEY_1))).toEqual(['3', '2']);
  expect(requestBudget(await chat(SHARED_KEY_2))).toEqual(['3', '1']);
  expect(requestBudget(await chat(SHARED_KEY_1))).toEqual(['3', '0']);

  const upstreamRequests = a.requests.length;
  const refused = await sdk(SHARED_KEY_2)
    .chat.completions.create({ model: 'gpt-4o-mini', messages })
    .catch((error: unknown) => error);
  expect(refused).toBeInstanceOf(RateLimitError);
  const error = refused as RateLimitError;
  expect(error.status).toBe(429);
  expect(error.code).toBe('rate_limit_exceeded');
  expect(error.type).toBe('requests');
  expect(error.message).toContain("Rate limit reached for requests per minute (RPM) of consumer 'shared': limit 3.");
  expect(requestBudget(error.headers)).toEqual(['3', '0']);
  expect(Number(error.headers.get('retry-after'))).toBeGreaterThan(0);
  expect(a.requests.length).toBe(upstreamRequests);

  // A key without a policy is not limited, and its answers carry no budget.
  for (let i = 0; i < 5; i++) expect(requestBudget(await chat(CLIENT_KEY))).toEqual([null, null]);
});

test('with failover a client request is charged once: one request and the tokens of the answer relayed, not one charge per attempt', async () => {
  const before = await prometheus(gw.url);
  const labels = (kind: string): Record<string, string> => ({ consumer: 'failover', key_id: 'f', model: 'fallback', kind });

  // The first target answers 503, the fallback 200: two attempts, one request.
  a.script.push({ 'x-fake-status': '503' });
  const asked = { a: a.requests.length, b: b.requests.length };
  const first = await chat(FAILOVER_KEY, 'fallback');
  expect(first.get('x-apiproxy-attempts')).toBe('2');
  expect([a.requests.length - asked.a, b.requests.length - asked.b]).toEqual([1, 1]);
  expect(requestBudget(first)).toEqual(['3', '2']);
  expect(first.get('x-ratelimit-remaining-tokens')).toBe('1000'); // nothing charged before the answer's usage

  // The fallback's answer reported 7 prompt + 3 completion tokens: charged once, when the request completed.
  await waitFor(async () => movement(before, await prometheus(gw.url), 'apiproxy_tokens_total', labels('completion')) === 3);
  expect(movement(before, await prometheus(gw.url), 'apiproxy_tokens_total', labels('prompt'))).toBe(7);

  a.script.push({ 'x-fake-status': '503' });
  const second = await chat(FAILOVER_KEY, 'fallback');
  expect(second.get('x-apiproxy-attempts')).toBe('2');
  expect(requestBudget(second)).toEqual(['3', '1']);
  // The budget refills evenly (1000 a minute): what is left is within a few tokens of 1000 - 10.
  const tokensLeft = Number(second.get('x-ratelimit-remaining-tokens'));
  expect(tokensLeft).toBeGreaterThanOrEqual(990);
  expect(tokensLeft).toBeLessThan(1000);

  expect(requestBudget(await chat(FAILOVER_KEY, 'fallback'))).toEqual(['3', '0']);
  await expect(sdk(FAILOVER_KEY).chat.completions.create({ model: 'fallback', messages })).rejects.toBeInstanceOf(RateLimitError);
});
