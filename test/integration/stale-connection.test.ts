/**
 * A request written on a reused keep-alive connection that the upstream
 * closes before any response byte (it closed an idle connection as the
 * request went out, and never processed it) is sent once more on a fresh
 * connection, whatever the retry settings; a body streamed through cannot be
 * sent again and is not, nor is a request on a fresh connection. The upstream
 * is a raw socket server: it answers the first request of each connection and
 * hangs up on the next.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { request } from 'undici';
import { CLIENT_KEY, startTestGateway, UPSTREAM_KEY, type TestGateway } from '../support/gateway-harness.js';
import { RequestSplitter } from '../support/request-splitter.js';
import { prometheus, series } from '../reliability/helpers.js';

interface HangingUp {
  url: string;
  /** Connections accepted. */
  connections: number;
  /** Requests each connection received, in order of connection. */
  requests: number[];
  /** How the second request on a connection is refused. */
  hangUp: 'close' | 'reset';
  /** false: the first request of a connection is refused too. */
  answerFirst: boolean;
  /** Closes every connection (the gateway's next request opens a fresh one). */
  closeConnections(): Promise<void>;
  close(): Promise<void>;
}

async function startHangingUp(): Promise<HangingUp> {
  const sockets = new Set<Socket>();
  const state: HangingUp = {
    url: '',
    connections: 0,
    requests: [],
    hangUp: 'close',
    answerFirst: true,
    closeConnections: () => Promise.resolve(),
    close: () => Promise.resolve(),
  };
  const server: Server = createServer((socket) => {
    const index = state.connections++;
    state.requests.push(0);
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const splitter = new RequestSplitter();
    socket.on('data', (data: Buffer) => {
      for (const _request of splitter.push(data)) {
        if (++state.requests[index]! > 1 || !state.answerFirst) {
          if (state.hangUp === 'reset') socket.resetAndDestroy();
          else socket.end();
          return;
        }
        const body = '{"object":"chat.completion","model":"m","choices":[]}';
        socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nkeep-alive: timeout=30\r\n\r\n${body}`);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  state.closeConnections = async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => setTimeout(resolve, 50));
  };
  state.close = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    });
  return state;
}

let upstream: HangingUp;
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startHangingUp();
  gw = await startTestGateway({
    upstreams: {
      // No retry condition at all: the resend on a fresh connection is not a retry.
      default: { url: `${upstream.url}/v1`, api_key: UPSTREAM_KEY, retry: { conditions: [] }, timeouts: { connect_ms: 500, headers_ms: 1000, idle_ms: 1000 } },
    },
    client_keys: [{ id: 'team-a', key: CLIENT_KEY }],
    shutdown: { drain_delay_ms: 0, timeout_ms: 2000 },
  });
});

beforeEach(() => upstream.closeConnections());

afterAll(async () => {
  await gw?.stop();
  await upstream?.close();
});

const headers = { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' };

async function chat(): Promise<{ status: number; attempts: string | undefined; body: string }> {
  const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers, body: '{"model":"m"}' });
  return { status: res.statusCode, attempts: res.headers['x-apiproxy-attempts'] as string | undefined, body: await res.body.text() };
}

async function staleCount(): Promise<number> {
  return series(await prometheus(gw.url), 'apiproxy_upstream_attempts_total', { upstream: 'default', outcome: 'stale_connection' });
}

test.each(['close', 'reset'] as const)('a kept-alive connection the upstream %ss under the request: sent again on a fresh one, answered', async (hangUp) => {
  upstream.hangUp = hangUp;
  const staleBefore = await staleCount();
  expect(await chat()).toMatchObject({ status: 200, attempts: '1' }); // a fresh connection, kept alive
  const connections = upstream.connections;
  const second = await chat(); // written on that connection, which hangs up
  expect(second).toMatchObject({ status: 200, attempts: '2' });
  expect(JSON.parse(second.body)).toMatchObject({ object: 'chat.completion' });
  expect(upstream.connections).toBe(connections + 1);
  expect(upstream.requests.at(-2)).toBe(2); // the stale connection saw it, never answered it
  expect(upstream.requests.at(-1)).toBe(1);
  expect((await staleCount()) - staleBefore).toBe(1);
});

test('a body streamed through (an upload) is not sent again: 502, one attempt', async () => {
  upstream.hangUp = 'close';
  expect(await chat()).toMatchObject({ status: 200, attempts: '1' });
  const body = '--x\r\ncontent-disposition: form-data; name="file"; filename="a.txt"\r\n\r\nhello\r\n--x--\r\n';
  const res = await request(`${gw.url}/v1/files`, {
    method: 'POST',
    headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'multipart/form-data; boundary=x', 'content-length': String(body.length) },
    body,
  });
  expect(res.statusCode).toBe(502);
  expect(res.headers['x-apiproxy-attempts']).toBe('1');
  expect(((await res.body.json()) as { error: { code: string } }).error.code).toBe('upstream_reset');
});

test('a fresh connection closed before any response byte is not sent again: the upstream may have processed it', async () => {
  upstream.answerFirst = false;
  upstream.hangUp = 'close';
  try {
    const staleBefore = await staleCount();
    const connections = upstream.connections;
    const res = await chat();
    expect(res).toMatchObject({ status: 502, attempts: '1' });
    expect(JSON.parse(res.body).error.code).toBe('upstream_reset');
    expect(upstream.connections - connections).toBe(1);
    expect((await staleCount()) - staleBefore).toBe(0);
  } finally {
    upstream.answerFirst = true;
  }
});
