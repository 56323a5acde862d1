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
  /** Named in every answer's `x-fake-upstream` header and in its error messages. */
  name: string;
  requests: SeenRequest[];
  /**
   * x-fake-* headers for the next requests, one set each, in order: they
   * override what the request carries (the gateway sends every target the
   * same headers, so this is how one target fails while another answers).
   */
  script: Record<string, string>[];
  /** Sockets ever accepted (to check connection reuse). */
  connections: number;
  /** Closes every open connection (between requests: the next request comes on a fresh one). */
  closeConnections(): Promise<void>;
  close(): Promise<void>;
}

/**
 * An OpenAI-compatible upstream on an ephemeral port that misbehaves on demand,
 * steered by request headers (which the gateway forwards untouched):
 *   x-fake-status: N          answer N with an OpenAI error body (and retry-after: 7 for 429)
 *   x-fake-retry-after: v     the retry-after of that error answer (any status; `none`: without one)
 *   x-fake-retry-after-ms: v  a retry-after-ms header on that error answer (OpenAI's)
 *   x-fake-marker: v          echoed in the answer's x-fake-marker header (which scripted answer the client got)
 *   x-fake-close: 1           close the connection after the answer (the next request comes on a fresh one)
 *   x-fake-headers-delay: ms  wait before sending headers
 *   x-fake-reset: before-headers | mid-stream | mid-body (with x-fake-size: close the socket halfway)
 *   x-fake-stall: after-first  stop sending after the first chunk (keep the socket open)
 *   x-fake-chunks: n, x-fake-interval: ms   shape of an SSE stream (interval 0: as fast as the reader takes them)
 *   x-fake-garbage: 1         answer 200 text/event-stream with bytes that are not SSE
 *   x-fake-size: bytes        a large non-streamed JSON-ish body, streamed out in 64 KiB writes
 *   x-fake-echo-headers: 1    put the request headers into an error body (a leaky upstream)
 *   x-fake-echo-auth: 1       copy the request's Authorization into a response header, at any status (a leaky upstream)
 *   x-fake-echo-auth-body: 1  put the request's Authorization into the answer's content; in a stream, split across two writes
 *   x-fake-prompt-tokens: n   the usage's prompt tokens (default 7); completion tokens are the stream's chunks (3 without a stream)
 *   x-fake-usage-details: 1   the usage also reports cached (2) and reasoning (1) tokens
 *   x-fake-no-usage: 1        report no usage at all (an upstream that ignores include_usage)
 * Usage as OpenAI reports it: in every JSON answer (chat, completions, embeddings, responses); in a chat or
 * completions stream only with stream_options.include_usage (then `"usage":null` in every chunk and a last
 * chunk with `choices: []` and the usage); in a Responses stream, in response.completed.
 * Each SeenRequest also records `bytesSent` (for x-fake-size), the connection's `remotePort` and the
 * `traceparent`/`tracestate` it got.
 */
export async function startFakeUpstream(options: { tls?: { key: string; cert: string }; name?: string } = {}): Promise<FakeUpstream> {
  const requests: SeenRequest[] = [];
  const script: Record<string, string>[] = [];
  const name = options.name ?? 'fake';
  const sockets = new Set<Socket>();
  let connections = 0;
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const scripted = script.shift();
    if (scripted !== undefined) Object.assign(req.headers, scripted);
    res.setHeader('x-fake-upstream', name);
    if (req.headers['x-fake-close'] === '1') res.setHeader('connection', 'close');
    const marker = req.headers['x-fake-marker'];
    if (typeof marker === 'string') res.setHeader('x-fake-marker', marker);
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
      void respond(req, res, seen, name);
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
    name,
    requests,
    script,
    get connections() {
      return connections;
    },
    async closeConnections() {
      for (const socket of sockets) socket.destroy();
      await sleep(50); // the gateway sees them close before its next request
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

async function respond(req: IncomingMessage, res: ServerResponse, seen: SeenRequest, name: string): Promise<void> {
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
    const message = header(req, 'x-fake-echo-headers') === '1' ? `echo: ${JSON.stringify(req.headers)}` : `fake upstream ${name} error ${status}`;
    const body = JSON.stringify({ error: { message, type: 'upstream_fake', param: null, code: `fake_${status}` } });
    const retryAfter = header(req, 'x-fake-retry-after') ?? (status === 429 ? '7' : 'none');
    const retryAfterMs = header(req, 'x-fake-retry-after-ms');
    res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      ...(retryAfter === 'none' ? {} : { 'retry-after': retryAfter }),
      ...(retryAfterMs === undefined ? {} : { 'retry-after-ms': retryAfterMs }),
    });
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
  const promptTokens = Number(header(req, 'x-fake-prompt-tokens') ?? 7);
  const details = header(req, 'x-fake-usage-details') === '1';
  const noUsage = header(req, 'x-fake-no-usage') === '1';
  const chatUsage = (completionTokens: number): Record<string, unknown> => ({
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    ...(details ? { prompt_tokens_details: { cached_tokens: 2 }, completion_tokens_details: { reasoning_tokens: 1 } } : {}),
  });
  if (req.url?.startsWith('/v1/embeddings')) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        object: 'list',
        model,
        data: [{ object: 'embedding', index: 0, embedding: [0.1, 0.2, 0.3] }],
        ...(noUsage ? {} : { usage: { prompt_tokens: promptTokens, total_tokens: promptTokens } }),
      }),
    );
    return;
  }
  if (req.url?.startsWith('/v1/responses')) {
    await respondResponses(req, res, parsed, model, { promptTokens, details, noUsage });
    return;
  }
  const legacy = req.url?.startsWith('/v1/completions') === true;
  if (parsed['stream'] === true) {
    const options = parsed['stream_options'];
    const withUsage = !noUsage && options !== null && typeof options === 'object' && (options as { include_usage?: unknown }).include_usage === true;
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
    const kind = legacy ? { id: 'cmpl-fake', object: 'text_completion' } : { id: 'chatcmpl-fake', object: 'chat.completion.chunk' };
    for (let i = 0; i < chunks; i++) {
      if (res.destroyed) return;
      const choice = legacy
        ? { text: `tok${i} `, index: 0, logprobs: null, finish_reason: null }
        : { index: 0, delta: { content: `tok${i} ` }, finish_reason: null };
      const chunk = { ...kind, created: 0, model, choices: [choice], ...(withUsage ? { usage: null } : {}) };
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
    if (withUsage) res.write(`data: ${JSON.stringify({ ...kind, created: 0, model, choices: [], usage: chatUsage(chunks) })}\n\n`);
    res.end('data: [DONE]\n\n');
    return;
  }
  const text = echoAuth === null ? `hello from ${model}` : `echo ${echoAuth}`;
  const completion = {
    id: legacy ? 'cmpl-fake' : 'chatcmpl-fake',
    object: legacy ? 'text_completion' : 'chat.completion',
    created: 0,
    model,
    choices: [
      legacy ? { text, index: 0, logprobs: null, finish_reason: 'stop' } : { index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' },
    ],
    ...(noUsage ? {} : { usage: chatUsage(3) }),
  };
  const body = JSON.stringify(completion);
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** The Responses API: a response object, or its event stream (created, text deltas, completed with the usage). */
async function respondResponses(
  req: IncomingMessage,
  res: ServerResponse,
  parsed: Record<string, unknown>,
  model: string,
  usage: { promptTokens: number; details: boolean; noUsage: boolean },
): Promise<void> {
  const chunks = Number(header(req, 'x-fake-chunks') ?? 5);
  const text = Array.from({ length: chunks }, (_, i) => `tok${i} `);
  const response = (status: string, output: string | null): Record<string, unknown> => ({
    id: 'resp_fake',
    object: 'response',
    created_at: 0,
    status,
    model,
    output:
      output === null
        ? []
        : [{ type: 'message', id: 'msg_fake', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: output, annotations: [] }] }],
    usage:
      output === null || usage.noUsage
        ? null
        : {
            input_tokens: usage.promptTokens,
            input_tokens_details: { cached_tokens: usage.details ? 2 : 0 },
            output_tokens: chunks,
            output_tokens_details: { reasoning_tokens: usage.details ? 1 : 0 },
            total_tokens: usage.promptTokens + chunks,
          },
    user: null,
    metadata: {},
  });
  if (parsed['stream'] !== true) {
    const body = JSON.stringify(response('completed', text.join('')));
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  let sequence = 0;
  const event = (type: string, data: Record<string, unknown>): string =>
    `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: sequence++, ...data })}\n\n`;
  res.write(event('response.created', { response: response('in_progress', null) }));
  for (const delta of text) {
    if (res.destroyed) return;
    res.write(event('response.output_text.delta', { item_id: 'msg_fake', output_index: 0, content_index: 0, delta }));
    await sleep(2);
  }
  res.end(event('response.completed', { response: response('completed', text.join('')) }));
}
