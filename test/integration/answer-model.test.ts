/**
 * answer_model end to end: a client that asked for an alias reads the alias
 * in the answer's `model` (the seed's model mapping), for chat, completions,
 * responses and embeddings, streamed or not, through the official openai SDK
 * and raw sockets; only the model's bytes change, Content-Length stays true
 * and connections stay kept alive; compressed answers, error bodies and
 * answers without a model pass as they came. The upstream is a node:http
 * server whose answers are fixed bytes, so what changed is plain to see.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { gzipSync } from 'node:zlib';
import OpenAI from 'openai';
import { request } from 'undici';
import { baseConfig, CLIENT_KEY, startTestGateway, type TestGateway } from '../support/gateway-harness.js';
import { movement, prometheus, waitFor } from '../reliability/helpers.js';

const UPSTREAM_MODEL = 'gpt-4o-2024-08-06';
/** A name with JSON escapes and unicode (config names may hold anything but control characters). */
const ODD_ALIAS = 'my "alias" \\ caf\u00e9 \u6f22 \ud83d\ude00';

// ---------------------------------------------------------------------------
// The upstream: fixed answers, by what the request asks for

/** A chat completion as an upstream may format it: spaces, escapes, unicode, a nested "model" that is not the model. */
const chatAnswer = (model: string): string =>
  `{\n  "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000,\n  "model" :  ${JSON.stringify(model)},\n` +
  `  "choices": [{"index": 0, "message": {"role": "assistant", "content": "the \\"model\\" is caf\u00e9 \u2603", "tool_calls": null}, "finish_reason": "stop"}],\n` +
  `  "usage": {"prompt_tokens": 1.0e1, "completion_tokens": 3, "total_tokens": 13}, "system_fingerprint": "fp_1"\n}`;

const completionAnswer = (model: string): string =>
  JSON.stringify({ id: 'cmpl-1', object: 'text_completion', created: 0, model, choices: [{ text: 'hi', index: 0, logprobs: null, finish_reason: 'stop' }] });

const embeddingAnswer = (model: string): string =>
  JSON.stringify({
    object: 'list',
    data: [{ object: 'embedding', index: 0, embedding: [0.25, -0.5, 1e-7] }],
    model,
    usage: { prompt_tokens: 2, total_tokens: 2 },
  });

const responseObject = (model: string, status: string) => ({
  id: 'resp_1',
  object: 'response',
  created_at: 0,
  status,
  model,
  tools: [{ type: 'image_generation', model: 'gpt-image-1' }],
  output:
    status === 'completed'
      ? [{ type: 'message', id: 'msg_1', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: 'hi', annotations: [] }] }]
      : [],
});

const chatEvents = (model: string): string[] => [
  ...['Hel', 'lo'].map(
    (content) =>
      `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 0, model, choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`,
  ),
  'data: [DONE]\n\n',
];

const responseEvents = (model: string): string[] => [
  `event: response.created\ndata: ${JSON.stringify({ type: 'response.created', sequence_number: 0, response: responseObject(model, 'in_progress') })}\n\n`,
  `event: response.output_text.delta\ndata: ${JSON.stringify({ type: 'response.output_text.delta', sequence_number: 1, item_id: 'msg_1', output_index: 0, content_index: 0, delta: 'hi' })}\n\n`,
  `event: response.completed\ndata: ${JSON.stringify({ type: 'response.completed', sequence_number: 2, response: responseObject(model, 'completed') })}\n\n`,
];

/** A chat stream as OpenAI sends it when asked for usage: `"usage":null` in every chunk, then a usage-only chunk. */
const chatEventsWithUsage = (model: string): string[] => [
  ...['Hel', 'lo'].map(
    (content) =>
      `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 0, model, choices: [{ index: 0, delta: { content }, finish_reason: null }], usage: null })}\n\n`,
  ),
  `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 0, model, choices: [], usage: { prompt_tokens: 9, completion_tokens: 2, total_tokens: 11 } })}\n\n`,
  'data: [DONE]\n\n',
];

/** Answers a chat stream with its usage when the request asks for it (stream_options.include_usage), as OpenAI does. */
const usageWhenAsked: Answer = async (_req, res, body) => {
  const asked = (body['stream_options'] as { include_usage?: unknown } | undefined)?.include_usage === true;
  const model = String(body['model']);
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  await writeApart(res, asked ? chatEventsWithUsage(model) : chatEvents(model));
};

interface Seen {
  url: string;
  headers: IncomingMessage['headers'];
  body: Record<string, unknown>;
}

/** What the upstream does with a request: by default the endpoint's usual answer, naming the model it got. */
type Answer = (req: IncomingMessage, res: ServerResponse, body: Record<string, unknown>) => void | Promise<void>;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Writes `pieces` as separate TCP segments, `pauseMs` apart, so the gateway reads them one at a time. */
async function writeApart(res: ServerResponse, pieces: readonly string[], pauseMs = 15): Promise<void> {
  for (const piece of pieces) {
    res.write(piece);
    await sleep(pauseMs);
  }
  res.end();
}

const usualAnswer: Answer = async (req, res, body) => {
  const model = String(body['model']);
  const url = req.url ?? '';
  if (body['stream'] === true) {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    await writeApart(res, url.startsWith('/v1/responses') ? responseEvents(model) : chatEvents(model));
    return;
  }
  const text = url.startsWith('/v1/embeddings')
    ? embeddingAnswer(model)
    : url.startsWith('/v1/completions')
      ? completionAnswer(model)
      : url.startsWith('/v1/responses')
        ? JSON.stringify(responseObject(model, 'completed'))
        : chatAnswer(model);
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
};

let server: Server;
let upstreamUrl: string;
const seen: Seen[] = [];
let answer: Answer = usualAnswer;
let gw: TestGateway;

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString() || '{}') as Record<string, unknown>;
      seen.push({ url: req.url ?? '', headers: req.headers, body });
      void answer(req, res, body);
    });
  });
  server.keepAliveTimeout = 30_000;
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.on('close', () => sockets.forEach((socket) => socket.destroy()));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  upstreamUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  gw = await startTestGateway(
    baseConfig(upstreamUrl, {
      model_redirects: { 'gpt-4': UPSTREAM_MODEL, [ODD_ALIAS]: UPSTREAM_MODEL, keep: { model: 'kept-upstream', answer_model: 'upstream' } },
      routes: [{ model: 'same-name', targets: [{ model: 'same-name' }] }],
    }),
  );
});

afterAll(async () => {
  await gw.stop();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

beforeEach(() => {
  answer = usualAnswer;
});

const auth = { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' };
const sdk = (): OpenAI => new OpenAI({ apiKey: CLIENT_KEY, baseURL: `${gw.url}/v1`, maxRetries: 0 });

async function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await request(`${gw.url}${path}`, { method: 'POST', headers: { ...auth, ...headers }, body: JSON.stringify(body) });
  const bytes = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, bytes, text: bytes.toString() };
}

// ---------------------------------------------------------------------------

describe('the official openai SDK reads the model it asked for', () => {
  test('chat completion, not streamed', async () => {
    const completion = await sdk().chat.completions.create({ model: 'gpt-4', messages: [{ role: 'user', content: 'hi' }] });
    expect(completion.model).toBe('gpt-4');
    expect(completion.choices[0]!.message.content).toBe('the "model" is caf\u00e9 \u2603');
    expect(seen.at(-1)!.body['model']).toBe(UPSTREAM_MODEL);
  });

  test('chat completion, streamed: every chunk', async () => {
    const stream = await sdk().chat.completions.create({ model: 'gpt-4', messages: [{ role: 'user', content: 'hi' }], stream: true });
    const models: string[] = [];
    const text: string[] = [];
    for await (const chunk of stream) {
      models.push(chunk.model);
      text.push(chunk.choices[0]!.delta.content ?? '');
    }
    expect(models).toEqual(['gpt-4', 'gpt-4']);
    expect(text.join('')).toBe('Hello');
  });

  test('chat streamed, with the usage the gateway asks for: the added usage is read from the upstream’s bytes and taken out, the model rewritten', async () => {
    answer = usageWhenAsked;
    const labels = (kind: string): Record<string, string> => ({ consumer: 'team-a', key_id: 'team-a', model: 'gpt-4', kind });
    const before = await prometheus(gw.url);
    const stream = await sdk().chat.completions.create({ model: 'gpt-4', messages: [{ role: 'user', content: 'hi' }], stream: true });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(seen.at(-1)!.body['stream_options']).toEqual({ include_usage: true });
    expect(chunks.map((chunk) => [chunk.model, chunk.choices[0]!.delta.content, 'usage' in chunk])).toEqual([
      ['gpt-4', 'Hel', false],
      ['gpt-4', 'lo', false],
    ]);
    await waitFor(async () => movement(before, await prometheus(gw.url), 'apiproxy_tokens_total', labels('completion')) === 2);
    expect(movement(before, await prometheus(gw.url), 'apiproxy_tokens_total', labels('prompt'))).toBe(9);
    // Byte for byte what the client would have got without the gateway's include_usage, the model aside.
    const raw = await post('/v1/chat/completions', { model: 'gpt-4', stream: true });
    expect(raw.text).toBe(chatEvents('gpt-4').join(''));
  });

  test('chat streamed, the client asked for usage: its usage chunk arrives, with the requested model', async () => {
    answer = usageWhenAsked;
    const stream = await sdk().chat.completions.create({
      model: 'gpt-4',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.map((chunk) => chunk.model)).toEqual(['gpt-4', 'gpt-4', 'gpt-4']);
    expect(chunks.at(-1)!.usage).toEqual({ prompt_tokens: 9, completion_tokens: 2, total_tokens: 11 });
  });

  test('completions', async () => {
    const completion = await sdk().completions.create({ model: 'gpt-4', prompt: 'hi' });
    expect(completion.model).toBe('gpt-4');
  });

  test('embeddings (the model comes after the vectors)', async () => {
    const embedding = await sdk().embeddings.create({ model: 'gpt-4', input: 'hi', encoding_format: 'float' });
    expect(embedding.model).toBe('gpt-4');
    expect(embedding.data[0]!.embedding).toEqual([0.25, -0.5, 1e-7]);
  });

  test('responses, not streamed: response.model; a tool’s own model is left alone', async () => {
    const response = await sdk().responses.create({ model: 'gpt-4', input: 'hi' });
    expect(response.model).toBe('gpt-4');
    expect(response.tools).toEqual([{ type: 'image_generation', model: 'gpt-image-1' }]);
    expect(response.output_text).toBe('hi');
  });

  test('responses, streamed: the model of every event that carries one', async () => {
    const stream = await sdk().responses.create({ model: 'gpt-4', input: 'hi', stream: true });
    const models: string[] = [];
    for await (const event of stream) {
      if (event.type === 'response.created' || event.type === 'response.completed') {
        models.push(event.response.model);
        expect(event.response.tools).toEqual([{ type: 'image_generation', model: 'gpt-image-1' }]);
      }
    }
    expect(models).toEqual(['gpt-4', 'gpt-4']);
  });

  test('a name with JSON escapes and unicode, streamed and not', async () => {
    const completion = await sdk().chat.completions.create({ model: ODD_ALIAS, messages: [] });
    expect(completion.model).toBe(ODD_ALIAS);
    const stream = await sdk().chat.completions.create({ model: ODD_ALIAS, messages: [], stream: true });
    for await (const chunk of stream) expect(chunk.model).toBe(ODD_ALIAS);
    expect(seen.at(-1)!.body['model']).toBe(UPSTREAM_MODEL);
  });
});

describe('the bytes: only the model value changes', () => {
  test('a JSON answer is the upstream’s, byte for byte, but for the model; Content-Length is its length', async () => {
    const res = await post('/v1/chat/completions', { model: 'gpt-4', messages: [] });
    expect(res.status).toBe(200);
    expect(res.text).toBe(chatAnswer('gpt-4'));
    expect(res.headers['content-length']).toBe(String(res.bytes.length));
    expect(res.headers['x-apiproxy-upstream-model']).toBe(UPSTREAM_MODEL);
  });

  test('a name with escapes and unicode is written as JSON; the header names the upstream model', async () => {
    const res = await post('/v1/chat/completions', { model: ODD_ALIAS, messages: [] });
    expect(res.text).toBe(chatAnswer(ODD_ALIAS));
    expect(res.text).toContain(`"model" :  "my \\"alias\\" \\\\ caf\u00e9 \u6f22 \ud83d\ude00"`);
    expect(res.headers['content-length']).toBe(String(res.bytes.length));
  });

  test('an event stream is the upstream’s, byte for byte, but for each model; no Content-Length', async () => {
    const res = await post('/v1/chat/completions', { model: 'gpt-4', stream: true });
    expect(res.text).toBe(chatEvents('gpt-4').join(''));
    expect(res.headers['content-length']).toBeUndefined();
    expect(res.headers['x-apiproxy-upstream-model']).toBe(UPSTREAM_MODEL);
  });

  // Cut inside the key, and inside the value past what `gpt-4` shares with the upstream's name.
  test.each([-5, 9, 16])('a model cut across two upstream writes (%i bytes from the value’s quote) arrives whole', async (into) => {
    answer = async (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const events = chatEvents(UPSTREAM_MODEL).join('');
      const cutAt = events.indexOf(`"${UPSTREAM_MODEL}"`) + into;
      await writeApart(res, [events.slice(0, cutAt), events.slice(cutAt)], 60); // apart even on a busy machine
    };
    const res = await post('/v1/chat/completions', { model: 'gpt-4', stream: true });
    expect(res.text).toBe(chatEvents('gpt-4').join(''));
  });

  test('an answer without a model passes as it came', async () => {
    const text = '{"object":"list","data":[{"model":"nested","x":1}]}';
    answer = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': text.length });
      res.end(text);
    };
    const before = await prometheus(gw.url);
    const res = await post('/v1/chat/completions', { model: 'gpt-4' });
    expect(res.text).toBe(text);
    expect(res.headers['content-length']).toBe(String(text.length));
    expect(await moved(before, 'absent')).toBe(1);
  });

  test('a chunked JSON answer gets a true Content-Length', async () => {
    answer = async (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' });
      const text = chatAnswer(UPSTREAM_MODEL);
      await writeApart(res, [text.slice(0, 40), text.slice(40, 90), text.slice(90)]);
    };
    const res = await post('/v1/chat/completions', { model: 'gpt-4' });
    expect(res.text).toBe(chatAnswer('gpt-4'));
    expect(res.headers['content-length']).toBe(String(res.bytes.length));
    expect(res.headers['transfer-encoding']).toBeUndefined();
  });
});

describe('what is never rewritten', () => {
  test('a gzip answer (the upstream ignored accept-encoding: identity) passes unchanged, and is counted', async () => {
    const gzipped = gzipSync(chatAnswer(UPSTREAM_MODEL));
    answer = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': gzipped.length });
      res.end(gzipped);
    };
    const before = await prometheus(gw.url);
    const res = await post('/v1/chat/completions', { model: 'gpt-4' }, { 'accept-encoding': 'gzip' });
    expect(seen.at(-1)!.headers['accept-encoding']).toBe('identity');
    expect(res.headers['content-encoding']).toBe('gzip');
    expect(res.bytes.equals(gzipped)).toBe(true);
    expect(res.headers['content-length']).toBe(String(gzipped.length));
    expect(await moved(before, 'compressed')).toBe(1);
  });

  test('an error body passes as the upstream sent it (the header still names the upstream model)', async () => {
    const text = JSON.stringify({
      error: { message: `The model ${UPSTREAM_MODEL} is overloaded`, type: 'server_error', param: null, code: null },
      model: UPSTREAM_MODEL,
    });
    answer = (_req, res) => {
      res.writeHead(503, { 'content-type': 'application/json', 'content-length': text.length });
      res.end(text);
    };
    const res = await post('/v1/chat/completions', { model: 'gpt-4' });
    expect(res.status).toBe(503);
    expect(res.text).toBe(text);
    expect(res.headers['x-apiproxy-upstream-model']).toBe(UPSTREAM_MODEL);
  });

  test('answer_model: upstream on a redirect keeps the upstream’s model; the header names it too', async () => {
    const res = await post('/v1/chat/completions', { model: 'keep' });
    expect(res.text).toBe(chatAnswer('kept-upstream'));
    expect(res.headers['x-apiproxy-upstream-model']).toBe('kept-upstream');
    // No rewrite due: the token endpoints still ask for identity, for the usage meter (issue 16); others leave it to the client.
    expect(seen.at(-1)!.headers['accept-encoding']).toBe('identity');
    await post('/v1/images/generations', { model: 'keep', prompt: 'a cat' });
    expect(seen.at(-1)!.url).toBe('/v1/images/generations');
    expect(seen.at(-1)!.headers['accept-encoding']).toBeUndefined();
  });

  test('no route applied, or a route that keeps the name: nothing changes, no header', async () => {
    for (const model of ['unrouted-model', 'same-name']) {
      const res = await post('/v1/chat/completions', { model });
      expect(res.text).toBe(chatAnswer(model));
      expect(res.headers['x-apiproxy-upstream-model']).toBeUndefined();
    }
  });
});

describe('keep-alive and the record', () => {
  test('200 rewritten answers in a row on one kept-alive client connection', async () => {
    const socket = connect(Number(new URL(gw.url).port), '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    let closed = false;
    socket.on('close', () => (closed = true));
    let buffered = Buffer.alloc(0);
    socket.on('data', (data: Buffer) => (buffered = Buffer.concat([buffered, data])));
    const body = JSON.stringify({ model: 'gpt-4', messages: [] });
    const expected = chatAnswer('gpt-4');
    for (let i = 0; i < 200; i++) {
      socket.write(
        `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${CLIENT_KEY}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
      );
      // One whole answer, framed by its Content-Length: a length that is off by a byte stalls or garbles the next.
      let answerText = '';
      await waitFor(
        () => {
          const headEnd = buffered.indexOf('\r\n\r\n');
          if (headEnd === -1) return false;
          const head = buffered.toString('latin1', 0, headEnd);
          const length = Number(/\r\ncontent-length: (\d+)/i.exec(head)?.[1] ?? -1);
          if (length < 0 || buffered.length < headEnd + 4 + length) return false;
          expect(head).toMatch(/^HTTP\/1\.1 200 /);
          expect(head).not.toMatch(/\r\nconnection: close/i);
          answerText = buffered.toString('utf8', headEnd + 4, headEnd + 4 + length);
          buffered = buffered.subarray(headEnd + 4 + length);
          return true;
        },
        3000,
        `answer ${i}`,
      );
      expect(answerText).toBe(expected);
    }
    expect(closed).toBe(false);
    expect(buffered.length).toBe(0);
    socket.destroy();
  });

  test('the access log keeps both names; the metric names both', async () => {
    const before = await prometheus(gw.url);
    await post('/v1/chat/completions', { model: 'gpt-4' });
    await post('/v1/chat/completions', { model: 'gpt-4', stream: true });
    expect(await moved(before, 'rewritten')).toBe(2);
    const chatLines = (): Record<string, unknown>[] =>
      gw.logs.entries.filter((entry) => entry['msg'] === 'request' && entry['path'] === '/v1/chat/completions');
    await waitFor(() => chatLines().some((entry) => entry['stream'] === true));
    expect(chatLines().at(-1)).toMatchObject({ model: 'gpt-4', target_model: UPSTREAM_MODEL, status: 200, stream: true });
  });

  test('an answer held for rewriting that the upstream cuts short is a clean 502, not a truncated body', async () => {
    answer = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': 1000 });
      res.write(chatAnswer(UPSTREAM_MODEL).slice(0, 100));
      setTimeout(() => res.socket?.destroy(), 30);
    };
    const res = await post('/v1/chat/completions', { model: 'gpt-4' });
    expect(res.status).toBe(502);
    expect(JSON.parse(res.text)).toMatchObject({ error: { code: 'upstream_reset' } });
  });
});

const answerModelSeries = (result: string) => ['apiproxy_answer_model_total', { model: 'gpt-4', upstream_model: UPSTREAM_MODEL, result }] as const;

/** How far apiproxy_answer_model_total for gpt-4 sent upstream as UPSTREAM_MODEL, with this result, moved since `before` (absent before its first count). */
async function moved(before: string, result: string): Promise<number | 'unchanged'> {
  return movement(before, await prometheus(gw.url), ...answerModelSeries(result));
}
