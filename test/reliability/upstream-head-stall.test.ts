/**
 * An upstream whose response head carries one long, oddly shaped header line
 * (tens of KiB of whitespace, under the 64 KiB head limit) must not stall the
 * gateway: a backtracking pattern once blocked the event loop for seconds per
 * such response, and every other client waited. Here /health is polled while
 * those heads are parsed; no poll may wait more than 50 ms.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { baseConfig, CLIENT_KEY, startTestGateway, type TestGateway } from '../support/gateway-harness.js';
import { rawRequest } from './helpers.js';

const LONG_LINE = `x-odd: a${' \t'.repeat(30 * 1024)}b`;

let upstream: Server;
let gw: TestGateway;

beforeAll(async () => {
  upstream = createServer((socket: Socket) => {
    socket.on('error', () => undefined);
    let seen = '';
    socket.on('data', (data: Buffer) => {
      seen += data.toString('latin1');
      // Requests here are small JSON bodies: answer once the head and its body are in.
      const headEnd = seen.indexOf('\r\n\r\n');
      if (headEnd === -1) return;
      const length = Number(/content-length: (\d+)/i.exec(seen.slice(0, headEnd))?.[1] ?? 0);
      if (seen.length < headEnd + 4 + length) return;
      seen = seen.slice(headEnd + 4 + length);
      socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n${LONG_LINE}\r\ncontent-length: 2\r\n\r\n{}`, 'latin1');
    });
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  gw = await startTestGateway(baseConfig(`http://127.0.0.1:${(upstream.address() as AddressInfo).port}`));
});

afterAll(async () => {
  await gw.stop();
  await new Promise<void>((resolve) => upstream.close(() => resolve()));
});

/** Sends 40 proxied requests, five at a time, while polling /health every 5 ms; returns the statuses and the longest /health wait. */
async function round(): Promise<{ statuses: number[]; longestWaitMs: number; polls: number }> {
  const body = JSON.stringify({ model: 'gpt-4', messages: [] });
  const proxied = (): Promise<number[]> =>
    rawRequest(
      gw.url,
      `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${CLIENT_KEY}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
      { timeoutMs: 20_000 },
    ).then((raw) => raw.statuses);

  let done = false;
  const waits: number[] = [];
  const poll = (async () => {
    while (!done) {
      const started = performance.now();
      const res = await request(`${gw.url}/health`);
      await res.body.text();
      waits.push(performance.now() - started);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  })();
  // Eight waves of five: the connections of a wave are accepted in one loop turn (src/http/listen.ts), and
  // forty at once would parse their heads in the same few turns, the poll behind them all. The stall
  // guarded against costs seconds per head.
  const statuses: number[] = [];
  for (let wave = 0; wave < 8; wave++) statuses.push(...(await Promise.all(Array.from({ length: 5 }, proxied))).flat());
  done = true;
  await poll;
  return { statuses, longestWaitMs: Math.max(...waits), polls: waits.length };
}

it('answers /health within 50 ms while upstream heads with 60 KiB whitespace-riddled lines are parsed', async () => {
  // A round can be disturbed by the other tests sharing the two cores; the stall it guards against costs
  // seconds in every round. One round of three within 50 ms passes.
  const rounds: { longestWaitMs: number; polls: number }[] = [];
  for (let attempt = 0; attempt < 3; attempt++) {
    const result = await round();
    expect(result.statuses).toEqual(Array.from({ length: 40 }, () => 200));
    rounds.push({ longestWaitMs: Math.round(result.longestWaitMs), polls: result.polls });
    if (result.longestWaitMs < 50 && result.polls > 3) break;
  }
  // The best round among those that polled enough to judge (a round too short to poll proves nothing).
  const judged = rounds.filter((one) => one.polls > 3);
  const best = (judged.length > 0 ? judged : rounds).reduce((a, b) => (a.longestWaitMs <= b.longestWaitMs ? a : b));
  expect({ best, rounds }).toEqual({ best: { longestWaitMs: expect.any(Number), polls: expect.any(Number) }, rounds });
  expect(best.polls).toBeGreaterThan(3);
  expect(best.longestWaitMs).toBeLessThan(50);
}, 90_000);
