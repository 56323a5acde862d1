/**
 * The soak's fake upstream, run as its own process (forked; reports its port
 * over IPC). Steered by the `x-soak` request header, which the gateway
 * forwards untouched:
 *   json (default) | stream | slow-stream | status-500 | status-429 |
 *   reset-before | reset-mid | delay-headers
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

let requests = 0;
let connections = 0;

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    requests++;
    respond(req, res, Buffer.concat(chunks)).catch(() => res.destroy());
  });
});
server.on('connection', () => connections++);
server.keepAliveTimeout = 30_000;

async function respond(req: IncomingMessage, res: ServerResponse, body: Buffer): Promise<void> {
  const mode = typeof req.headers['x-soak'] === 'string' ? req.headers['x-soak'] : 'json';
  let model = 'soak-model';
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { model?: unknown };
    if (typeof parsed.model === 'string') model = parsed.model;
  } catch {
    // not JSON: keep the default
  }
  switch (mode) {
    case 'status-500':
    case 'status-429': {
      const status = mode === 'status-500' ? 500 : 429;
      const text = JSON.stringify({ error: { message: `soak ${status}`, type: 'soak', param: null, code: `soak_${status}` } });
      res.writeHead(status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(text),
        ...(status === 429 ? { 'retry-after': '1' } : {}),
      });
      res.end(text);
      return;
    }
    case 'reset-before':
      req.socket.destroy();
      return;
    case 'delay-headers':
      await sleep(400);
      break;
    case 'stream':
    case 'slow-stream':
    case 'reset-mid': {
      const count = mode === 'slow-stream' ? 200 : 10;
      const interval = mode === 'slow-stream' ? 20 : 2;
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      for (let i = 0; i < count; i++) {
        if (res.destroyed) return;
        const chunk = {
          id: 'soak',
          object: 'chat.completion.chunk',
          created: 0,
          model,
          choices: [{ index: 0, delta: { content: `t${i} ` }, finish_reason: null }],
        };
        res.write(`data: ${JSON.stringify(chunk)}\n\n`);
        if (mode === 'reset-mid' && i === 2) {
          await sleep(5);
          req.socket.destroy();
          return;
        }
        await sleep(interval);
      }
      res.end('data: [DONE]\n\n');
      return;
    }
    default:
      break;
  }
  if (res.destroyed) return;
  const text = JSON.stringify({
    id: 'soak',
    object: 'chat.completion',
    created: 0,
    model,
    choices: [{ index: 0, message: { role: 'assistant', content: 'x'.repeat(200) }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
  });
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

server.listen(0, '127.0.0.1', () => {
  process.send?.({ port: (server.address() as AddressInfo).port });
});
process.on('message', (message) => {
  if ((message as { stats?: boolean }).stats === true) process.send?.({ requests, connections });
});
process.on('disconnect', () => process.exit(0));
