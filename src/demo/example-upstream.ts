import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A small OpenAI-compatible upstream that ships with the project, so the demo
 * (and anyone trying the gateway) gets real answers without an API key. It
 * echoes the last user message back, word by word when streaming.
 */
export async function startExampleUpstream(port = 0, host = '127.0.0.1'): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => answer(req, res, Buffer.concat(chunks)));
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  const address = server.address() as AddressInfo;
  return { server, url: `http://${host}:${address.port}` };
}

function answer(req: IncomingMessage, res: ServerResponse, body: Buffer): void {
  const path = (req.url ?? '/').split('?')[0];
  if (req.method === 'GET' && path === '/v1/models') {
    return json(res, 200, { object: 'list', data: [{ id: 'example-model', object: 'model', created: 0, owned_by: 'api-proxy' }] });
  }
  if (req.method !== 'POST' || (path !== '/v1/chat/completions' && path !== '/v1/embeddings')) {
    return json(res, 404, {
      error: { message: `The example upstream does not serve ${req.method} ${path}`, type: 'invalid_request_error', param: null, code: 'not_found' },
    });
  }
  let request: { model?: unknown; stream?: unknown; messages?: { role?: string; content?: unknown }[]; input?: unknown };
  try {
    request = JSON.parse(body.toString('utf8')) as typeof request;
  } catch {
    return json(res, 400, { error: { message: 'invalid JSON', type: 'invalid_request_error', param: null, code: null } });
  }
  const model = typeof request.model === 'string' ? request.model : 'example-model';
  if (path === '/v1/embeddings') {
    return json(res, 200, {
      object: 'list',
      model,
      data: [{ object: 'embedding', index: 0, embedding: [0.1, 0.2, 0.3] }],
      usage: { prompt_tokens: 1, total_tokens: 1 },
    });
  }
  const lastUser = [...(request.messages ?? [])].reverse().find((m) => m.role === 'user');
  const said = typeof lastUser?.content === 'string' ? lastUser.content : '';
  const reply = `Hello from ${model}! You said: ${said}`;
  const created = Math.floor(Date.now() / 1000);
  if (request.stream === true) {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const words = reply.split(' ');
    let i = 0;
    const timer = setInterval(() => {
      if (res.destroyed) return clearInterval(timer);
      if (i < words.length) {
        const delta = { content: (i === 0 ? '' : ' ') + words[i] };
        res.write(
          `data: ${JSON.stringify({ id: 'chatcmpl-example', object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: null }] })}\n\n`,
        );
        i++;
        return;
      }
      clearInterval(timer);
      res.write(
        `data: ${JSON.stringify({ id: 'chatcmpl-example', object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`,
      );
      res.end('data: [DONE]\n\n');
    }, 30);
    return;
  }
  json(res, 200, {
    id: 'chatcmpl-example',
    object: 'chat.completion',
    created,
    model,
    choices: [{ index: 0, message: { role: 'assistant', content: reply }, finish_reason: 'stop' }],
    usage: { prompt_tokens: said.length, completion_tokens: reply.split(' ').length, total_tokens: said.length + reply.split(' ').length },
  });
}

function json(res: ServerResponse, status: number, value: unknown): void {
  const text = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
