/**
 * The benchmark's upstream: a tiny, fast OpenAI-shaped server, run in its own
 * process (bench/upstream.ts) so it never shares the gateway's event loop.
 * Answers are precomputed; the request body is searched, not parsed.
 *
 *   A body with `"stream":true` (compact JSON, as the SDKs send it), or a
 *   request with `x-bench-chunks: n`: an event stream of n chunks (default
 *   20), the first at once, then one every `x-bench-interval` ms (default 5),
 *   then `data: [DONE]`. With `"include_usage":true` in the body, as OpenAI:
 *   `"usage":null` in every chunk and a usage-only chunk before [DONE]. Any
 *   other request: a fixed chat.completion JSON.
 *   Under `/flaky/` (the failover section's second upstream), one request in
 *   five, drawn at random, is a 503 instead.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export const COMPLETION = Buffer.from(
  JSON.stringify({
    id: 'chatcmpl-bench',
    object: 'chat.completion',
    created: 1_700_000_000,
    model: 'bench-model',
    choices: [{ index: 0, message: { role: 'assistant', content: 'Hello! This is a fixed answer from the benchmark upstream.' }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 12, completion_tokens: 11, total_tokens: 23 },
  }),
);
export const CHUNK = Buffer.from(
  `data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1_700_000_000, model: 'bench-model', choices: [{ index: 0, delta: { content: ' token' }, finish_reason: null }] })}\n\n`,
);
const CHUNK_WITH_USAGE = Buffer.from(
  `data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1_700_000_000, model: 'bench-model', choices: [{ index: 0, delta: { content: ' token' }, finish_reason: null }], usage: null })}\n\n`,
);
const USAGE_CHUNK = Buffer.from(
  `data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1_700_000_000, model: 'bench-model', choices: [], usage: { prompt_tokens: 12, completion_tokens: 20, total_tokens: 32 } })}\n\n`,
);
export const DONE = Buffer.from('data: [DONE]\n\n');
const USAGE_DONE = Buffer.concat([USAGE_CHUNK, DONE]);
const STREAM_FLAG = Buffer.from('"stream":true');
const USAGE_FLAG = Buffer.from('"include_usage":true');
const DEFAULT_CHUNKS = 20;
const JSON_HEADERS = { 'content-type': 'application/json', 'content-length': COMPLETION.length };
const SSE_HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' };
const UNAVAILABLE = Buffer.from(JSON.stringify({ error: { message: 'flaky upstream', type: 'server_error', param: null, code: null } }));
const UNAVAILABLE_HEADERS = { 'content-type': 'application/json', 'content-length': UNAVAILABLE.length };
/** The share of /flaky/ requests answered 503. */
export const FLAKY_FAILURE_RATE = 0.2;

function respond(req: IncomingMessage, res: ServerResponse, streamAsked: boolean, usageAsked: boolean): void {
  if (req.url?.startsWith('/flaky/') === true && Math.random() < FLAKY_FAILURE_RATE) {
    res.writeHead(503, UNAVAILABLE_HEADERS);
    res.end(UNAVAILABLE);
    return;
  }
  const chunksHeader = req.headers['x-bench-chunks'];
  if (chunksHeader === undefined && !streamAsked) {
    res.writeHead(200, JSON_HEADERS);
    res.end(COMPLETION);
    return;
  }
  const total = chunksHeader === undefined ? DEFAULT_CHUNKS : Number(chunksHeader);
  const interval = Number(req.headers['x-bench-interval'] ?? 5);
  const chunk = usageAsked ? CHUNK_WITH_USAGE : CHUNK;
  const done = usageAsked ? USAGE_DONE : DONE;
  res.writeHead(200, SSE_HEADERS);
  res.write(chunk);
  let sent = 1;
  if (sent >= total) {
    res.end(done);
    return;
  }
  const timer = setInterval(() => {
    if (res.destroyed) {
      clearInterval(timer);
      return;
    }
    res.write(chunk);
    if (++sent >= total) {
      clearInterval(timer);
      res.end(done);
    }
  }, interval);
  res.once('close', () => clearInterval(timer));
}

export function createBenchUpstream(): Server {
  return createServer({ keepAliveTimeout: 60_000, noDelay: true }, (req, res) => {
    let streamAsked = false;
    let usageAsked = false;
    // A flag cut across two reads is missed: request bodies here are small.
    req.on('data', (chunk: Buffer) => {
      if (!streamAsked && chunk.includes(STREAM_FLAG)) streamAsked = true;
      if (!usageAsked && chunk.includes(USAGE_FLAG)) usageAsked = true;
    });
    req.on('end', () => respond(req, res, streamAsked, usageAsked));
  });
}
