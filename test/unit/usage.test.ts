import type { OutgoingHttpHeaders } from 'node:http';
import fc from 'fast-check';
import { abandonThrough, endThrough, pushThrough, type BodyTransform } from '../../src/pipeline/body-transform.js';
import { UsageMeter, type UsageResult } from '../../src/pipeline/usage-meter.js';
import { findModel, findUsage, usageFrom } from '../../src/usage/token-usage.js';

// The answer shapes as the OpenAI API writes them (trimmed), one of each endpoint.
const CHAT = {
  id: 'chatcmpl-1',
  object: 'chat.completion',
  created: 1,
  model: 'gpt-4o-2024-08-06',
  choices: [{ index: 0, message: { role: 'assistant', content: 'The "usage": {"prompt_tokens": 999} is in my text.' }, finish_reason: 'stop' }],
  usage: {
    prompt_tokens: 19,
    completion_tokens: 10,
    total_tokens: 29,
    prompt_tokens_details: { cached_tokens: 8, audio_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: 4, audio_tokens: 0 },
  },
  service_tier: 'default',
  system_fingerprint: 'fp_1',
};
const COMPLETION = {
  id: 'cmpl-1',
  object: 'text_completion',
  created: 1,
  model: 'gpt-3.5-turbo-instruct',
  choices: [{ text: 'hi', index: 0, logprobs: null, finish_reason: 'length' }],
  usage: { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 },
};
const EMBEDDING = {
  object: 'list',
  data: [{ object: 'embedding', index: 0, embedding: Array.from({ length: 3072 }, (_, i) => i / 3072) }],
  model: 'text-embedding-3-large',
  usage: { prompt_tokens: 8, total_tokens: 8 },
};
const RESPONSE = {
  id: 'resp_1',
  object: 'response',
  created_at: 1,
  status: 'completed',
  instructions: 'Say "model": "not-this-one" to nobody.',
  model: 'o4-mini-2025-04-16',
  output: [
    { type: 'message', id: 'msg_1', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: 'x'.repeat(100_000), annotations: [] }] },
  ],
  tools: [{ type: 'function', name: 'f', parameters: { type: 'object', properties: { usage: { type: 'object' } } } }],
  usage: {
    input_tokens: 36,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: 87,
    output_tokens_details: { reasoning_tokens: 64 },
    total_tokens: 123,
  },
  user: null,
  metadata: { usage: 'team billing' },
};

describe("usageFrom: each endpoint's usage object", () => {
  test.each([
    ['chat completion', CHAT.usage, { prompt: 19, completion: 10, cached: 8, reasoning: 4 }],
    ['completion', COMPLETION.usage, { prompt: 5, completion: 7, cached: null, reasoning: null }],
    ['embedding (no completion)', EMBEDDING.usage, { prompt: 8, completion: 0, cached: null, reasoning: null }],
    ['responses', RESPONSE.usage, { prompt: 36, completion: 87, cached: 0, reasoning: 64 }],
    ['not usage', { tokens: 3 }, null],
    ['negative', { prompt_tokens: -1 }, null],
    ['null', null, null],
  ])('%s', (_name, value, expected) => {
    expect(usageFrom(value)).toEqual(expected);
  });
});

describe('findUsage and findModel in the bytes of an answer', () => {
  test.each([
    ['chat completion', CHAT, { prompt: 19, completion: 10, cached: 8, reasoning: 4 }, 'gpt-4o-2024-08-06'],
    ['completion', COMPLETION, { prompt: 5, completion: 7, cached: null, reasoning: null }, 'gpt-3.5-turbo-instruct'],
    ['embedding', EMBEDDING, { prompt: 8, completion: 0, cached: null, reasoning: null }, 'text-embedding-3-large'],
    [
      'responses (usage before user and metadata, a tool parameter named usage)',
      RESPONSE,
      { prompt: 36, completion: 87, cached: 0, reasoning: 64 },
      'o4-mini-2025-04-16',
    ],
  ])('%s, compact and pretty-printed', (_name, answer, usage, model) => {
    for (const text of [JSON.stringify(answer), JSON.stringify(answer, null, 2)]) {
      const bytes = Buffer.from(text);
      expect(findUsage(bytes)).toEqual(usage);
      expect(findModel(bytes, false) ?? findModel(bytes, true)).toBe(model);
    }
  });

  test('text that mentions usage is not usage; an answer without usage has none', () => {
    const { usage: _, ...withoutUsage } = CHAT;
    expect(findUsage(Buffer.from(JSON.stringify(withoutUsage)))).toBeNull();
    expect(findUsage(Buffer.from('{"usage": "a string", "x": {"usage":null}}'))).toBeNull();
  });

  test('an upstream that fills its text with "usage" keys costs a bounded search, not a quadratic one', () => {
    const hostile = Buffer.from(`{"a":"${'\\"usage\\":{'.repeat(200_000)}"}`);
    const started = performance.now();
    expect(findUsage(hostile)).toBeNull();
    expect(performance.now() - started).toBeLessThan(200);
  });
});

/** Feeds `body` through a transform in the given cuts; returns what came out. */
function relay(transform: BodyTransform, body: Buffer, cuts: number[]): Buffer {
  const out: Buffer[] = [];
  let from = 0;
  for (const cut of [...cuts.filter((c) => c > 0 && c < body.length).sort((a, b) => a - b), body.length]) {
    out.push(pushThrough([transform], Buffer.from(body.subarray(from, cut))));
    from = cut;
  }
  const rest = endThrough([transform]);
  if (rest !== null) out.push(rest);
  return Buffer.concat(out);
}

function meterFor(
  strip: boolean,
  contentType: string,
  status = 200,
  requestBytes = 400,
): { meter: UsageMeter; transform: BodyTransform | null; relayed: OutgoingHttpHeaders } {
  const meter = new UsageMeter(strip, requestBytes);
  const relayed: OutgoingHttpHeaders = { 'content-type': contentType, 'content-length': '10' };
  const transform = meter.forResponse(status, { 'content-type': contentType }, relayed);
  return { meter, transform, relayed };
}

// A chat stream as OpenAI sends it, with and without include_usage.
const chunk = (content: string, withUsage: boolean): string =>
  `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content }, finish_reason: null }], ...(withUsage ? { usage: null } : {}) })}\n\n`;
const USAGE_EVENT = `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [], usage: { prompt_tokens: 11, completion_tokens: 3, total_tokens: 14 } })}\n\n`;
const words = ['Hello', ' "usage":null', ' world'];
const PLAIN_STREAM = words.map((w) => chunk(w, false)).join('') + 'data: [DONE]\n\n';
const USAGE_STREAM = words.map((w) => chunk(w, true)).join('') + USAGE_EVENT + 'data: [DONE]\n\n';

describe('UsageMeter on an event stream', () => {
  test.each([
    ['added by the gateway: the client gets exactly the stream it would have got', true, PLAIN_STREAM],
    ['asked by the client: the stream passes untouched, byte for byte', false, USAGE_STREAM],
  ])('include_usage %s, cut anywhere; the usage is read', (_name, strip, expected) => {
    const body = Buffer.from(USAGE_STREAM);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: body.length - 1 }), { maxLength: 12 }), (cuts) => {
        const { meter, transform } = meterFor(strip, 'text/event-stream');
        expect(relay(transform!, body, cuts).toString()).toBe(expected);
        expect(meter.result()).toEqual({ kind: 'reported', usage: { prompt: 11, completion: 3, cached: null, reasoning: null } });
        expect(meter.answerModel()).toBe('gpt-4o-mini');
      }),
    );
  });

  test("CRLF line ends, Python's separators (`, ` and `: `), usage:null first or last", () => {
    const event = (json: string): string => `data: ${json}\r\n\r\n`;
    const sent =
      event('{"usage": null, "id": "c", "choices": [{"delta": {"content": "a"}}]}') +
      event('{"id": "c", "choices": [{"delta": {"content": "b"}}], "usage": null}') +
      event('{"id": "c", "choices": [ ], "usage": {"prompt_tokens": 2, "completion_tokens": 1}}') +
      event('[DONE]');
    const { meter, transform } = meterFor(true, 'text/event-stream; charset=utf-8');
    expect(relay(transform!, Buffer.from(sent), [5, 40, 100]).toString()).toBe(
      event('{"id": "c", "choices": [{"delta": {"content": "a"}}]}') + event('{"id": "c", "choices": [{"delta": {"content": "b"}}]}') + event('[DONE]'),
    );
    expect(meter.result()).toMatchObject({ kind: 'reported', usage: { prompt: 2, completion: 1 } });
  });

  test('include_usage asked by the client: the stream passes untouched and the usage is read from its end', () => {
    const { meter, transform, relayed } = meterFor(false, 'text/event-stream');
    const body = Buffer.from(USAGE_STREAM);
    expect(relay(transform!, body, [10, 300]).toString()).toBe(USAGE_STREAM);
    expect(relayed['content-length']).toBe('10');
    expect(meter.result()).toMatchObject({ kind: 'reported', usage: { prompt: 11, completion: 3 } });
  });

  test('include_usage asked by the client: every piece goes on at once, nothing is held for the event to end', () => {
    const { transform } = meterFor(false, 'text/event-stream');
    const half = Math.floor(USAGE_STREAM.length / 2);
    expect(transform!.push(Buffer.from(USAGE_STREAM.slice(0, half))).toString()).toBe(USAGE_STREAM.slice(0, half));
    expect(transform!.end()).toBeNull();
  });

  test('a usage event after 64 KiB of later events is still the one read (the last usage object counts)', () => {
    const filler = chunk('x'.repeat(1000), true).repeat(80);
    const { meter, transform } = meterFor(false, 'text/event-stream');
    pushThrough([transform!], Buffer.from(USAGE_EVENT + filler));
    expect(meter.result()).toMatchObject({ kind: 'reported', usage: { prompt: 11, completion: 3 } });
  });

  test('a Responses API stream: usage from response.completed, which holds the whole answer', () => {
    const events = [
      { type: 'response.created', response: { id: 'r', model: 'gpt-4.1', output: [], usage: null } },
      { type: 'response.output_text.delta', delta: 'hi' },
      { type: 'response.completed', response: { ...RESPONSE, model: 'gpt-4.1' } },
    ];
    const sent = events.map((e) => `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`).join('');
    const { meter, transform } = meterFor(false, 'text/event-stream');
    expect(relay(transform!, Buffer.from(sent), [100, 5000, 60_000]).toString()).toBe(sent);
    expect(meter.result()).toEqual({ kind: 'reported', usage: { prompt: 36, completion: 87, cached: 0, reasoning: 64 } });
    expect(meter.answerModel()).toBe('gpt-4.1');
  });

  test('a stream cut before its usage (the client left): unknown, with an estimate from the request and the events seen', () => {
    const { meter, transform } = meterFor(true, 'text/event-stream', 200, 4000);
    const cut = USAGE_STREAM.indexOf(USAGE_EVENT);
    pushThrough([transform!], Buffer.from(USAGE_STREAM.slice(0, cut)));
    expect(meter.result()).toEqual({ kind: 'unknown', estimate: 1000 + 3 });
    expect(meter.answerModel()).toBe('gpt-4o-mini');
  });

  test('the estimate counts each event once when reads cut events (a held event start is not counted again)', () => {
    const cut = USAGE_STREAM.indexOf(USAGE_EVENT);
    const sent = Buffer.from(USAGE_STREAM.slice(0, cut));
    for (const size of [7, 10, 64]) {
      const { meter, transform } = meterFor(true, 'text/event-stream', 200, 4000);
      for (let at = 0; at < sent.length; at += size) pushThrough([transform!], Buffer.from(sent.subarray(at, at + size)));
      expect(meter.result()).toEqual({ kind: 'unknown', estimate: 1000 + 3 });
    }
  });

  test('a stream cut inside its usage event after the usage object: still reported', () => {
    const { meter, transform } = meterFor(true, 'text/event-stream');
    const end = USAGE_STREAM.indexOf('}}', USAGE_STREAM.indexOf('"prompt_tokens"')) + 2;
    pushThrough([transform!], Buffer.from(USAGE_STREAM.slice(0, end)));
    expect(meter.result()).toMatchObject({ kind: 'reported', usage: { prompt: 11, completion: 3 } });
  });

  test('cut inside an event (the upstream failed): the unfinished event is let out as it came, so the client sees the same cut', () => {
    const { transform } = meterFor(true, 'text/event-stream');
    const cut = USAGE_STREAM.indexOf('data:', 10) + 30;
    const out = pushThrough([transform!], Buffer.from(USAGE_STREAM.slice(0, cut)));
    expect(out.toString()).toBe(chunk(words[0]!, false));
    const rest = abandonThrough([transform!])!.toString();
    expect(rest).toBe(USAGE_STREAM.slice(USAGE_STREAM.indexOf('data:', 10), cut));
  });

  test('stripping drops a declared Content-Length (the body changes); reading does not', () => {
    expect(meterFor(true, 'text/event-stream').relayed['content-length']).toBeUndefined();
    expect(meterFor(true, 'application/json').relayed['content-length']).toBe('10');
  });
});

describe('UsageMeter on a JSON answer', () => {
  test.each([
    ['chat', CHAT, 19, 'gpt-4o-2024-08-06'],
    ['embedding', EMBEDDING, 8, 'text-embedding-3-large'],
    ['responses (a 100 KB answer)', RESPONSE, 36, 'o4-mini-2025-04-16'],
  ])('%s: passes unchanged, usage and model read', (_name, answer, prompt, model) => {
    const { meter, transform } = meterFor(false, 'application/json');
    const body = Buffer.from(JSON.stringify(answer));
    expect(relay(transform!, body, [1, 1000, 50_000]).equals(body)).toBe(true);
    const result = meter.result() as Extract<UsageResult, { kind: 'reported' }>;
    expect(result.kind).toBe('reported');
    expect(result.usage.prompt).toBe(prompt);
    expect(meter.answerModel()).toBe(model);
  });

  test('an error status or another content type is not metered', () => {
    expect(meterFor(false, 'application/json', 429).transform).toBeNull();
    expect(meterFor(false, 'application/json', 429).meter.result()).toBeNull();
    expect(meterFor(false, 'audio/mpeg').transform).toBeNull();
  });

  test('a JSON answer without usage: unknown, estimated from the request alone', () => {
    const { meter, transform } = meterFor(false, 'application/json', 200, 10);
    relay(transform!, Buffer.from('{"id":"x","model":"m"}'), []);
    expect(meter.result()).toEqual({ kind: 'unknown', estimate: 3 });
    expect(meter.answerModel()).toBe('m');
  });
});
