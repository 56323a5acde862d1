/**
 * The bench's streaming load generator decodes the answers itself (status
 * line, chunked framing, the last event): it must count only streams that
 * really ended with `data: [DONE]`, and every other ending as an error.
 */
import { rawStreams } from '../../bench/stream-client.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';

let upstream: FakeUpstream;
beforeAll(async () => {
  upstream = await startFakeUpstream();
});
afterAll(() => upstream.close());

const body = JSON.stringify({ model: 'gpt-4', stream: true, messages: [] });
const target = (headers: Record<string, string> = {}) => ({
  url: upstream.url.replace(/\/v1$/, ''),
  headers: { 'content-type': 'application/json', ...headers },
});

test('complete event streams are counted, with a time to first byte, on kept-alive connections', async () => {
  const before = upstream.requests.length;
  const result = await rawStreams(target(), body, 4, 0.5, 5, 5);
  expect(result.errors).toBe(0);
  expect(result.completed).toBeGreaterThanOrEqual(8);
  expect(upstream.requests.length - before).toBe(result.completed);
  expect(result.ttfbP50Ms).toBeGreaterThan(0);
  expect(result.ttfbP50Ms).toBeLessThan(500);
  const ports = new Set(upstream.requests.slice(before).map((seen) => seen.remotePort));
  expect(ports.size).toBe(4);
});

test.each([
  ['an error status', { 'x-fake-status': '500' }],
  ['a connection reset mid-stream', { 'x-fake-reset': 'mid-stream' }],
  ['a body that is not the expected stream', { 'x-fake-garbage': '1' }],
])('%s counts as an error, never as a completed stream', async (_name, headers) => {
  const result = await rawStreams(target(headers), body, 2, 0.3, 5, 5);
  expect(result.completed).toBe(0);
  expect(result.errors).toBeGreaterThan(0);
});
