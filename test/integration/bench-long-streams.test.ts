import type { ServerResponse } from 'node:http';
/**
 * The long-stream profile's upstream and client, on real sockets: the
 * upstream paces each stream by its own deadlines and reports how late each
 * chunk left; the client counts a stream only when all its tokens and the
 * [DONE] came, times the gaps between tokens, keeps its connections alive,
 * and counts every other ending (an error status, a reset, a stream that
 * never ends) as an error.
 */
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo, Server as NetServer } from 'node:net';
import { longStreams } from '../../bench/long-streams.js';
import { createPacedUpstream } from '../../bench/paced-upstream.js';

const body = JSON.stringify({ model: 'gpt-4', stream: true, messages: [] });
const lateness: number[] = [];
let connections = 0;
let upstream: NetServer;
let url: string;

const listen = async (server: Server | NetServer): Promise<string> => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
};
const close = (server: Server | NetServer): Promise<void> => new Promise((resolve) => server.close(() => resolve()));

beforeAll(async () => {
  upstream = createPacedUpstream({ onLateness: (ms) => lateness.push(ms) });
  upstream.on('connection', () => connections++);
  url = await listen(upstream);
});
afterAll(() => close(upstream));

test('every stream completes, paced: gaps of about one interval, one connection per slot, a lateness per paced chunk', async () => {
  lateness.length = 0;
  connections = 0;
  const run = longStreams({ url, headers: { 'content-type': 'application/json' } }, body, {
    streams: 10,
    tokens: 8,
    intervalMs: 25,
    rampMs: 100,
    perConnection: 2,
  });
  expect(run.open).toBe(0);
  const result = await run.done;
  expect(result).toMatchObject({ expected: 20, completed: 20, errors: 0, events: 20 * 9, peakOpen: 10 });
  expect(result.gaps.count).toBe(20 * 7);
  expect(result.gaps.p50Ms).toBeGreaterThan(15);
  expect(result.gaps.p50Ms).toBeLessThan(40);
  expect(result.ttfb.count).toBe(20);
  expect(result.ttfb.p50Ms).toBeLessThan(7 * 25); // the first event, not the end of the stream
  expect(result.clientCpu.totalMs).toBeGreaterThan(0);
  expect(result.clientCpu.systemMs).toBeLessThanOrEqual(result.clientCpu.totalMs);
  expect(connections).toBe(10);
  expect(lateness).toHaveLength(20 * 7);
  expect(Math.min(...lateness)).toBeGreaterThanOrEqual(-0.5);
});

/** POSTs a body in two chunks 30 ms apart (no Content-Length); resolves with the status, content type and body. */
function chunkedPost(headers: Record<string, string>): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const req = request(`${url}/v1/chat/completions`, { method: 'POST', headers: { ...headers, 'transfer-encoding': 'chunked' } }, (res) => {
      let received = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (received += chunk));
      res.on('end', () => resolve(`${res.statusCode} ${res.headers['content-type']} ${received}`));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.write('{"model":');
    setTimeout(() => req.end('"x"}'), 30);
  });
}

const events = (text: string): number => text.split('\n\n').length - 1;

test('the upstream answers a request without the bench headers with one event at once', async () => {
  const text = await chunkedPost({});
  expect(text).toMatch(/^200 text\/event-stream data: \{/);
  expect(events(text)).toBe(2);
  expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
  const probe = await fetch(`${url}/anything`);
  expect(events(await probe.text())).toBe(2);
});

test('the upstream streams only once a chunked request body has ended', async () => {
  const text = await chunkedPost({ 'x-bench-chunks': '4', 'x-bench-interval': '20' });
  expect(text.startsWith('200 text/event-stream ')).toBe(true);
  expect(events(text)).toBe(5);
  expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
});

describe('the client counts every other ending as an error', () => {
  let server: Server;
  afterEach(() => close(server));

  test.each([
    ['an error status', (res: ServerResponse) => res.writeHead(503).end('{"error":{}}')],
    [
      'a reset mid-stream',
      (res: ServerResponse) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: {}\n\n');
        setTimeout(() => res.socket?.destroy(), 20);
      },
    ],
    [
      'a stream cut short',
      (res: ServerResponse) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end('data: {}\n\ndata: [DONE]\n\n');
      },
    ],
  ])('%s', async (_name, answer) => {
    server = createServer((req, res) => req.resume().on('end', () => answer(res)));
    const result = await longStreams({ url: await listen(server), headers: {} }, body, { streams: 3, tokens: 5, intervalMs: 10, rampMs: 30, perConnection: 2 })
      .done;
    expect(result).toMatchObject({ completed: 0, errors: 6 });
  });

  test('a stream still open at the deadline', async () => {
    server = createServer((req, res) => req.resume().on('end', () => res.writeHead(200, { 'content-type': 'text/event-stream' }).write('data: {}\n\n')));
    const result = await longStreams(
      { url: await listen(server), headers: {} },
      body,
      { streams: 2, tokens: 5, intervalMs: 10, rampMs: 10, perConnection: 2 },
      100,
    ).done;
    expect(result).toMatchObject({ completed: 0, errors: 4 });
    server.closeAllConnections();
  });
});
