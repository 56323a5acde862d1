/**
 * A property of the attempt loop, through a real gateway: for any sequence of
 * upstream outcomes (answers of any status, resets, hangs, Retry-After), the
 * client gets exactly one answer, and it is one an upstream sent, whole; a
 * gateway error only when no upstream answered at all.
 */
import fc from 'fast-check';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { CLIENT_KEY, startTestGateway, UPSTREAM_KEY, type TestGateway } from '../support/gateway-harness.js';
import { rawRequest } from '../reliability/helpers.js';

type Outcome = { kind: 'ok' } | { kind: 'status'; status: number; retryAfterMs: number | null } | { kind: 'reset' } | { kind: 'hang' };

const outcome: fc.Arbitrary<Outcome> = fc.oneof(
  fc.constant({ kind: 'ok' as const }),
  fc.record({
    kind: fc.constant('status' as const),
    status: fc.constantFrom(400, 404, 429, 500, 502, 503, 504),
    retryAfterMs: fc.option(fc.integer({ min: 0, max: 30 }), { nil: null }),
  }),
  fc.constant({ kind: 'reset' as const }),
  fc.constant({ kind: 'hang' as const }),
);

function script(item: Outcome, marker: string): Record<string, string> {
  const headers: Record<string, string> = { 'x-fake-marker': marker };
  if (item.kind === 'status') {
    headers['x-fake-status'] = String(item.status);
    headers['x-fake-retry-after'] = 'none';
    if (item.retryAfterMs !== null) headers['x-fake-retry-after-ms'] = String(item.retryAfterMs);
  } else if (item.kind === 'reset') {
    headers['x-fake-reset'] = 'before-headers';
  } else if (item.kind === 'hang') {
    headers['x-fake-headers-delay'] = '1000';
  }
  return headers;
}

let a: FakeUpstream;
let b: FakeUpstream;
let gw: TestGateway;

beforeAll(async () => {
  a = await startFakeUpstream({ name: 'a' });
  b = await startFakeUpstream({ name: 'b' });
  const upstream = (url: string, key: string) => ({
    url: `${url}/v1`,
    api_key: key,
    timeouts: { connect_ms: 500, headers_ms: 100, idle_ms: 2000 },
    retry: { attempts: 2, backoff: { base_ms: 1, max_ms: 5 }, conditions: ['connect_failure', 'headers_timeout', 'reset', 429, 500, 502, 503, 504] },
    outlier: { consecutive_failures: 0 },
  });
  gw = await startTestGateway({
    upstreams: { default: upstream(a.url, UPSTREAM_KEY), b: upstream(b.url, 'sk-upstream-b-0123456789') },
    client_keys: [{ id: 'team-a', key: CLIENT_KEY }],
    routes: [
      {
        model: 'p',
        targets: [
          { model: 'p-a', weight: 1 },
          { model: 'p-b', upstream: 'b', weight: 1 },
          { model: 'p-a2', weight: 1, priority: 1 },
        ],
      },
    ],
    retry_budget_ms: 3000,
    shutdown: { drain_delay_ms: 0, timeout_ms: 2000 },
  });
});

afterAll(async () => {
  await gw?.stop();
  await a?.close();
  await b?.close();
});

/** The body of a chunked answer, decoded; throws when the framing is cut or broken. */
function dechunk(body: string): string {
  let out = '';
  let at = 0;
  for (;;) {
    const lineEnd = body.indexOf('\r\n', at);
    const size = parseInt(body.slice(at, lineEnd), 16);
    if (lineEnd === -1 || Number.isNaN(size)) throw new Error(`chunked framing broken at ${at}`);
    if (size === 0) return out;
    out += body.slice(lineEnd + 2, lineEnd + 2 + size);
    at = lineEnd + 2 + size + 2;
  }
}

let run = 0;

test('for any sequence of upstream outcomes the client gets exactly one answer, one an upstream sent (a gateway error only when none did)', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(outcome, { maxLength: 6 }), fc.array(outcome, { maxLength: 6 }), fc.boolean(), async (forA, forB, stream) => {
      run++;
      const planned = new Map<string, Outcome>();
      a.script.length = 0;
      b.script.length = 0;
      forA.forEach((item, i) => planned.set(`${run}-a-${i}`, item) && a.script.push(script(item, `${run}-a-${i}`)));
      forB.forEach((item, i) => planned.set(`${run}-b-${i}`, item) && b.script.push(script(item, `${run}-b-${i}`)));
      const seenA = a.requests.length;
      const seenB = b.requests.length;
      const body = JSON.stringify({ model: 'p', stream, messages: [{ role: 'user', content: 'hi' }] });
      const raw = await rawRequest(
        gw.url,
        `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${CLIENT_KEY}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
        { quietMs: 2000, timeoutMs: 8000 },
      );
      // Exactly one answer, and the connection closed after it (as asked), not cut in its middle.
      expect(raw.statuses).toHaveLength(1);
      expect(raw.closed).toBe(true);
      const headEnd = raw.text.indexOf('\r\n\r\n');
      const head = raw.text.slice(0, headEnd).toLowerCase();
      const rest = raw.text.slice(headEnd + 4);
      const text = head.includes('transfer-encoding: chunked') ? dechunk(rest) : rest;
      // What the upstreams were sent in this run: the scripted outcomes they used, in order.
      const consumed = [
        ...forA.slice(0, a.requests.length - seenA).map((item, i) => [`${run}-a-${i}`, item] as const),
        ...forB.slice(0, b.requests.length - seenB).map((item, i) => [`${run}-b-${i}`, item] as const),
      ];
      const answeredBy = /\r\nx-fake-upstream: ([^\r]+)/.exec(raw.text.slice(0, headEnd))?.[1];
      const marker = /\r\nx-fake-marker: ([^\r]+)/.exec(raw.text.slice(0, headEnd))?.[1];
      if (answeredBy !== undefined) {
        // An upstream's answer: a scripted one it was sent in this run, or its plain 200 once its script ran out.
        const item: Outcome = marker === undefined ? { kind: 'ok' } : planned.get(marker)!;
        if (marker !== undefined) expect(consumed.map(([m]) => m)).toContain(marker);
        expect(item.kind === 'ok' || item.kind === 'status').toBe(true);
        const status = item.kind === 'status' ? item.status : 200;
        expect(raw.statuses[0]).toBe(status);
        if (item.kind === 'status') expect(JSON.parse(text).error.code).toBe(`fake_${status}`);
        else if (stream) expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
        else expect(JSON.parse(text).object).toBe('chat.completion');
      } else {
        // The gateway's own error: only when no upstream sent a head.
        const answers = consumed.filter(([, item]) => item.kind === 'ok' || item.kind === 'status');
        expect({ answers, unscripted: a.requests.length - seenA > forA.length || b.requests.length - seenB > forB.length }).toEqual({
          answers: [],
          unscripted: false,
        });
        expect(['upstream_error', 'server_error']).toContain(JSON.parse(text).error.type);
      }
    }),
    { numRuns: 100 },
  );
}, 180_000);
