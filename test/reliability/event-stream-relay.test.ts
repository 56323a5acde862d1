/**
 * The event-stream relay end to end: an upstream's chunked event stream
 * (chunk extensions, uneven chunks that ignore event boundaries) reaches the
 * client as the same payload in well-formed framing (each event's model the
 * one the client asked for: answer_model: requested), however the upstream cuts
 * its chunks and writes; pipelined and HTTP/1.0 clients get well-formed
 * responses too; and an upstream that dies mid-event must never have an error
 * event spliced into the half event. The upstream is a raw node:net server, so
 * that the framing is ours to choose.
 */
import { ServerResponse } from 'node:http';
import { connect, createServer, Socket, type AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { request } from 'undici';
import { baseConfig, CLIENT_KEY, startTestGateway, type TestGateway } from '../support/gateway-harness.js';
import { RequestSplitter } from '../support/request-splitter.js';
import { expectIdleAndHealthy, rawRequest, waitFor } from './helpers.js';

// ---------------------------------------------------------------------------
// A raw upstream

interface UpstreamExchange {
  socket: Socket;
  head: string;
  body: string;
  /** The request body's `user` field: tells concurrent streams apart. */
  marker: string;
}

type Behaviour = (exchange: UpstreamExchange) => void | Promise<void>;

interface RawUpstream {
  url: string;
  requests: UpstreamExchange[];
  /** What the upstream wrote after the head, by request marker (to compare with what clients got). */
  sent: Map<string, string>;
  behaviour: Behaviour;
  close(): Promise<void>;
}

async function startRawUpstream(): Promise<RawUpstream> {
  const sockets = new Set<Socket>();
  const upstream: RawUpstream = {
    url: '',
    requests: [],
    sent: new Map(),
    behaviour: (exchange) => streamEvents(exchange),
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const splitter = new RequestSplitter();
    socket.on('data', (data: Buffer) => {
      for (const { head, body: bytes } of splitter.push(data)) {
        const body = bytes.toString('utf8');
        let marker = 'tok';
        try {
          const user = (JSON.parse(body) as { user?: unknown }).user;
          if (typeof user === 'string') marker = user;
        } catch {
          // not JSON: the default marker
        }
        const exchange = { socket, head, body, marker };
        upstream.requests.push(exchange);
        void upstream.behaviour(exchange);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  upstream.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return upstream;
}

const EVENT_COUNT = 40;

/** The event stream for `marker`: EVENT_COUNT chat.completion.chunk events, then [DONE]; as the upstream sends it. */
function events(marker: string, count = EVENT_COUNT, model = 'raw-model'): string[] {
  const list: string[] = [];
  for (let i = 0; i < count; i++) {
    const chunk = {
      id: 'chatcmpl-raw',
      object: 'chat.completion.chunk',
      created: 0,
      model,
      choices: [{ index: 0, delta: { content: `${marker}${i} ` }, finish_reason: null }],
    };
    list.push(`data: ${JSON.stringify(chunk)}\n\n`);
  }
  list.push('data: [DONE]\n\n');
  return list;
}

/** The same stream as a client gets it: the requests ask for gpt-4, which a redirect sends upstream as another model. */
const relayed = (marker: string, count = EVENT_COUNT): string[] => events(marker, count, 'gpt-4');

const contents = (marker: string, count = EVENT_COUNT): string[] => Array.from({ length: count }, (_, i) => `${marker}${i} `);

const SSE_HEAD = 'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n';
const EXTENSIONS = ['', ';x=y', ';name="quoted value"', ';a;b=c', ''];
const CHUNK_SIZES = [37, 5, 190, 1, 64, 333, 13, 2];
const WRITE_SIZES = [1, 17, 3, 250, 2, 40, 7, 600];

/** One chunk, with its size line. */
function chunk(data: string, extension = ''): string {
  return `${Buffer.byteLength(data).toString(16)}${extension}\r\n${data}\r\n`;
}

/** `text` in chunks of uneven sizes that ignore event boundaries, with extensions; not terminated. */
function unevenChunks(text: string): string {
  let framed = '';
  for (let at = 0, i = 0; at < text.length; i++) {
    const size = CHUNK_SIZES[i % CHUNK_SIZES.length]!;
    framed += chunk(text.slice(at, at + size), EXTENSIONS[i % EXTENSIONS.length]);
    at += size;
  }
  return framed;
}

/** Writes `text` in uneven pieces, one per event loop turn (or every `delayMs`), so they arrive as separate reads. */
async function writeUnevenly(socket: Socket, text: string, delayMs = 0): Promise<void> {
  for (let at = 0, i = 0; at < text.length; i++) {
    if (socket.destroyed) return;
    const size = WRITE_SIZES[i % WRITE_SIZES.length]!;
    socket.write(text.slice(at, at + size), 'latin1');
    at += size;
    await new Promise((resolve) => (delayMs > 0 ? setTimeout(resolve, delayMs) : setImmediate(resolve)));
  }
}

/** The default behaviour: the whole stream for the request's marker, cut and written unevenly. */
async function streamEvents(exchange: UpstreamExchange, options: { delayMs?: number; headDelayMs?: number } = {}): Promise<void> {
  const body = unevenChunks(events(exchange.marker).join('')) + '0\r\n\r\n';
  upstream.sent.set(exchange.marker, body);
  if (options.headDelayMs !== undefined) await new Promise((resolve) => setTimeout(resolve, options.headDelayMs));
  exchange.socket.write(SSE_HEAD);
  await writeUnevenly(exchange.socket, body, options.delayMs ?? 0);
}

/** Writes `body` after the stream's head, waits a little (so the gateway relays it), then closes the connection. */
async function dieAfter(exchange: UpstreamExchange, body: string): Promise<void> {
  upstream.sent.set(exchange.marker, body);
  exchange.socket.write(SSE_HEAD + body);
  await new Promise((resolve) => setTimeout(resolve, 30));
  exchange.socket.destroy();
}

// ---------------------------------------------------------------------------
// Parsing what a raw client got

interface ParsedResponse {
  status: number;
  headers: Record<string, string>;
  /** The payload (chunked coding removed). */
  body: string;
  /** The bytes after the head, as sent. */
  wire: string;
}

/**
 * Complete responses at the start of `text` (latin1), strictly framed; `rest`
 * is what follows (an incomplete response). Throws on invalid framing.
 */
function parseResponses(text: string): { responses: ParsedResponse[]; rest: string } {
  const responses: ParsedResponse[] = [];
  let at = 0;
  for (;;) {
    const headEnd = text.indexOf('\r\n\r\n', at);
    if (headEnd === -1) return { responses, rest: text.slice(at) };
    const lines = text.slice(at, headEnd).split('\r\n');
    const status = /^HTTP\/1\.1 (\d{3}) /.exec(lines[0]!);
    if (status === null) throw new Error(`not a status line: ${JSON.stringify(lines[0])}`);
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      const name = line.slice(0, colon).toLowerCase();
      const value = line.slice(colon + 1).trim();
      headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
    }
    const bodyStart = headEnd + 4;
    if (headers['transfer-encoding'] === 'chunked') {
      let body = '';
      let cursor = bodyStart;
      for (;;) {
        const lineEnd = text.indexOf('\r\n', cursor);
        if (lineEnd === -1) return { responses, rest: text.slice(at) };
        const line = text.slice(cursor, lineEnd);
        if (!/^[0-9a-fA-F]+(;[^\r\n]*)?$/.test(line)) throw new Error(`invalid chunk-size line: ${JSON.stringify(line.slice(0, 40))}`);
        const size = parseInt(line, 16);
        cursor = lineEnd + 2;
        if (size === 0) {
          if (text.length < cursor + 2) return { responses, rest: text.slice(at) };
          if (text.slice(cursor, cursor + 2) !== '\r\n') throw new Error('trailers or junk after the last chunk');
          cursor += 2;
          break;
        }
        if (text.length < cursor + size + 2) return { responses, rest: text.slice(at) };
        if (text.slice(cursor + size, cursor + size + 2) !== '\r\n')
          throw new Error(`chunk data not followed by CRLF: ${JSON.stringify(text.slice(cursor + size - 10, cursor + size + 10))}`);
        body += text.slice(cursor, cursor + size);
        cursor += size + 2;
      }
      responses.push({ status: Number(status[1]), headers, body, wire: text.slice(bodyStart, cursor) });
      at = cursor;
    } else if (headers['content-length'] !== undefined) {
      const end = bodyStart + Number(headers['content-length']);
      if (text.length < end) return { responses, rest: text.slice(at) };
      responses.push({ status: Number(status[1]), headers, body: text.slice(bodyStart, end), wire: text.slice(bodyStart, end) });
      at = end;
    } else {
      throw new Error('a response without framing in a keep-alive exchange');
    }
  }
}

/** The payload of a chunked body, however much of it came, and whether its last chunk came. */
function decodeChunked(wire: string): { payload: string; terminated: boolean } {
  let payload = '';
  let at = 0;
  for (;;) {
    const lineEnd = wire.indexOf('\r\n', at);
    if (lineEnd === -1) return { payload, terminated: false };
    const size = parseInt(wire.slice(at, lineEnd), 16);
    if (size === 0) return { payload, terminated: true };
    payload += wire.slice(lineEnd + 2, lineEnd + 2 + size);
    at = lineEnd + 2 + size + 2;
    if (at > wire.length) return { payload, terminated: false };
  }
}

/** Writes `data` in one go on a fresh connection; resolves once `count` complete responses came (or the connection closed, or 5 s). */
function pipelined(url: string, data: string, count: number): Promise<{ responses: ParsedResponse[]; rest: string; closed: boolean }> {
  const { port, hostname } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let text = '';
    let closed = false;
    const finish = (): void => {
      clearTimeout(timer);
      socket.destroy();
      try {
        resolve({ ...parseResponses(text), closed });
      } catch (error) {
        reject(error instanceof Error ? error : new Error(String(error)));
      }
    };
    const timer = setTimeout(finish, 5000);
    socket.on('connect', () => socket.write(data, 'latin1'));
    socket.on('data', (chunkBytes: Buffer) => {
      text += chunkBytes.toString('latin1');
      try {
        if (parseResponses(text).responses.length >= count) finish();
      } catch (error) {
        clearTimeout(timer);
        socket.destroy();
        reject(error instanceof Error ? error : new Error(String(error)));
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      closed = true;
      finish();
    });
  });
}

/** A POST of `body` to the chat endpoint as raw HTTP/1.x. */
function rawPost(body: string, version: '1.0' | '1.1', extra = ''): string {
  return (
    `POST /v1/chat/completions HTTP/${version}\r\nhost: gateway\r\nauthorization: Bearer ${CLIENT_KEY}\r\n` +
    `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`
  );
}

// ---------------------------------------------------------------------------

let upstream: RawUpstream;
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startRawUpstream();
  gw = await startTestGateway(baseConfig(upstream.url));
});
afterAll(async () => {
  await gw.stop();
  await upstream.close();
});
beforeEach(() => {
  upstream.behaviour = (exchange) => streamEvents(exchange);
});

const auth = { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' };
const streamRequest = (user: string): string => JSON.stringify({ model: 'gpt-4', stream: true, user, messages: [{ role: 'user', content: 'hi' }] });
const sdk = (): OpenAI => new OpenAI({ apiKey: CLIENT_KEY, baseURL: `${gw.url}/v1`, maxRetries: 0 });

/** /health 200, nothing in flight, and a normal stream comes through whole. */
async function healthyAfterwards(): Promise<void> {
  upstream.behaviour = (exchange) => streamEvents(exchange);
  await expectIdleAndHealthy(gw.url);
  const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: auth, body: streamRequest('ok') });
  expect(res.statusCode).toBe(200);
  expect(await res.body.text()).toBe(relayed('ok').join(''));
}

describe('an event stream with chunk extensions and uneven chunks', () => {
  test('reaches an undici client intact', async () => {
    const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: auth, body: streamRequest('U') });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream');
    expect(res.headers['transfer-encoding']).toBe('chunked');
    expect(res.headers['x-request-id']).toBeDefined();
    expect(await res.body.text()).toBe(relayed('U').join(''));
    expect(upstream.requests.at(-1)!.head).toMatch(/^POST \/v1\/chat\/completions HTTP\/1\.1\r\n/);
  });

  test('reaches the official openai SDK intact, event by event', async () => {
    const stream = await sdk().chat.completions.create({ model: 'gpt-4', messages: [{ role: 'user', content: 'hi' }], stream: true, user: 'S' });
    const parts: string[] = [];
    for await (const part of stream) {
      expect(part.object).toBe('chat.completion.chunk');
      parts.push(part.choices[0]!.delta.content ?? '');
    }
    expect(parts).toEqual(contents('S'));
  });

  test("goes out in well-formed chunked framing with the upstream's payload, byte for byte", async () => {
    const raw = await rawRequest(gw.url, rawPost(streamRequest('W'), '1.1', 'connection: close\r\n'));
    expect(raw.closed).toBe(true);
    const { responses, rest } = parseResponses(raw.text);
    expect(rest).toBe('');
    expect(responses).toHaveLength(1);
    expect(responses[0]!.status).toBe(200);
    expect(responses[0]!.body).toBe(relayed('W').join(''));
  });

  test('ten concurrent streams through the same pool all arrive intact', async () => {
    const markers = Array.from({ length: 10 }, (_, i) => `c${i}-`);
    const bodies = await Promise.all(
      markers.map(async (marker) => {
        const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: auth, body: streamRequest(marker) });
        return res.body.text();
      }),
    );
    expect(bodies).toEqual(markers.map((marker) => relayed(marker).join('')));
  });
});

describe('pipelined and HTTP/1.0 clients', () => {
  test.each([
    ['the first is slower', { A: { delayMs: 2 }, B: {} }],
    ['the second is slower and starts late', { A: {}, B: { delayMs: 2, headDelayMs: 100 } }],
  ])('two pipelined streaming requests on one socket: both complete and well-formed, in order (%s)', async (_name, pacing) => {
    upstream.behaviour = (exchange) => streamEvents(exchange, pacing[exchange.marker as 'A' | 'B']);
    const before = upstream.requests.length;
    const result = await pipelined(gw.url, rawPost(streamRequest('A'), '1.1') + rawPost(streamRequest('B'), '1.1'), 2);
    expect(result.rest).toBe('');
    expect(result.responses).toHaveLength(2);
    const [first, second] = result.responses as [ParsedResponse, ParsedResponse];
    for (const response of [first, second]) {
      expect(response.status).toBe(200);
      expect(response.headers['transfer-encoding']).toBe('chunked');
      expect(response.headers['content-type']).toBe('text/event-stream');
    }
    expect(first.body).toBe(relayed('A').join(''));
    expect(second.body).toBe(relayed('B').join(''));
    expect(first.headers['x-request-id']).not.toBe(second.headers['x-request-id']);
    expect(
      upstream.requests
        .slice(before)
        .map((exchange) => exchange.marker)
        .sort(),
    ).toEqual(['A', 'B']);
    await expectIdleAndHealthy(gw.url);
  });

  test('an HTTP/1.0 client gets a close-delimited, unchunked body with every event', async () => {
    const raw = await rawRequest(gw.url, rawPost(streamRequest('H'), '1.0'));
    expect(raw.closed).toBe(true);
    expect(raw.statuses).toEqual([200]);
    const headEnd = raw.text.indexOf('\r\n\r\n');
    const head = raw.text.slice(0, headEnd).toLowerCase();
    expect(head).not.toContain('transfer-encoding');
    expect(head).not.toContain('content-length');
    expect(head).toContain('content-type: text/event-stream');
    expect(head).toMatch(/\r\nconnection: close(\r\n|$)/);
    expect(raw.text.slice(headEnd + 4)).toBe(relayed('H').join(''));
  });
});

describe('an upstream that dies', () => {
  const FIRST = events('D', 3);
  /** FIRST's three events as the client gets them. */
  const FIRST_RELAYED = relayed('D', 3).slice(0, 3);
  /** Three whole events, one per chunk. */
  const WHOLE = FIRST.slice(0, 3)
    .map((event) => chunk(event, ';n=1'))
    .join('');
  const NEXT = events('D', 4)[3]!;
  /** Three whole events, then a chunk cut halfway through its data. */
  const MID_CHUNK = WHOLE + `${Buffer.byteLength(NEXT).toString(16)}\r\n${NEXT.slice(0, 40)}`;

  test('mid-chunk: an undici client sees the body fail, not complete', async () => {
    upstream.behaviour = (exchange) => dieAfter(exchange, MID_CHUNK);
    const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: auth, body: streamRequest('D') });
    expect(res.statusCode).toBe(200);
    await expect(res.body.text()).rejects.toThrow();
    await healthyAfterwards();
  });

  test('mid-chunk: the client connection is closed after exactly the relayed payload, unterminated, no error event spliced in', async () => {
    upstream.behaviour = (exchange) => dieAfter(exchange, MID_CHUNK);
    const raw = await rawRequest(gw.url, rawPost(streamRequest('D'), '1.1'));
    expect(raw.closed).toBe(true);
    expect(raw.statuses).toEqual([200]);
    const { payload, terminated } = decodeChunked(raw.text.slice(raw.text.indexOf('\r\n\r\n') + 4));
    expect(terminated).toBe(false);
    // The half event holds no model yet, so it is relayed as far as it came.
    expect(payload).toBe(FIRST_RELAYED.join('') + NEXT.slice(0, 40));
    expect(raw.text).not.toContain('"error"');
    await healthyAfterwards();
  });

  test('mid-chunk: the openai SDK raises an error instead of finishing quietly or parsing a spliced event', async () => {
    upstream.behaviour = (exchange) => dieAfter(exchange, MID_CHUNK);
    const stream = await sdk().chat.completions.create({ model: 'gpt-4', messages: [], stream: true, user: 'D' });
    const parts: string[] = [];
    await expect(
      (async () => {
        for await (const part of stream) parts.push(part.choices[0]!.delta.content ?? '');
      })(),
    ).rejects.toThrow();
    expect(parts).toEqual(contents('D', 3));
    await healthyAfterwards();
  });

  test.each([
    ['between events', WHOLE],
    ['between events, the next size line begun', WHOLE + '1'],
    ['between events, the next size line and extension begun', WHOLE + '9e;x='],
  ])('%s: the stream ends with an upstream_reset error event in well-formed framing', async (_name, sent) => {
    upstream.behaviour = (exchange) => dieAfter(exchange, sent);
    const raw = await rawRequest(gw.url, rawPost(streamRequest('D'), '1.1', 'connection: close\r\n'));
    const { responses, rest } = parseResponses(raw.text);
    expect(rest).toBe('');
    expect(responses).toHaveLength(1);
    const received = responses[0]!.body.split('\n\n').filter((event) => event !== '');
    expect(received.slice(0, 3)).toEqual(FIRST_RELAYED.map((event) => event.slice(0, -2)));
    expect(received).toHaveLength(4);
    expect(received[3]!.startsWith('data: ')).toBe(true);
    const error = (JSON.parse(received[3]!.slice('data: '.length)) as { error: { code: string; type: string } }).error;
    expect(error).toMatchObject({ code: 'upstream_reset', type: 'upstream_error' });
    await healthyAfterwards();
  });

  test('between events: undici reads a complete body ending in the error event; the SDK raises it as an APIError', async () => {
    upstream.behaviour = (exchange) => dieAfter(exchange, WHOLE);
    const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: auth, body: streamRequest('D') });
    const text = await res.body.text();
    expect(text.startsWith(FIRST_RELAYED.join(''))).toBe(true);
    const last = text.trim().split('\n\n').at(-1)!;
    expect(JSON.parse(last.slice('data: '.length))).toEqual({ error: expect.objectContaining({ code: 'upstream_reset' }) });

    const stream = await sdk().chat.completions.create({ model: 'gpt-4', messages: [], stream: true, user: 'D' });
    const parts: string[] = [];
    await expect(
      (async () => {
        for await (const part of stream) parts.push(part.choices[0]!.delta.content ?? '');
      })(),
    ).rejects.toMatchObject({ code: 'upstream_reset' });
    expect(parts).toEqual(contents('D', 3));
    await healthyAfterwards();
  });

  test('mid-chunk, to an HTTP/1.0 client (decoded relay): the body is cut, no error event spliced onto the half event', async () => {
    upstream.behaviour = (exchange) => dieAfter(exchange, MID_CHUNK);
    const raw = await rawRequest(gw.url, rawPost(streamRequest('D'), '1.0'));
    expect(raw.closed).toBe(true);
    expect(raw.statuses).toEqual([200]);
    const body = raw.text.slice(raw.text.indexOf('\r\n\r\n') + 4);
    expect(body.startsWith(FIRST_RELAYED.join(''))).toBe(true);
    expect(body).not.toContain('"error"');
    await healthyAfterwards();
  });
});

describe('framing edge cases', () => {
  test('Transfer-Encoding with Content-Length: chunked wins, the length is not relayed, the body arrives whole', async () => {
    upstream.behaviour = (exchange) => {
      const body = unevenChunks(events(exchange.marker).join('')) + '0\r\n\r\n';
      exchange.socket.write(SSE_HEAD.replace('\r\n\r\n', '\r\ncontent-length: 5\r\n\r\n') + body);
    };
    const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: auth, body: streamRequest('TE') });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-length']).toBeUndefined();
    expect(await res.body.text()).toBe(relayed('TE').join(''));
    await healthyAfterwards();
  });

  test('a slow client and a burst of many small chunks in one read: one wait for drain at a time, every event delivered', async () => {
    const count = 60_000; // ~12 MB: more than the loopback socket buffers take, so writes start returning false
    upstream.behaviour = (exchange) => {
      // One write: the gateway reads hundreds of chunks at once, each relayed while the client is not reading.
      exchange.socket.write(
        SSE_HEAD +
          events(exchange.marker, count)
            .map((event) => chunk(event))
            .join('') +
          '0\r\n\r\n',
      );
    };
    // Watch how many 'drain' listeners a response ever holds (the gateway runs in this process).
    const once = ServerResponse.prototype.once;
    let mostDrainListeners = 0;
    const watched = function (this: ServerResponse, event: string | symbol, listener: (...args: never[]) => void): ServerResponse {
      const result = Reflect.apply(once, this, [event, listener]) as ServerResponse;
      if (event === 'drain') mostDrainListeners = Math.max(mostDrainListeners, this.listenerCount('drain'));
      return result;
    };
    ServerResponse.prototype.once = watched as typeof once;
    try {
      // HTTP/1.0: the decoded relay, one client write per chunk.
      const socket = connect(Number(new URL(gw.url).port), '127.0.0.1');
      const received: Buffer[] = [];
      const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
      socket.pause();
      socket.on('data', (data: Buffer) => void received.push(data));
      socket.write(rawPost(streamRequest('S'), '1.0'));
      // The client reads nothing until the gateway has filled the socket and waits for it to drain.
      await waitFor(() => mostDrainListeners > 0, 20_000, 'the relay waiting for the client to drain');
      socket.resume();
      await closed;
      const text = Buffer.concat(received).toString('utf8');
      expect(text.slice(text.indexOf('\r\n\r\n') + 4)).toBe(relayed('S', count).join(''));
    } finally {
      ServerResponse.prototype.once = once;
    }
    expect(mostDrainListeners).toBeGreaterThan(0); // the relay did wait for the client
    expect(mostDrainListeners).toBe(1);
    await healthyAfterwards();
  });
  test('the last event and the end of the response leave in one write', async () => {
    upstream.behaviour = async (exchange) => {
      const framed = events(exchange.marker, 3).map((event) => chunk(event));
      exchange.socket.write(SSE_HEAD + framed.slice(0, -1).join(''));
      await new Promise((resolve) => setTimeout(resolve, 20));
      exchange.socket.write(framed.at(-1)! + '0\r\n\r\n'); // [DONE] and the last chunk: one read at the gateway
    };
    // Record the writes on the gateway's side of the client connection (the gateway runs in this process).
    const port = Number(new URL(gw.url).port);
    const writes: { text: string; corked: boolean }[] = [];
    const write = Socket.prototype.write;
    Socket.prototype.write = function (this: Socket, ...args: Parameters<typeof write>): boolean {
      const data = args[0];
      if (this.localPort === port)
        writes.push({ text: typeof data === 'string' ? data : Buffer.from(data).toString('latin1'), corked: this.writableCorked > 0 });
      return write.apply(this, args);
    } as typeof write;
    let text: string;
    try {
      const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: auth, body: streamRequest('L') });
      text = await res.body.text();
    } finally {
      Socket.prototype.write = write;
    }
    expect(text).toBe(relayed('L', 3).join(''));
    // The writes that carry the last event and the last chunk, from the end back: all made while the socket
    // was corked, so they leave together when it is uncorked.
    const tail = chunk('data: [DONE]\n\n') + '0\r\n\r\n';
    const final: { text: string; corked: boolean }[] = [];
    for (let i = writes.length - 1, length = 0; i >= 0 && length < tail.length; i--) {
      final.unshift(writes[i]!);
      length += writes[i]!.text.length;
    }
    expect(final.map((entry) => entry.text).join('')).toBe(tail);
    expect(final.every((entry) => entry.corked)).toBe(true);
    await healthyAfterwards();
  });
});

describe('answers that are not HTTP, and requests that cannot be sent', () => {
  test.each([
    ['a malformed header line', 'HTTP/1.1 200 OK\r\nnot a header\r\ncontent-length: 2\r\n\r\n{}'],
    ['conflicting content-lengths', 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}'],
    ['not HTTP at all', 'SSH-2.0-OpenSSH_9.2\r\n\r\n'],
  ])('%s: 502 upstream_bad_response, healthy afterwards', async (_, answer) => {
    upstream.behaviour = (exchange) => void exchange.socket.end(answer);
    const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: auth, body: streamRequest('bad') });
    expect(res.statusCode).toBe(502);
    const body = (await res.body.json()) as { error: { code: string; type: string; message: string } };
    expect(body.error).toMatchObject({ code: 'upstream_bad_response', type: 'upstream_error' });
    await healthyAfterwards();
  });

  test('an upstream key with a line break: nothing is sent, 500 internal_error, logged with the request id', async () => {
    const config = baseConfig(upstream.url);
    const upstreams = config['upstreams'] as Record<string, Record<string, unknown>>;
    upstreams['default']!['api_key'] = 'sk-upstream\r\nx-injected: yes';
    const bad = await startTestGateway(config);
    try {
      const before = upstream.requests.length;
      const res = await request(`${bad.url}/v1/chat/completions`, { method: 'POST', headers: auth, body: streamRequest('key') });
      expect(res.statusCode).toBe(500);
      expect(((await res.body.json()) as { error: { code: string } }).error.code).toBe('internal_error');
      const requestId = res.headers['x-request-id'];
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(upstream.requests.length).toBe(before); // not one byte of it went out
      const logged = bad.logs.entries.find((entry) => entry['msg'] === 'the gateway failed to handle the request');
      expect(logged).toMatchObject({ req_id: requestId, level: 'error' });
      expect(JSON.stringify(logged)).not.toContain('sk-upstream');
    } finally {
      await bad.stop();
    }
  });
});
