/**
 * The benchmark's upstream: a tiny, fast OpenAI-shaped server run in its own
 * process (forked by bench/main.ts) so it never shares the gateway's event
 * loop. Answers are precomputed; the request body is drained, not parsed.
 *
 *   POST with `x-bench-chunks: n` (and `x-bench-interval: ms`, default 5): an
 *   event stream of n chunks, the first at once, then one every interval ms,
 *   then `data: [DONE]`. Any other request: a fixed chat.completion JSON.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

const COMPLETION = Buffer.from(
  JSON.stringify({
    id: 'chatcmpl-bench',
    object: 'chat.completion',
    created: 1_700_000_000,
    model: 'bench-model',
    choices: [{ index: 0, message: { role: 'assistant', content: 'Hello! This is a fixed answer from the benchmark upstream.' }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 12, completion_tokens: 11, total_tokens: 23 },
  }),
);
const CHUNK = Buffer.from(
  `data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1_700_000_000, model: 'bench-model', choices: [{ index: 0, delta: { content: ' token' }, finish_reason: null }] })}\n\n`,
);
const DONE = Buffer.from('data: [DONE]\n\n');
const JSON_HEADERS = { 'content-type': 'application/json', 'content-length': COMPLETION.length };
const SSE_HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' };

function respond(req: IncomingMessage, res: ServerResponse): void {
  const chunksHeader = req.headers['x-bench-chunks'];
  if (chunksHeader === undefined) {
    res.writeHead(200, JSON_HEADERS);
    res.end(COMPLETION);
    return;
  }
  const total = Number(chunksHeader);
  const interval = Number(req.headers['x-bench-interval'] ?? 5);
  res.writeHead(200, SSE_HEADERS);
  res.write(CHUNK);
  let sent = 1;
  if (sent >= total) {
    res.end(DONE);
    return;
  }
  const timer = setInterval(() => {
    if (res.destroyed) {
      clearInterval(timer);
      return;
    }
    res.write(CHUNK);
    if (++sent >= total) {
      clearInterval(timer);
      res.end(DONE);
    }
  }, interval);
  res.once('close', () => clearInterval(timer));
}

const server = createServer({ keepAliveTimeout: 60_000, noDelay: true }, (req, res) => {
  req.on('data', noop);
  req.on('end', () => respond(req, res));
});

function noop(): void {}

server.listen(0, '127.0.0.1', () => {
  const port = (server.address() as AddressInfo).port;
  if (process.send !== undefined) process.send({ port });
  else console.log(`bench upstream on http://127.0.0.1:${port}`);
});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
