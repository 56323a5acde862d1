import fc from 'fast-check';
import { accessLine } from '../../src/observability/access-line.js';
import { testRecord } from '../support/request-record.js';

const record = testRecord;

test('one JSON line in the logger format', () => {
  const line = accessLine(record(), 12.3456789);
  expect(line.endsWith('}\n')).toBe(true);
  expect(line.split('\n')).toHaveLength(2);
  const parsed = JSON.parse(line);
  expect(parsed).toEqual({
    level: 'info',
    time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    service: 'api-proxy',
    req_id: 'req-1',
    key_id: 'team-a',
    consumer: 'team-a',
    method: 'POST',
    path: '/v1/chat/completions',
    model: 'gpt-4',
    target_model: 'gpt-4o',
    upstream: 'default',
    attempts: 1,
    status: 200,
    latency_ms: 12.346,
    ttfb_ms: 1.235,
    bytes_in: 10,
    bytes_out: 20,
    prompt_tokens: null,
    completion_tokens: null,
    stream: true,
    error: null,
    msg: 'request',
  });
  expect(
    JSON.parse(accessLine(record({ ttfbMs: -1, keyId: null, consumer: null, clientAborted: true, errorCode: 'upstream_reset', attempts: 3 }), 1)),
  ).toMatchObject({
    attempts: 3,
    ttfb_ms: null,
    key_id: null,
    consumer: null,
    client_aborted: true,
    error: 'upstream_reset',
  });
});

test('tokens: the usage the upstream reported, or "usage":"unknown" when an answer that should report it did not', () => {
  expect(JSON.parse(accessLine(record({ inputTokens: 19, outputTokens: 10, cachedTokens: 8 }), 1))).toMatchObject({ prompt_tokens: 19, completion_tokens: 10 });
  const unknown = JSON.parse(accessLine(record({ usageUnknown: true }), 1));
  expect(unknown).toMatchObject({ prompt_tokens: null, completion_tokens: null, usage: 'unknown' });
  expect(JSON.parse(accessLine(record(), 1)).usage).toBeUndefined();
});

test('whatever a client puts in the model or path stays inside one valid line', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary' }), fc.string({ unit: 'binary' }), (model, path) => {
      const line = accessLine(record({ model, targetModel: model, path }), 1);
      expect(line.indexOf('\n')).toBe(line.length - 1);
      const parsed = JSON.parse(line);
      expect(parsed.model).toBe(model);
      expect(parsed.path).toBe(path);
    }),
  );
});

test('latencies keep three decimals, also when small, whole or very large', () => {
  for (const [ms, expected] of [
    [0, 0],
    [0.0004, 0],
    [0.0005, 0.001],
    [0.012, 0.012],
    [1, 1],
    [12.3, 12.3],
    [99.9999, 100],
    [123456.789, 123456.789],
  ] as const) {
    const line = accessLine(record({ ttfbMs: ms }), ms);
    expect(JSON.parse(line)).toMatchObject({ latency_ms: expected, ttfb_ms: expected });
  }
  fc.assert(
    fc.property(fc.double({ min: 0, max: 1e7, noNaN: true }), (ms) => {
      expect(JSON.parse(accessLine(record(), ms)).latency_ms).toBeCloseTo(Math.round(ms * 1e3) / 1e3, 6);
    }),
  );
});
