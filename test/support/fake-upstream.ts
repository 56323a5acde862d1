import { createServer as createHttpsServer } from 'node:https';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** One request as the fake upstream saw it. */
export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: Buffer;
  /** Resolves when the upstream saw the client side close (e.g. the gateway aborted). */
  closed: Promise<void>;
  /** Body bytes handed to the socket so far (x-fake-size, or events of a stream), to observe backpressure from the gateway. */
  bytesSent: number;
  /** The upstream socket's remote port: requests that share it shared a kept-alive connection. */
  remotePort: number;
  /** The W3C trace context the request carried (null when none): the parent the inference server would continue. */
  traceparent: string | null;
  tracestate: string | null;
}

export interface FakeUpstream {
  url: string;
  port: number;
  requests: SeenRequest[];
  /** Sockets ever accepted (to check connection reuse). */
  connections: number;
  close(): Promise<void>;
}

/**
 * An OpenAI-compatible upstream on an ephemeral port that misbehaves on demand,
 * steered by request headers (which the gateway forwards untouched):
 *   x-fake-status: N          answer N with an OpenAI error body (and retry-after for 429)
 *   x-fake-headers-delay: ms  wait before sending headers
 *   x-fake-reset: before-headers | mid-stream | mid-body (with x-fake-size: close the socket halfway)
 *   x-fake-stall: after-first  stop sending after the first chunk (keep the socket open)
 *   x-fake-chunks: n, x-fake-interval: ms   shape of an SSE stream (interval 0: as fast as the reader takes them)
 *   x-fake-garbage: 1         answer 200 text/event-stream with bytes that are not SSE
 *   x-fake-size: bytes        a large non-streamed JSON-ish body, streamed out in 64 KiB writes
 *   x-fake-echo-headers: 1    put the request headers into an error body (a leaky upstream)
 *   x-fake-echo-auth: 1       copy the request's Authorization into a response header, at any status (a leaky upstream)
 *   x-fake-echo-auth-body: 1  put the request's Authorization into the answer's content; in a stream, split across two writes
 * Each SeenRequest also records `bytesSent` (for x-fake-size), the connection's `remotePort` and the
 * `traceparent`/`tracestate` it got.
 */
export async function startFakeUpstream(options: { tls?: { key: string; cert: string } } = {}): Promise<FakeUpstream> {
  const requests: SeenRequest[] = [];
  const sockets = new Set<Socket>();
  let connections = 0;
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      let markClosed!: () => void;
      const closed = new Promise<void>((resolve) => (markClosed = resolve));
      res.on('close', () => markClosed());
      const seen: SeenRequest = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks),
        closed,
        bytesSent: 0,
        remotePort: req.socket.remotePort ?? 0,
        traceparent: typeof req.headers.traceparent === 'string' ? req.headers.traceparent : null,
        tracestate: typeof req.headers.tracestate === 'string' ? req.headers.tracestate : null,
      };
      requests.push(seen);
      void respond(req, res, seen);
    });
  };
  const server: Server = options.tls === undefined ? createServer(onRequest) : createHttpsServer(options.tls, onRequest);
  server.on(options.tls === undefined ? 'connection' : 'secureConnection', (socket: Socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `${options.tls === undefined ? 'http' : 'https'}://127.0.0.1:${port}`,
    port,
    requests,
    get connections() {
      return connections;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return typeof value === 'string' ? value : undefined;
}

async function respond(req: IncomingMessage, res: ServerResponse, seen: SeenRequest): Promise<void> {
  const headersDelay = Number(header(req, 'x-fake-headers-delay') ?? 0);
  if (headersDelay > 0) await sleep(headersDelay);
  if (res.destroyed) return;
  if (header(req, 'x-fake-reset') === 'before-headers') {
    req.socket.destroy();
    return;
  }
  if (header(req, 'x-fake-echo-auth') === '1') res.setHeader('x-echo-authorization', req.headers.authorization ?? '');
  const status = Number(header(req, 'x-fake-status') ?? 200);
  if (status !== 200) {
    const message = header(req, 'x-fake-echo-headers') === '1' ? `echo: ${JSON.stringify(req.headers)}` : `fake upstream error ${status}`;
    const body = JSON.stringify({ error: { message, type: 'upstream_fake', param: null, code: `fake_${status}` } });
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...(status === 429 ? { 'retry-after': '7' } : {}) });
    res.end(body);
    return;
  }
  let parsed: Record<string, unknown>;
  try {
    parsed = seen.body.length > 0 ? (JSON.parse(seen.body.toString('utf8')) as Record<string, unknown>) : {};
  } catch {
    parsed = {};
  }
  const model = typeof parsed['model'] === 'string' ? parsed['model'] : 'fake-model';
  const echoAuth = header(req, 'x-fake-echo-auth-body') === '1' ? (req.headers.authorization ?? '') : null;

  if (header(req, 'x-fake-garbage') === '1') {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.end('this is \0 not { server-sent events\n');
    return;
  }
  const size = Number(header(req, 'x-fake-size') ?? 0);
  if (size > 0) {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
    const block = Buffer.alloc(64 * 1024, 'x');
    const resetMidBody = header(req, 'x-fake-reset') === 'mid-body';
    let sent = 0;
    while (sent < size && !res.destroyed) {
      const piece = block.subarray(0, Math.min(block.length, size - sent));
      sent += piece.length;
      seen.bytesSent = sent;
      if (resetMidBody && sent >= size / 2) {
        req.socket.destroy();
        return;
      }
      if (!res.write(piece)) await new Promise((resolve) => res.once('drain', resolve));
    }
    res.end();
    return;
  }
  if (req.url?.startsWith('/v1/models')) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ object: 'list', data: [{ id: 'fake-model', object: 'model', created: 0, owned_by: 'fake' }] }));
    return;
  }
  if (req.url?.startsWith('/v1/embeddings')) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        object: 'list',
        model,
        data: [{ object: 'embedding', index: 0, embedding: [0.1, 0.2, 0.3] }],
        usage: { prompt_tokens: 1, total_tokens: 1 },
      }),
    );
    return;
  }
  if (parsed['stream'] === true) {
    const chunks = Number(header(req, 'x-fake-chunks') ?? 5);
    const interval = Number(header(req, 'x-fake-interval') ?? 5);
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    if (echoAuth !== null) {
      // The echoed key arrives at the gateway cut in two reads.
      const event = `data: ${JSON.stringify({ id: 'chatcmpl-fake', object: 'chat.completion.chunk', created: 0, model, choices: [{ index: 0, delta: { content: `echo ${echoAuth}` }, finish_reason: null }] })}\n\n`;
      const cut = event.indexOf(echoAuth) + Math.floor(echoAuth.length / 2);
      res.write(event.slice(0, cut));
      await sleep(30);
      res.write(event.slice(cut));
    }
    for (let i = 0; i < chunks; i++) {
      if (res.destroyed) return;
      const chunk = {
        id: 'chatcmpl-fake',
        object: 'chat.completion.chunk',
        created: 0,
        model,
        choices: [{ index: 0, delta: { content: `tok${i} ` }, finish_reason: null }],
      };
      const event = `data: ${JSON.stringify(chunk)}\n\n`;
      seen.bytesSent += event.length;
      if (!res.write(event)) await new Promise((resolve) => res.once('drain', resolve));
      if (i === 0 && header(req, 'x-fake-reset') === 'mid-stream') {
        await sleep(20);
        req.socket.destroy();
        return;
      }
      if (i === 0 && header(req, 'x-fake-stall') === 'after-first') return; // never ends
      if (interval > 0) await sleep(interval);
    }
    res.end('data: [DONE]\n\n');
    return;
  }
  const completion = {
    id: 'chatcmpl-fake',
    object: 'chat.completion',
    created: 0,
    model,
    choices: [{ index: 0, message: { role: 'assistant', content: echoAuth === null ? `hello from ${model}` : `echo ${echoAuth}` }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 1, completion_tokens: 3, total_tokens: 4 },
  };
  const body = JSON.stringify(completion);
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
