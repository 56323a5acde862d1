/**
 * Usage accounting end to end, with the openai SDK as the client: the usage of
 * every answer kind (chat, completions, embeddings, responses; JSON and
 * streams) reaches the access log and apiproxy_tokens_total; a stream whose
 * client did not ask for usage is asked for it upstream and given back exactly
 * as the client would have got it; a stream the client leaves is marked
 * unknown, never counted as zero.
 */
import OpenAI from 'openai';
import { request } from 'undici';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { baseConfig, CLIENT_KEY, startTestGateway, type TestGateway } from '../support/gateway-harness.js';
import { movement, prometheus, series, waitFor } from '../reliability/helpers.js';

let upstream: FakeUpstream;
let gw: TestGateway;
let sdk: OpenAI;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  gw = await startTestGateway(baseConfig(upstream.url));
  sdk = new OpenAI({ apiKey: CLIENT_KEY, baseURL: `${gw.url}/v1`, maxRetries: 0 });
});

afterAll(async () => {
  await gw.stop();
  await upstream.close();
});

/** The access line of the request for `model` (waits for it: a line is written when the response closes). */
async function accessLine(model: string): Promise<Record<string, unknown>> {
  let line: Record<string, unknown> | undefined;
  await waitFor(() => {
    line = gw.logs.entries.findLast((entry) => entry['msg'] === 'request' && entry['model'] === model);
    return line !== undefined;
  });
  return line!;
}

/** The tokens counted for `model` of `kind`; throws when the series is absent (each test's model is its own). */
const tokens = async (model: string, kind: string): Promise<number> =>
  series(await prometheus(gw.url), 'apiproxy_tokens_total', { consumer: 'team-a', key_id: 'team-a', model, kind });
const tokenLabels = (model: string, kind: string): Record<string, string> => ({ consumer: 'team-a', key_id: 'team-a', model, kind });

describe('non-streaming answers', () => {
  test('chat: prompt and completion (and cached, reasoning) tokens in the access line and apiproxy_tokens_total', async () => {
    const before = await prometheus(gw.url);
    const answer = await sdk.chat.completions.create(
      { model: 'gpt-4', messages: [{ role: 'user', content: 'hi' }] },
      { headers: { 'x-fake-usage-details': '1' } },
    );
    expect(answer.usage).toMatchObject({ prompt_tokens: 7, completion_tokens: 3 });
    expect(await accessLine('gpt-4')).toMatchObject({ prompt_tokens: 7, completion_tokens: 3, status: 200 });
    const text = await prometheus(gw.url);
    expect(movement(before, text, 'apiproxy_tokens_total', tokenLabels('gpt-4', 'prompt'))).toBe(7);
    expect(movement(before, text, 'apiproxy_tokens_total', tokenLabels('gpt-4', 'completion'))).toBe(3);
    expect(series(text, 'apiproxy_tokens_total', { consumer: 'team-a', key_id: 'team-a', model: 'gpt-4', kind: 'cached' })).toBeGreaterThanOrEqual(2);
    expect(series(text, 'apiproxy_tokens_total', { consumer: 'team-a', key_id: 'team-a', model: 'gpt-4', kind: 'reasoning' })).toBeGreaterThanOrEqual(1);
  });

  test.each([
    ['completions', (model: string) => sdk.completions.create({ model, prompt: 'hi' }), '/v1/completions', 3],
    ['embeddings', (model: string) => sdk.embeddings.create({ model, input: 'hi' }), '/v1/embeddings', 0],
    ['responses', (model: string) => sdk.responses.create({ model, input: 'hi' }), '/v1/responses', 5],
  ])('%s', async (_name, call, path, completion) => {
    const model = `usage-${path.slice(4)}`;
    await call(model);
    expect(await accessLine(model)).toMatchObject({ prompt_tokens: 7, completion_tokens: completion, path });
    expect(await tokens(model, 'prompt')).toBe(7);
    expect(await tokens(model, 'completion')).toBe(completion);
  });
});

describe('streams', () => {
  test('no include_usage from the client: asked for upstream, and the client gets exactly what it would have got', async () => {
    const body = { model: 'stream-plain', messages: [{ role: 'user', content: 'hi' }], stream: true, temperature: 0.5 };
    const via = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json', 'x-fake-interval': '0' },
      body: JSON.stringify(body),
    });
    const received = await via.body.text();
    // What the same upstream sends to a client that did not ask for usage.
    const direct = await request(`${upstream.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-fake-interval': '0' },
      body: JSON.stringify(body),
    });
    expect(received).toBe(await direct.body.text());
    expect(received).not.toContain('usage');
    const seen = upstream.requests.at(-2)!;
    expect(seen.body.toString()).toBe(JSON.stringify(body).slice(0, -1) + ',"stream_options":{"include_usage":true}}');
    expect(await accessLine('stream-plain')).toMatchObject({ prompt_tokens: 7, completion_tokens: 5, stream: true });
    expect(await tokens('stream-plain', 'completion')).toBe(5);
  });

  test('through the SDK: chunks as usual, no usage chunk, and the tokens counted', async () => {
    const stream = await sdk.chat.completions.create({ model: 'stream-sdk', messages: [{ role: 'user', content: 'hi' }], stream: true });
    const parts: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const part of stream) parts.push(part);
    expect(parts.map((part) => part.choices[0]?.delta.content)).toEqual(['tok0 ', 'tok1 ', 'tok2 ', 'tok3 ', 'tok4 ']);
    expect(parts.every((part) => !('usage' in part))).toBe(true);
    expect(await tokens('stream-sdk', 'prompt')).toBe(7);
  });

  test('include_usage asked by the client: the body goes up as sent, and the client gets its usage chunk', async () => {
    const stream = await sdk.chat.completions.create({
      model: 'stream-asked',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const part of stream) usage = part.usage ?? usage;
    expect(usage).toMatchObject({ prompt_tokens: 7, completion_tokens: 5 });
    expect(JSON.parse(upstream.requests.at(-1)!.body.toString())).toEqual({
      model: 'stream-asked',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(await tokens('stream-asked', 'completion')).toBe(5);
  });

  test('completions stream and Responses stream', async () => {
    const legacy = await sdk.completions.create({ model: 'stream-legacy', prompt: 'hi', stream: true });
    const texts: string[] = [];
    for await (const part of legacy) texts.push(part.choices[0]?.text ?? '');
    expect(texts).toEqual(['tok0 ', 'tok1 ', 'tok2 ', 'tok3 ', 'tok4 ']);
    expect(await tokens('stream-legacy', 'completion')).toBe(5);

    const responses = await sdk.responses.create({ model: 'stream-responses', input: 'hi', stream: true }, { headers: { 'x-fake-usage-details': '1' } });
    const types: string[] = [];
    for await (const event of responses) types.push(event.type);
    expect(types.at(-1)).toBe('response.completed');
    // The Responses API always reports usage in response.completed: nothing is added to the request.
    expect(JSON.parse(upstream.requests.at(-1)!.body.toString())).not.toHaveProperty('stream_options');
    expect(await tokens('stream-responses', 'prompt')).toBe(7);
    expect(await tokens('stream-responses', 'reasoning')).toBe(1);
  });

  test('a stream the client leaves before its end: usage "unknown" in the log and apiproxy_usage_unknown_total, no tokens counted', async () => {
    const before = await prometheus(gw.url);
    const controller = new AbortController();
    const stream = await sdk.chat.completions.create(
      { model: 'stream-left', messages: [{ role: 'user', content: 'hi' }], stream: true },
      { headers: { 'x-fake-chunks': '50', 'x-fake-interval': '20' }, signal: controller.signal },
    );
    for await (const _part of stream) {
      controller.abort(); // after the first chunk
      break;
    }
    const line = await accessLine('stream-left');
    expect(line).toMatchObject({ usage: 'unknown', prompt_tokens: null, completion_tokens: null, client_aborted: true });
    const after = await prometheus(gw.url);
    expect(movement(before, after, 'apiproxy_usage_unknown_total', { consumer: 'team-a', key_id: 'team-a' })).toBe(1);
    expect(movement(before, after, 'apiproxy_tokens_total', tokenLabels('stream-left', 'prompt'))).toBe('unchanged');
  });

  test('an upstream that ignores include_usage: unknown, not zero', async () => {
    const stream = await sdk.chat.completions.create({ model: 'stream-silent', messages: [], stream: true }, { headers: { 'x-fake-no-usage': '1' } });
    for await (const _part of stream) {
      // read to the end
    }
    expect(await accessLine('stream-silent')).toMatchObject({ usage: 'unknown', status: 200 });
  });
});

describe('request_stream_usage: false', () => {
  test('the stream request goes up as sent; its usage is unknown', async () => {
    gw.writeConfig(baseConfig(upstream.url, { usage: { request_stream_usage: false } }));
    await waitFor(() => gw.logs.entries.some((entry) => entry['msg'] === 'config reloaded'), 5000, 'the reload');
    try {
      const body = JSON.stringify({ model: 'stream-off', messages: [], stream: true });
      const res = await request(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
        body,
      });
      await res.body.text();
      expect(upstream.requests.at(-1)!.body.toString()).toBe(body);
      expect(await accessLine('stream-off')).toMatchObject({ usage: 'unknown' });
    } finally {
      gw.writeConfig(baseConfig(upstream.url));
    }
  });
});
