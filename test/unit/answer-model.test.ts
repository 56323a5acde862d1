import type { OutgoingHttpHeaders } from 'node:http';
import fc from 'fast-check';
import {
  answerModel,
  EventAnswerModel,
  headerValue,
  JsonAnswerModel,
  MAX_EVENT_LINE,
  MAX_HELD_ANSWER,
  UPSTREAM_MODEL_HEADER,
  type AnswerModelResult,
} from '../../src/pipeline/answer-model.js';
import type { BodyTransform } from '../../src/pipeline/body-transform.js';
import type { RoutePlan } from '../../src/routing/resolve.js';

const REQUESTED = 'gpt-4';
const requestedJson = (model = REQUESTED): Buffer => Buffer.from(JSON.stringify(model));

/** Feeds the pieces through a transform; returns what came out after each piece, and at the end. */
function run(transform: BodyTransform, pieces: readonly Buffer[]): { outputs: Buffer[]; body: Buffer } {
  const outputs = pieces.map((piece) => Buffer.from(transform.push(piece)));
  const rest = transform.end();
  if (rest !== null) outputs.push(Buffer.from(rest));
  return { outputs, body: Buffer.concat(outputs) };
}

/** `bytes` cut at the given points. */
function cut(bytes: Buffer, points: readonly number[]): Buffer[] {
  const sorted = [...new Set(points.map((p) => p % (bytes.length + 1)))].sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let from = 0;
  for (const point of sorted) {
    pieces.push(bytes.subarray(from, point));
    from = point;
  }
  pieces.push(bytes.subarray(from));
  return pieces.filter((piece) => piece.length > 0);
}

function recorder(): { results: AnswerModelResult[]; report: (result: AnswerModelResult) => void } {
  const results: AnswerModelResult[] = [];
  return { results, report: (result) => results.push(result) };
}

describe('JsonAnswerModel', () => {
  const upstreamAnswer =
    '{\n  "id": "chatcmpl-1",\n  "object": "chat.completion",\n  "model" : "gpt-4o-2024-08-06",\n' +
    '  "choices": [{"index":0,"message":{"role":"assistant","content":"the \\"model\\": \\"x\\" \u00e9\u6f22","tool_calls":[{"model":"nested"}]}}],\n' +
    '  "usage": {"prompt_tokens": 1.50e1, "total_tokens": 015}\n}';

  test('only the top-level model value changes; every other byte is the upstream’s; Content-Length is the new length', () => {
    const { results, report } = recorder();
    const relayed: OutgoingHttpHeaders = { 'content-length': Buffer.byteLength(upstreamAnswer) };
    const bytes = Buffer.from(upstreamAnswer);
    const { outputs, body } = run(new JsonAnswerModel(requestedJson(), relayed, report), cut(bytes, [5, 60, 61, 62, 90]));
    expect(outputs.slice(0, -1).every((out) => out.length === 0)).toBe(true); // held whole until the end
    expect(body.toString()).toBe(upstreamAnswer.replace('"model" : "gpt-4o-2024-08-06"', '"model" : "gpt-4"'));
    expect(relayed['content-length']).toBe(body.length);
    expect(results).toEqual(['rewritten']);
  });

  test('any JSON object, pretty or not, cut anywhere: the model is the requested one and nothing else changed', () => {
    const marker = 'upstream-model-\u2603-"quoted"';
    fc.assert(
      fc.property(
        fc.dictionary(fc.string(), fc.jsonValue()),
        fc.string({ minLength: 1 }),
        fc.boolean(),
        fc.array(fc.nat(), { maxLength: 6 }),
        (object, requested, pretty, points) => {
          const text = JSON.stringify({ ...object, model: marker }, null, pretty ? 2 : undefined);
          const relayed: OutgoingHttpHeaders = {};
          const { body } = run(new JsonAnswerModel(requestedJson(requested), relayed, () => undefined), cut(Buffer.from(text), points));
          expect(body.toString()).toBe(text.replace(JSON.stringify(marker), () => JSON.stringify(requested)));
          expect((JSON.parse(body.toString()) as { model: string }).model).toBe(requested);
          expect(relayed['content-length']).toBe(body.length);
        },
      ),
    );
  });

  test('a requested name with escapes and unicode is written as JSON and reads back as itself', () => {
    const requested = 'my "alias" \\ \u00e9\u6f22\ud83d\ude00\n\u0001';
    const relayed: OutgoingHttpHeaders = {};
    const { body } = run(new JsonAnswerModel(requestedJson(requested), relayed, () => undefined), [Buffer.from('{"model":"m","x":1}')]);
    expect(body.toString()).toBe(`{"model":${JSON.stringify(requested)},"x":1}`);
    expect((JSON.parse(body.toString()) as { model: string }).model).toBe(requested);
    expect(relayed['content-length']).toBe(body.length);
  });

  test.each([
    ['no model field', '{"object":"list","data":[{"model":"nested"}]}'],
    ['a model that is not a string', '{"model":null,"x":1}'],
    ['a JSON array', '[{"model":"m"}]'],
    ['not JSON at all', 'upstream says hi'],
    ['an empty body', ''],
  ])('%s: passes unchanged, Content-Length untouched, counted as absent', (_name, text) => {
    const { results, report } = recorder();
    const relayed: OutgoingHttpHeaders = { 'content-length': Buffer.byteLength(text) };
    const { body } = run(new JsonAnswerModel(requestedJson(), relayed, report), text === '' ? [] : [Buffer.from(text)]);
    expect(body.toString()).toBe(text);
    expect(relayed['content-length']).toBe(Buffer.byteLength(text));
    expect(results).toEqual(['absent']);
  });

  test('an answer larger than it holds goes on as it came, from there as it comes; counted as too_large', () => {
    const { results, report } = recorder();
    const relayed: OutgoingHttpHeaders = { 'content-length': 7 };
    const transform = new JsonAnswerModel(requestedJson(), relayed, report);
    const half = Buffer.alloc(MAX_HELD_ANSWER / 2 + 1, 'x');
    half.write('{"model":"m"}');
    expect(transform.push(half).length).toBe(0);
    expect(transform.push(half).equals(Buffer.concat([half, half]))).toBe(true);
    expect(transform.push(Buffer.from('tail')).toString()).toBe('tail');
    expect(transform.end()).toBeNull();
    expect(relayed['content-length']).toBe(7);
    expect(results).toEqual(['too_large']);
  });
});

/** A chat.completion.chunk event as an upstream sends it. */
function chatEvent(model: string, content: string, ending = '\n\n'): string {
  return `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 0, model, choices: [{ index: 0, delta: { content } }] })}${ending}`;
}

describe('EventAnswerModel', () => {
  test('the model of every event is replaced; [DONE], comments and other fields pass as they came', () => {
    const { results, report } = recorder();
    const stream =
      ': keep-alive\n\n' + chatEvent('gpt-4o', 'a') + 'event: x\ndata: {"model":"gpt-4o","n":1}\n\n' + chatEvent('gpt-4o', '"model":"z"') + 'data: [DONE]\n\n';
    const { body } = run(new EventAnswerModel(requestedJson(), report), [Buffer.from(stream)]);
    expect(body.toString()).toBe(stream.replaceAll('"model":"gpt-4o"', '"model":"gpt-4"'));
    expect(results).toEqual(['rewritten']);
  });

  test('Responses API events: response.model is replaced; a model nested deeper (a tool) is not', () => {
    const created = `event: response.created\ndata: ${JSON.stringify({
      type: 'response.created',
      response: { id: 'resp_1', object: 'response', tools: [{ type: 'image_generation', model: 'gpt-image-1' }], model: 'gpt-4o-2024-08-06' },
    })}\n\n`;
    const delta = `event: response.output_text.delta\ndata: ${JSON.stringify({ type: 'response.output_text.delta', delta: 'the "model"' })}\n\n`;
    const { body } = run(new EventAnswerModel(requestedJson(), () => undefined), [Buffer.from(created + delta)]);
    expect(body.toString()).toBe(created.replace('"model":"gpt-4o-2024-08-06"', '"model":"gpt-4"') + delta);
  });

  test('CRLF and CR line ends', () => {
    const stream = chatEvent('up', 'a', '\r\n\r\n') + chatEvent('up', 'b', '\r\r');
    const pieces = cut(Buffer.from(stream), [3, chatEvent('up', 'a', '\r\n\r\n').length - 1, stream.length - 1]);
    const { body } = run(new EventAnswerModel(requestedJson(), () => undefined), pieces);
    expect(body.toString()).toBe(stream.replaceAll('"model":"up"', '"model":"gpt-4"'));
  });

  test('the model value split across two reads at every position: the event arrives whole and rewritten', () => {
    const event = chatEvent('gpt-4o-2024-08-06', 'hello');
    const expected = chatEvent(REQUESTED, 'hello');
    const bytes = Buffer.from(event);
    for (let at = 1; at < bytes.length; at++) {
      const { body } = run(new EventAnswerModel(requestedJson(), () => undefined), [bytes.subarray(0, at), bytes.subarray(at)]);
      expect([at, body.toString()]).toEqual([at, expected]);
    }
  });

  test('any stream cut anywhere, in any number of reads: every event rewritten, nothing else changed', () => {
    const event = fc
      .tuple(fc.string(), fc.string(), fc.constantFrom('\n\n', '\r\n\r\n', '\n'))
      .map(([content, model, ending]) => ({ upstream: chatEvent(model, content, ending), client: chatEvent('alias \u2603 "x"', content, ending) }));
    fc.assert(
      fc.property(fc.array(event, { minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { maxLength: 40 }), (events, points) => {
        const upstream = Buffer.from(events.map((e) => e.upstream).join('') + 'data: [DONE]\n\n');
        const { body } = run(new EventAnswerModel(requestedJson('alias \u2603 "x"'), () => undefined), cut(upstream, points));
        expect(body.toString()).toBe(events.map((e) => e.client).join('') + 'data: [DONE]\n\n');
      }),
      { numRuns: 300 },
    );
  });

  test('a line cut across reads is passed on up to its first "model" (or a tail that may begin one), not held whole', () => {
    const transform = new EventAnswerModel(requestedJson(), () => undefined);
    const event = chatEvent('up', 'x', '\n'); // ...,"created":0,"model":"up",...
    const model = event.indexOf('"model"');
    expect(transform.push(Buffer.from(event.slice(0, model - 1))).toString()).toBe(event.slice(0, model - 1));
    // `,"mo`: the comma goes on; `"mo` may begin "model".
    expect(transform.push(Buffer.from(event.slice(model - 1, model + 3))).toString()).toBe(',');
    expect(transform.push(Buffer.from(event.slice(model + 3, -1))).toString()).toBe('');
    expect(transform.push(Buffer.from(event.slice(-1))).toString()).toBe(event.slice(model).replace('"up"', '"gpt-4"'));
    expect(transform.end()).toBeNull();
  });

  test('a line that grows past MAX_EVENT_LINE without ending goes on as it comes, unchanged; the next line is rewritten again', () => {
    const long = `data: {"model":"up","pad":"${'x'.repeat(MAX_EVENT_LINE + 200_000)}"}\n\n`;
    const bytes = Buffer.from(long + chatEvent('up', 'after'));
    const read = 64 * 1024;
    const pieces = Array.from({ length: Math.ceil(bytes.length / read) }, (_, i) => bytes.subarray(i * read, (i + 1) * read));
    const { outputs, body } = run(new EventAnswerModel(requestedJson(), () => undefined), pieces);
    const expected = Buffer.from(long + chatEvent(REQUESTED, 'after'));
    expect([body.length, body.equals(expected)]).toEqual([expected.length, true]);
    // Held from its "model" up to the bound, then let go; past the bound each read goes on at once.
    expect(outputs.slice(0, 18).map((out) => out.length)).toEqual([7, ...Array<number>(15).fill(0), 17 * read - 7, read]);
  });

  test.each([
    ['shorter', 'gpt-4o-2024-08-06'],
    ['longer', 'up'],
  ])(
    'events that start like the last one take its model’s place (the requested name %s); one that repeats "model" later is scanned whole',
    (_name, upstream) => {
      const transform = new EventAnswerModel(requestedJson(), () => undefined);
      const start = `data: {"id":"c","object":"chat.completion.chunk","model":"${upstream}"`;
      const pieces = [
        `${start},"n":1}\n\n`,
        `${start},"n":2}\n\n`,
        `${start},"n":3}\n\n`,
        `${start},"x":{"model":"nested"}}\n\n`,
        `${start},"model":"again"}\n\n`,
        `${start.replace('"c"', '"d"')},"n":4}\n\n`,
        `${start},"n":5}\n\n${start},"n":6}\n\n`,
      ];
      const out = pieces.map((piece) => transform.push(Buffer.from(piece)).toString());
      const rewritten = (piece: string): string => piece.replaceAll(`"model":"${upstream}"`, '"model":"gpt-4"');
      expect(out).toEqual([
        rewritten(pieces[0]!),
        rewritten(pieces[1]!),
        rewritten(pieces[2]!),
        rewritten(pieces[3]!),
        pieces[4]!.replace('"again"', '"gpt-4"'), // JSON.parse keeps the last
        rewritten(pieces[5]!),
        rewritten(pieces[6]!),
      ]);
    },
  );

  test('a stream without a model is counted as absent, at its end', () => {
    const { results, report } = recorder();
    const stream = 'data: {"type":"x"}\n\ndata: [DONE]\n\n';
    expect(run(new EventAnswerModel(requestedJson(), report), [Buffer.from(stream)]).body.toString()).toBe(stream);
    expect(results).toEqual(['absent']);
  });

  test('a last line without its line end is rewritten at the end of the stream', () => {
    const { body } = run(new EventAnswerModel(requestedJson(), () => undefined), [Buffer.from('data: {"model":"up"}')]);
    expect(body.toString()).toBe('data: {"model":"gpt-4"}');
  });
});

describe('text nobody validated: the scan always ends, in linear time', () => {
  test('JSON-like garbage (brackets, quotes, backslashes, "model") of 200 KB', () => {
    const alphabet = ['{', '}', '[', ']', '"', '\\', ':', ',', ' ', 'a', '"model"', '\n', 'data: '];
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...alphabet), { minLength: 1, maxLength: 40 }), fc.nat({ max: 5000 }), (unit, repeat) => {
        const text = Buffer.from(
          unit
            .join('')
            .repeat(repeat + 1)
            .slice(0, 200_000),
        );
        const started = performance.now();
        run(new JsonAnswerModel(requestedJson(), {}, () => undefined), [text]);
        run(new EventAnswerModel(requestedJson(), () => undefined), cut(text, [text.length >> 1]));
        expect(performance.now() - started).toBeLessThan(2000);
      }),
      { numRuns: 60 },
    );
  });
});

describe('answerModel: the stage, per response', () => {
  const plan = (requested: string | null, answer: 'requested' | 'upstream' = 'requested'): RoutePlan => ({
    requestedModel: requested,
    route: 'file',
    answerModel: answer,
    targets: [],
    preferred: 0,
  });

  test('no stage when no route changed the model', () => {
    expect(answerModel(plan('gpt-4'), 'gpt-4', () => undefined)).toBeNull();
    expect(answerModel(plan(null), 'x', () => undefined)).toBeNull();
  });

  test('every answer names the model sent upstream in a header, whatever its status', () => {
    const stage = answerModel(plan('gpt-4', 'upstream'), 'gpt-4o', () => undefined)!;
    expect(stage.rewrites).toBe(false);
    for (const status of [200, 400, 500]) {
      const relayed: OutgoingHttpHeaders = {};
      expect(stage.forResponse(status, { 'content-type': 'application/json' }, relayed)).toBeNull();
      expect(relayed[UPSTREAM_MODEL_HEADER]).toBe('gpt-4o');
    }
  });

  test('2xx JSON and event streams are rewritten; error bodies and other content types are not', () => {
    const stage = answerModel(plan('gpt-4'), 'gpt-4o', () => undefined)!;
    expect(stage.rewrites).toBe(true);
    expect(stage.forResponse(200, { 'content-type': 'application/json; charset=utf-8' }, {})).toBeInstanceOf(JsonAnswerModel);
    expect(stage.forResponse(201, { 'content-type': 'application/problem+json' }, {})).toBeInstanceOf(JsonAnswerModel);
    const relayed: OutgoingHttpHeaders = { 'content-length': 10 };
    expect(stage.forResponse(200, { 'content-type': 'text/event-stream' }, relayed)).toBeInstanceOf(EventAnswerModel);
    expect(relayed['content-length']).toBeUndefined();
    expect(stage.forResponse(400, { 'content-type': 'application/json' }, {})).toBeNull();
    expect(stage.forResponse(500, { 'content-type': 'text/event-stream' }, {})).toBeNull();
    expect(stage.forResponse(200, { 'content-type': 'audio/mpeg' }, {})).toBeNull();
    expect(stage.forResponse(200, {}, {})).toBeNull();
  });

  test('a compressed answer is not touched, and is counted', () => {
    const { results, report } = recorder();
    const stage = answerModel(plan('gpt-4'), 'gpt-4o', report)!;
    expect(stage.forResponse(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' }, {})).toBeNull();
    expect(stage.forResponse(200, { 'content-type': 'text/event-stream', 'content-encoding': 'br' }, {})).toBeNull();
    expect(stage.forResponse(200, { 'content-type': 'application/json', 'content-encoding': 'identity' }, {})).toBeInstanceOf(JsonAnswerModel);
    expect(results).toEqual(['compressed', 'compressed']);
  });

  test('the header value: printable ASCII as is; other bytes of the UTF-8, and %, percent-encoded', () => {
    expect(headerValue('meta-llama/Llama-3.1-8B Instruct')).toBe('meta-llama/Llama-3.1-8B Instruct');
    expect(headerValue('mod\u00e8le 100%')).toBe('mod%C3%A8le 100%25');
    expect(headerValue('\ud800x')).toBe('%EF%BF%BDx');
  });
});
