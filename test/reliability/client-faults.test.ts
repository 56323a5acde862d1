/**
 * Client faults tried on purpose: clients that go away (before the upstream
 * answers, mid-stream), clients that read slowly or not at all (backpressure
 * must bound memory), and slowloris clients that trickle headers or bodies
 * (the server timeouts must close them). Afterwards nothing is in flight, the
 * upstream connections were closed or reused, and normal requests work.
 * (test/integration/faults.test.ts proves that one abort reaches the upstream;
 * this adds the bookkeeping, repetition, backpressure and slowloris.)
 */
import { connect, type Socket } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { SERVER_LIMITS, startGateway, type Gateway } from '../../src/gateway.js';
import type { FakeUpstream } from '../support/fake-upstream.js';
import { baseConfig, CLIENT_KEY, LogCapture, startGatewayWithUpstream, startTestGateway, type TestGateway } from '../support/gateway-harness.js';
import { expectIdleAndHealthy, movement, prometheus, rawRequest, waitFor, waitForPlateau } from './helpers.js';

let upstream: FakeUpstream;
let gw: TestGateway;
let stop: () => Promise<void>;

beforeAll(async () => ({ upstream, gw, stop } = await startGatewayWithUpstream((url) => baseConfig(url))));
afterAll(() => stop());

const auth = { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' };
const streamBody = JSON.stringify({ model: 'gpt-4', stream: true, messages: [] });

async function normalRequestsSucceed(url: string, count = 10): Promise<void> {
  const results = await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const res = await request(`${url}/v1/chat/completions`, { method: 'POST', headers: auth, body: JSON.stringify({ model: 'gpt-4', stream: i % 2 === 0 }) });
      const text = await res.body.text();
      // A stream ends with [DONE]; a plain answer is whole JSON from the redirected model, naming the requested one.
      const complete =
        i % 2 === 0
          ? text.endsWith('data: [DONE]\n\n')
          : res.headers['x-apiproxy-upstream-model'] === 'gpt-4o-2024-08-06' && (JSON.parse(text) as { model?: string }).model === 'gpt-4';
      return { status: res.statusCode, complete };
    }),
  );
  expect(results).toEqual(results.map(() => ({ status: 200, complete: true })));
}

function accessLines(logs: LogCapture): Record<string, unknown>[] {
  return logs.entries.filter((entry) => entry['msg'] === 'request');
}

describe('clients that go away', () => {
  test('20 disconnects before the upstream answers: each upstream request aborted, 499 logged, nothing counted as an upstream error, nothing left in flight', async () => {
    const before = upstream.requests.length;
    const promBefore = await prometheus(gw.url);
    const logBefore = accessLines(gw.logs).length;
    await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const controller = new AbortController();
        const pending = request(`${gw.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { ...auth, 'x-fake-headers-delay': '3000', 'x-request-id': `gone-before-${i}` },
          body: '{"model":"gpt-4"}',
          signal: controller.signal,
        }).then(
          () => 'answered',
          (error: Error) => error.name,
        );
        await waitFor(() => upstream.requests.some((r) => r.headers['x-request-id'] === `gone-before-${i}`), 3000, 'upstream saw the request');
        controller.abort();
        expect(await pending).toBe('AbortError');
      }),
    );
    // every upstream request was aborted by the gateway (its socket closed long before the 3 s answer)
    const started = Date.now();
    await Promise.all(upstream.requests.slice(before).map((r) => r.closed));
    expect(Date.now() - started).toBeLessThan(1000);
    await expectIdleAndHealthy(gw.url);
    const promAfter = await prometheus(gw.url);
    const aborted = { route: 'chat_completions', status: '499' };
    expect(movement(promBefore, promAfter, 'apiproxy_requests_total', aborted)).toBe(20);
    for (const code of ['upstream_reset', 'upstream_timeout', 'upstream_unreachable']) {
      expect({ code, moved: movement(promBefore, promAfter, 'apiproxy_upstream_errors_total', { upstream: 'default', code }) }).toEqual({
        code,
        moved: 'unchanged',
      });
    }
    const lines = accessLines(gw.logs)
      .slice(logBefore)
      .filter((l) => String(l['req_id']).startsWith('gone-before-'));
    expect(lines).toHaveLength(20);
    for (const line of lines) expect(line).toMatchObject({ status: 499, client_aborted: true });
    await normalRequestsSucceed(gw.url);
  });

  test('20 disconnects mid-stream: upstream sockets closed, later requests use working connections, active_streams back to 0', async () => {
    const before = upstream.requests.length;
    const connectionsBefore = upstream.connections;
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        const controller = new AbortController();
        const res = await request(`${gw.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { ...auth, 'x-fake-chunks': '100000', 'x-fake-interval': '10' },
          body: streamBody,
          signal: controller.signal,
        });
        for await (const chunk of res.body) {
          if (String(chunk).includes('tok0')) break;
        }
        controller.abort();
      }),
    );
    const started = Date.now();
    await Promise.all(upstream.requests.slice(before).map((r) => r.closed));
    expect(Date.now() - started).toBeLessThan(1000);
    await expectIdleAndHealthy(gw.url);
    // the aborted connections are gone: new ones are opened, and they work
    const afterAbort = upstream.requests.length;
    await normalRequestsSucceed(gw.url, 20);
    expect(upstream.connections).toBeGreaterThan(connectionsBefore);
    // no stale pooled socket was handed out: every later request reached the upstream and got its answer
    expect(upstream.requests.length - afterAbort).toBe(20);
  });

  test('a client that disconnects after the response is complete leaves the upstream connection pooled for reuse', async () => {
    const agent = new Agent({ connections: 1 });
    try {
      for (let i = 0; i < 5; i++) {
        const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: auth, body: '{"model":"gpt-4"}', dispatcher: agent });
        await res.body.text();
      }
      const ports = upstream.requests.slice(-5).map((r) => r.remotePort);
      // sequential requests after clean completions share one upstream connection
      expect(new Set(ports).size).toBe(1);
    } finally {
      await agent.close();
    }
  });
});

describe('slow readers', () => {
  test('a client that stops reading: backpressure pauses the upstream; memory stays bounded; reading again finishes the body', async () => {
    const size = 512 * 1024 * 1024;
    const { port } = new URL(gw.url);
    const socket: Socket = connect(Number(port), '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(`GET /v1/files/slow/content HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${CLIENT_KEY}\r\nx-fake-size: ${size}\r\nconnection: close\r\n\r\n`);
    let received = 0;
    socket.on('data', (chunk: Buffer) => (received += chunk.length));
    socket.pause(); // reads nothing more
    const rssBefore = process.memoryUsage().rss;
    await waitFor(
      () => upstream.requests.at(-1)?.url === '/v1/files/slow/content' && upstream.requests.at(-1)!.bytesSent > 0,
      3000,
      'the upstream started sending',
    );
    const seen = upstream.requests.at(-1)!;
    // every buffer on the way fills up, then the upstream is held back
    const plateau = await waitForPlateau(() => seen.bytesSent, 1000, 15_000, 'the upstream held back');
    expect(plateau).toBeLessThan(64 * 1024 * 1024); // socket buffers, not the body
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(100 * 1024 * 1024);

    // a slow reader: a few chunks now and then, the upstream advances only as fast
    for (let i = 0; i < 5; i++) {
      socket.resume();
      await new Promise((resolve) => setTimeout(resolve, 2));
      socket.pause();
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(seen.bytesSent).toBeLessThan(plateau + 128 * 1024 * 1024);

    // then reads at full speed to the end
    const closed = new Promise((resolve) => socket.once('close', resolve));
    socket.resume();
    await closed;
    expect(received).toBeGreaterThan(size);
    await expectIdleAndHealthy(gw.url);
  }, 60_000);

  test('an event stream to a reader that stops: backpressure pauses the upstream; reading again gets every event, framed, in order', async () => {
    const events = 100_000; // about 17 MiB of events, sent as fast as they are taken
    const { port } = new URL(gw.url);
    const socket: Socket = connect(Number(port), '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(
      `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${CLIENT_KEY}\r\ncontent-type: application/json\r\n` +
        `x-fake-chunks: ${events}\r\nx-fake-interval: 0\r\nconnection: close\r\ncontent-length: ${Buffer.byteLength(streamBody)}\r\n\r\n${streamBody}`,
    );
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.pause();
    await waitFor(
      () => upstream.requests.at(-1)?.headers['x-fake-chunks'] === String(events) && upstream.requests.at(-1)!.bytesSent > 0,
      3000,
      'the upstream started streaming',
    );
    const seen = upstream.requests.at(-1)!;
    const plateau = await waitForPlateau(() => seen.bytesSent, 1000, 15_000, 'the upstream held back');
    expect(plateau).toBeLessThan(12 * 1024 * 1024); // held back by socket buffers, well short of the whole stream

    const closed = new Promise((resolve) => socket.once('close', resolve));
    socket.resume();
    await closed;
    const raw = Buffer.concat(received).toString('latin1');
    const headEnd = raw.indexOf('\r\n\r\n');
    expect(raw.slice(0, headEnd)).toMatch(/^HTTP\/1\.1 200[^]*\r\ntransfer-encoding: chunked/i);
    // Decode the chunked framing strictly: every size line, every CRLF, then the terminating 0-size chunk.
    let at = headEnd + 4;
    let body = '';
    for (;;) {
      const lineEnd = raw.indexOf('\r\n', at);
      const size = parseInt(raw.slice(at, lineEnd), 16);
      expect(Number.isNaN(size)).toBe(false);
      at = lineEnd + 2;
      if (size === 0) break;
      body += raw.slice(at, at + size);
      expect(raw.slice(at + size, at + size + 2)).toBe('\r\n');
      at += size + 2;
    }
    expect(raw.slice(at)).toBe('\r\n');
    const data = body.split('\n\n').filter((line) => line !== '');
    expect(data).toHaveLength(events + 1);
    for (const index of [0, 1, 4_999, events - 1]) expect(JSON.parse(data[index]!.slice('data: '.length)).choices[0].delta.content).toBe(`tok${index} `);
    expect(data.at(-1)).toBe('data: [DONE]');
    await expectIdleAndHealthy(gw.url);
  }, 60_000);

  test('a paused stream reader that then disconnects: the upstream stream is aborted, nothing in flight', async () => {
    const { port } = new URL(gw.url);
    const socket = connect(Number(port), '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    const body = JSON.stringify({ model: 'gpt-4', stream: true, pad: 'p'.repeat(1000) });
    socket.write(
      `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${CLIENT_KEY}\r\ncontent-type: application/json\r\nx-fake-chunks: 1000000\r\nx-fake-interval: 0\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    socket.pause();
    await waitFor(() => upstream.requests.at(-1)?.body.toString().includes('"pad"') === true, 3000, 'upstream got the stream request');
    const seen = upstream.requests.at(-1)!;
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(gw.gateway.metrics.activeStreams).toBe(1);
    socket.destroy();
    await seen.closed;
    await expectIdleAndHealthy(gw.url);
  });
});

describe('slowloris', () => {
  let gateway: Gateway;
  let logs: LogCapture;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'api-proxy-slowloris-'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify(baseConfig(upstream.url)));
    logs = new LogCapture();
    gateway = await startGateway({
      configPath: join(dir, 'config.json'),
      env: {},
      port: 0,
      host: '127.0.0.1',
      logDestination: logs,
      serverLimits: { headersTimeoutMs: 800, requestTimeoutMs: 1500, connectionsCheckingIntervalMs: 100 },
    });
  });
  afterAll(async () => {
    await gateway.shutdown();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Opens a socket, sends `head`, then one byte of `trickle` every `everyMs`; resolves when the server closes it. */
  function trickle(head: string, drip: string, everyMs: number): Promise<{ ms: number; text: string; dripped: number }> {
    const started = Date.now();
    const socket = connect(gateway.port, '127.0.0.1');
    let text = '';
    let dripped = 0;
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    socket.on('error', () => undefined);
    socket.write(head);
    const timer = setInterval(() => {
      if (socket.writable && dripped < drip.length) socket.write(drip[dripped++]!);
    }, everyMs);
    return new Promise((resolve) => {
      socket.on('close', () => {
        clearInterval(timer);
        resolve({ ms: Date.now() - started, text, dripped });
      });
    });
  }

  test('the defaults are what the README documents (10 s headers, 300 s request, 16 KiB headers)', () => {
    expect(SERVER_LIMITS).toMatchObject({ headersTimeoutMs: 10_000, requestTimeoutMs: 300_000, keepAliveTimeoutMs: 5_000, maxHeaderSize: 16 * 1024 });
  });

  test('the production server is built with them', async () => {
    const plain = await startTestGateway(baseConfig(upstream.url));
    try {
      expect(plain.gateway.server.headersTimeout).toBe(10_000);
      expect(plain.gateway.server.requestTimeout).toBe(300_000);
      expect(plain.gateway.server.keepAliveTimeout).toBe(5_000);
    } finally {
      await plain.stop();
    }
  });

  test('headers trickled one byte at a time are cut off at headersTimeout with 408', async () => {
    const result = await trickle('POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n', 'x-slow: ' + 'a'.repeat(10_000), 50);
    expect(result.text).toMatch(/^HTTP\/1\.1 408 /);
    expect(result.ms).toBeGreaterThanOrEqual(700);
    expect(result.ms).toBeLessThan(2500);
  });

  // That such a cut-off is not logged as an 'the gateway failed to handle the request' is test/reliability/client-abort-body.test.ts.
  test('a body trickled one byte at a time is cut off at requestTimeout; nothing forwarded, nothing left in flight', async () => {
    const body = '{"model":"gpt-4","messages":[' + ' '.repeat(5000) + ']}';
    const before = upstream.requests.length;
    const result = await trickle(
      `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${CLIENT_KEY}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n`,
      body,
      50,
    );
    expect(result.ms).toBeGreaterThanOrEqual(1400);
    expect(result.ms).toBeLessThan(4000);
    expect(result.dripped).toBeLessThan(body.length);
    expect(upstream.requests.length).toBe(before); // nothing half-read was forwarded
    await expectIdleAndHealthy(gateway.url);
  });

  // A connection that sends nothing is a slowloris too: Node's headersTimeout clock runs from the connection's start.
  test('a connection that never sends a byte is closed after headersTimeout', async () => {
    const started = Date.now();
    // Read, or the server's FIN may sit unseen in a paused socket and 'close' never comes.
    const socket = connect(gateway.port, '127.0.0.1').resume();
    socket.on('error', () => undefined);
    await new Promise((resolve) => socket.once('close', resolve));
    expect(Date.now() - started).toBeGreaterThanOrEqual(700);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  test('a kept-alive connection idle after a response is closed after keepAliveTimeout, not the silence timer', async () => {
    const result = await rawRequest(gateway.url, 'GET /health HTTP/1.1\r\nhost: x\r\n\r\n', { quietMs: 20_000, timeoutMs: 20_000 });
    expect(result.statuses).toEqual([200]);
    expect(result.closed).toBe(true);
  }, 25_000);

  test('a long quiet stream is not cut by the silence timer (only the first request is timed)', async () => {
    const res = await request(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { ...auth, 'x-fake-chunks': '2', 'x-fake-interval': '1500' },
      body: streamBody,
    });
    const text = await res.body.text();
    expect(text).toContain('tok1');
    expect(text).toContain('[DONE]');
  });

  test('many slowloris sockets at once do not stop normal requests', async () => {
    const sockets = Array.from({ length: 50 }, () => trickle('GET /health HTTP/1.1\r\n', 'x-a: ' + 'b'.repeat(1000), 100));
    const res = await request(`${gateway.url}/v1/chat/completions`, { method: 'POST', headers: auth, body: '{"model":"gpt-4"}' });
    expect(res.statusCode).toBe(200);
    await res.body.text();
    const results = await Promise.all(sockets);
    for (const result of results) expect(result.ms).toBeLessThan(3000);
  });
});
